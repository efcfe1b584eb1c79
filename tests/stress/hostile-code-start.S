// Entry of hostile-code.c on two harts (more stay parked), a trap vector that reports and fails, and the
// two pieces of code that write themselves: a loop patching its own next instruction, and a loop whose
// instructions are nearly all stores into the page they run from.
  .option nopic
  .section .text.init, "ax"
  .globl _start
_start:
  la t0, trap_entry
  csrw mtvec, t0
  csrw mie, zero
  csrr a0, mhartid
  li t0, 1
  bgtu a0, t0, park
  la sp, _stack_top
  slli t1, a0, 14                 // 16 KiB of stack per hart
  sub sp, sp, t1
  bnez a0, 1f
  call main0
  j park
1:
  call main1
park:
  wfi
  j park

  .align 2
trap_entry:
  csrr a0, mcause
  csrr a1, mepc
  csrr a2, mtval
  csrr a3, mhartid
  la sp, _stack_top
  li t0, 0x8000
  sub sp, sp, t0
  slli a3, a3, 12
  sub sp, sp, a3
  srli a3, a3, 12
  call trap_report
  j park

// self_patch(n): runs n iterations of a loop whose first instruction, `addi a0, a0, IMM`, the loop itself
// rewrites each time (IMM = iteration count & 1023) before a fence.i; returns a0, the sum of every IMM run.
  .section .text.selfpatch, "ax"
  .balign 4096
  .globl self_patch
self_patch:
  mv t4, a0
  li a0, 0
  li t1, 0
  la t5, patched
  li t3, 0x00050513               // addi a0, a0, 0
  .option push
  .option norvc                   // the patched instruction and its neighbours stay 4 bytes long
patched:
  addi a0, a0, 0
  addi t1, t1, 1
  andi t2, t1, 1023
  slli t2, t2, 20
  or t2, t2, t3
  sw t2, 0(t5)
  fence.i
  bne t1, t4, patched
  .option pop
  // The loop leaves its last patch behind: put the original back so a second call starts the same way.
  sw t3, 0(t5)
  fence.i
  ret

// store_storm(n): n iterations of eight stores into storm_data, which shares this page: every store lands
// on the page the loop runs from. Returns the sum of the eight words afterwards.
  .section .text.storm, "ax"
  .balign 4096
  .globl store_storm
store_storm:
  la t0, storm_data
  li t1, 0
1:
  sd t1, 0(t0)
  sd t1, 8(t0)
  sd t1, 16(t0)
  sd t1, 24(t0)
  sd a0, 32(t0)
  sd t1, 40(t0)
  sd t1, 48(t0)
  sd t1, 56(t0)
  addi t1, t1, 1
  bne t1, a0, 1b
  ld a0, 0(t0)
  ld t1, 32(t0)
  add a0, a0, t1
  ld t1, 56(t0)
  add a0, a0, t1
  ret
  .balign 64
storm_data:
  .dword 0, 0, 0, 0, 0, 0, 0, 0
