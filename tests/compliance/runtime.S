// Bare-metal runtime shared by every compliance program: M-mode entry on QEMU's virt board, trap handlers
// that record a trap and resume at a label the test chose, and the pass/fail report through the
// sifive_test finisher (0x100000), the HTIF `tohost` word and the 16550 UART (0x10000000).
#include "test.h"

  .section .text.init, "ax"
  .globl _start
_start:
  // a0 = hartid on entry. A PMP entry that grants S and U all of memory: without one, QEMU denies
  // every S/U access. PMP is optional, so a hart without it may trap here: skip over.
  la t0, 1f
  csrw mtvec, t0
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f                    // pmp0cfg = NAPOT | X | W | R
  csrw pmpcfg0, t0
  .align 2
1:
  la t0, m_trap_entry
  csrw mtvec, t0
  csrw medeleg, zero
  csrw mideleg, zero
  csrw mie, zero
  csrw satp, zero
  li t0, MSTATUS_FS_INITIAL      // FP on, everything else (MIE, MPRV, SUM, MXR, TVM, TW, TSR) off
  csrw mstatus, t0
  csrwi fcsr, 0
  la t0, m_trap_rec
  csrw mscratch, t0
  la t0, s_trap_rec
  csrw sscratch, t0
  la sp, _stack_top
  li gp, 0
  j test_main

// ---- M-mode trap handler -------------------------------------------------------------------------
// Records mcause/mepc/mtval/mstatus and a count in m_trap_rec, then resumes in M-mode at the one-shot
// address the test stored in TRAP_RESUME (see SET_RESUME). No resume address means the trap was not
// expected: the check in progress (gp) fails. Returns with MPIE clear so a still-pending interrupt
// does not fire again at once.
  .text
  .align 2
  .globl m_trap_entry
m_trap_entry:
  csrrw t0, mscratch, t0
  sd t1, TRAP_SAVE_T1(t0)
  sd t2, TRAP_SAVE_T2(t0)
  csrr t1, mscratch
  sd t1, TRAP_SAVE_T0(t0)
  csrw mscratch, t0
  csrr t1, mcause
  sd t1, TRAP_CAUSE(t0)
  csrr t1, mepc
  sd t1, TRAP_EPC(t0)
  csrr t1, mtval
  sd t1, TRAP_TVAL(t0)
  csrr t1, mstatus
  sd t1, TRAP_STATUS(t0)
  ld t1, TRAP_COUNT(t0)
  addi t1, t1, 1
  sd t1, TRAP_COUNT(t0)
  ld t1, TRAP_RESUME(t0)
  beqz t1, unexpected_trap
  sd zero, TRAP_RESUME(t0)
  csrw mepc, t1
  li t2, MSTATUS_MPP
  csrs mstatus, t2               // resume in M-mode
  li t2, MSTATUS_MPIE
  csrc mstatus, t2
  ld t1, TRAP_SAVE_T1(t0)
  ld t2, TRAP_SAVE_T2(t0)
  ld t0, TRAP_SAVE_T0(t0)
  mret

// ---- S-mode trap handler (used once a test delegates) -------------------------------------------
// Same record in s_trap_rec; resumes in S-mode at the one-shot address in s_trap_rec's TRAP_RESUME.
  .align 2
  .globl s_trap_entry
s_trap_entry:
  csrrw t0, sscratch, t0
  sd t1, TRAP_SAVE_T1(t0)
  sd t2, TRAP_SAVE_T2(t0)
  csrr t1, sscratch
  sd t1, TRAP_SAVE_T0(t0)
  csrw sscratch, t0
  csrr t1, scause
  sd t1, TRAP_CAUSE(t0)
  csrr t1, sepc
  sd t1, TRAP_EPC(t0)
  csrr t1, stval
  sd t1, TRAP_TVAL(t0)
  csrr t1, sstatus
  sd t1, TRAP_STATUS(t0)
  ld t1, TRAP_COUNT(t0)
  addi t1, t1, 1
  sd t1, TRAP_COUNT(t0)
  ld t1, TRAP_RESUME(t0)
  beqz t1, unexpected_s_trap
  sd zero, TRAP_RESUME(t0)
  csrw sepc, t1
  li t2, SSTATUS_SPP
  csrs sstatus, t2               // resume in S-mode
  li t2, SSTATUS_SPIE
  csrc sstatus, t2
  ld t1, TRAP_SAVE_T1(t0)
  ld t2, TRAP_SAVE_T2(t0)
  ld t0, TRAP_SAVE_T0(t0)
  sret

unexpected_s_trap:
  // An S-mode handler cannot reach M-only CSRs; ecall with no M resume address ends in fail below.
  ecall
unexpected_trap:
  j fail

// ---- Reports ---------------------------------------------------------------------------------------
  .globl pass
pass:
  // UART first: a machine that stops at the tohost write still shows the verdict
  la t0, pass_htif               // if the UART faults, report anyway
  csrw mtvec, t0
  la a0, msg_pass
  jal ra, uart_puts
  .align 2
pass_htif:
  li t1, 1
  la t0, tohost
  sd t1, 0(t0)
  li a0, FINISHER_PASS
  j finish_now

  .globl fail
fail:
  // gp is the failing check number, 1..255 (the exit code of QEMU and tsvm). 0 means "before any check".
  bnez gp, 1f
  li gp, 255
1:
  la t0, fail_htif
  csrw mtvec, t0
  la a0, msg_fail
  jal ra, uart_puts
  mv a0, gp
  jal ra, uart_putdec
  li a0, '\n'
  jal ra, uart_putc
  .align 2
fail_htif:
  slli t1, gp, 1
  ori t1, t1, 1
  la t0, tohost
  sd t1, 0(t0)
  slli a0, gp, 16
  li t0, FINISHER_FAIL
  or a0, a0, t0
  .align 2
finish_now:
  li t0, SIFIVE_TEST_BASE
  sw a0, 0(t0)
1:
  wfi
  j 1b

uart_putc:
  li t0, UART_BASE
1:
  lbu t1, 5(t0)                  // LSR: wait for THRE
  andi t1, t1, 0x20
  beqz t1, 1b
  sb a0, 0(t0)
  ret

uart_puts:
  mv t2, ra
  mv t3, a0
1:
  lbu a0, 0(t3)
  beqz a0, 2f
  jal ra, uart_putc
  addi t3, t3, 1
  j 1b
2:
  mv ra, t2
  ret

// Prints a0 (< 1000) in decimal.
uart_putdec:
  mv t4, ra
  mv t3, a0
  li t5, 100
  divu a0, t3, t5
  remu t3, t3, t5
  beqz a0, 1f
  addi a0, a0, '0'
  jal ra, uart_putc
  li t5, 10
  divu a0, t3, t5
  j 2f
1:
  li t5, 10
  divu a0, t3, t5
  beqz a0, 3f
2:
  addi a0, a0, '0'
  jal ra, uart_putc
3:
  li t5, 10
  remu a0, t3, t5
  addi a0, a0, '0'
  jal ra, uart_putc
  mv ra, t4
  ret

  .section .rodata
msg_pass: .asciz "PASS\n"
msg_fail: .asciz "FAIL "

  .data
  .align 3
  .globl tohost
tohost: .dword 0
  .globl fromhost
fromhost: .dword 0
  .align 3
  .globl m_trap_rec
m_trap_rec: .skip TRAP_REC_SIZE
  .globl s_trap_rec
s_trap_rec: .skip TRAP_REC_SIZE
