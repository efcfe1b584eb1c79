// LR/SC and AMOs between two harts (RISC-V unprivileged ISA, chapter 8 "A"): both harts add 1 to a 64-bit
// counter with lr.d/sc.d, to a 32-bit one with lr.w/sc.w, and 1 twice to a third with amoadd.d and
// amoadd.w, ROUNDS times each. Every value an lr.d/sc.d increment replaced must have been replaced exactly
// once (seen[old] counted by the hart that owned it), and the totals must be 2·ROUNDS, 2·ROUNDS and
// 4·ROUNDS. Hart 0 checks, prints "LRSC d=… w=… amo=… OK" (or FAIL) on the UART and powers off.
#define ROUNDS 5000
#define UART 0x10000000
#define FINISHER 0x100000

  .option nopic
  .section .text.init, "ax"
  .globl _start
_start:
  csrr s11, mhartid
  li t0, 1
  bgtu s11, t0, park            // a third hart, if any, stays out
  la s0, counter_d
  la s1, counter_w
  la s2, counter_amo
  la s3, seen
  li s4, ROUNDS
round:
1:
  lr.d t1, (s0)
  addi t2, t1, 1
  sc.d t3, t2, (s0)
  bnez t3, 1b
  add t4, s3, t1                // t1 was this hart's alone: note it
  lbu t5, 0(t4)
  addi t5, t5, 1
  sb t5, 0(t4)
2:
  lr.w.aq t1, (s1)
  addiw t2, t1, 1
  sc.w.rl t3, t2, (s1)
  bnez t3, 2b
  li t6, 1
  amoadd.d zero, t6, (s2)
  amoadd.w.aqrl zero, t6, (s2)
  addi s4, s4, -1
  bnez s4, round

  fence rw, rw
  la t0, done
  slli t1, s11, 3
  add t0, t0, t1
  li t1, 1
  sd t1, 0(t0)
  bnez s11, park

  // Hart 0: wait for hart 1, then check.
  la t0, done
3:
  ld t1, 8(t0)
  beqz t1, 3b
  fence rw, rw
  li t0, 2 * ROUNDS
  mv t1, s3
  add t2, s3, t0
4:
  lbu t3, 0(t1)
  li t4, 1
  bne t3, t4, fail
  addi t1, t1, 1
  bltu t1, t2, 4b
  ld t1, 0(s0)
  bne t1, t0, fail
  lwu t1, 0(s1)
  bne t1, t0, fail
  ld t1, 0(s2)
  slli t0, t0, 1
  bne t1, t0, fail

  la a0, msg_d
  jal ra, puts
  ld a0, 0(s0)
  jal ra, puthex
  la a0, msg_w
  jal ra, puts
  lwu a0, 0(s1)
  jal ra, puthex
  la a0, msg_amo
  jal ra, puts
  ld a0, 0(s2)
  jal ra, puthex
  la a0, msg_ok
  jal ra, puts
  li a0, 0x5555
exit:
  li t0, FINISHER
  sw a0, 0(t0)
park:
  wfi
  j park

fail:
  la a0, msg_fail
  jal ra, puts
  ld a0, 0(s0)
  jal ra, puthex
  li a0, (1 << 16) | 0x3333
  j exit

putc:
  li t0, UART
5:
  lbu t1, 5(t0)
  andi t1, t1, 0x20
  beqz t1, 5b
  sb a0, 0(t0)
  ret

puts:
  mv t3, ra
  mv t4, a0
6:
  lbu a0, 0(t4)
  beqz a0, 7f
  jal ra, putc
  addi t4, t4, 1
  j 6b
7:
  jr t3

puthex:                         // a0 as 16 hex digits
  mv t3, ra
  mv t4, a0
  li t5, 60
8:
  srl a0, t4, t5
  andi a0, a0, 15
  addi a0, a0, 48
  li t6, 58
  bltu a0, t6, 9f
  addi a0, a0, 39
9:
  jal ra, putc
  addi t5, t5, -4
  bgez t5, 8b
  jr t3

  .section .rodata
msg_d: .asciz "LRSC d="
msg_w: .asciz " w="
msg_amo: .asciz " amo="
msg_ok: .asciz " OK\n"
msg_fail: .asciz "LRSC FAIL d="

  .data
  .align 6
counter_d: .dword 0
  .align 6
counter_w: .dword 0
  .align 6
counter_amo: .dword 0
  .align 6
done: .dword 0, 0
  .bss
seen: .zero 2 * ROUNDS
