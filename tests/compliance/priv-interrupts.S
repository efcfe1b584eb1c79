// Interrupts: the CLINT machine timer (mtimecmp/mtime) and software interrupt (msip), mip/mie, global
// enables per privilege, priority, WFI wake-up, mideleg delegation to S and stvec vectored mode
// (RISC-V privileged ISA, sections 3.1.9 "mip and mie", 3.1.7 "mtvec", 3.3.3 "WFI", 4.1.2 "stvec";
// SiFive CLINT as on QEMU's virt board).
#include "test.h"

  .text
  .globl test_main
test_main:
  li s0, CLINT_MTIMECMP
  li s1, CLINT_MTIME
  li t0, -1
  sd t0, 0(s0)                   // no timer interrupt pending

  // ---- timer: mip.MTIP follows mtime >= mtimecmp, whatever the enables ----
  CHECK_NUM(1)
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  bnez a0, fail
  CHECK_NUM(2)
  ld t0, 0(s1)
  sd t0, 0(s0)                   // mtimecmp <= mtime: pending
  li a4, 1000000
1:
  addi a4, a4, -1
  beqz a4, fail
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  beqz a0, 1b
  CHECK_NUM(3)
  li t0, -1
  sd t0, 0(s0)
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  bnez a0, fail
  // mtime counts up
  CHECK_NUM(4)
  ld a1, 0(s1)
  li a4, 10000000
1:
  addi a4, a4, -1
  beqz a4, fail
  ld a2, 0(s1)
  beq a2, a1, 1b

  // ---- timer interrupt taken in M: mcause = interrupt | 7 ----
  CHECK_NUM(5)
  li t0, MIP_MTIP
  csrs mie, t0
  SET_RESUME(3f)
  ld t0, 0(s1)
  addi t0, t0, 100
  sd t0, 0(s0)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  li a4, 10000000
1:
  addi a4, a4, -1
  bnez a4, 1b
  j fail                         // never taken
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_TIMER)
  CHECK_MTVAL(0)
  li t0, -1
  sd t0, 0(s0)
  // MIE = 0: a pending, enabled (mie) interrupt is not taken in M
  CHECK_NUM(6)
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  ld t0, 0(s1)
  sd t0, 0(s0)
  la t1, m_trap_rec
  ld s2, TRAP_COUNT(t1)
  li a4, 10000
1:
  addi a4, a4, -1
  bnez a4, 1b
  ld s3, TRAP_COUNT(t1)
  bne s2, s3, fail
  // ... but WFI still wakes up on it, and the interrupt is not taken
  CHECK_NUM(7)
  wfi
  ld s3, TRAP_COUNT(t1)
  bne s2, s3, fail
  li t0, -1
  sd t0, 0(s0)
  // WFI with MIE = 1: the interrupt is taken with mepc = the instruction after wfi
  CHECK_NUM(8)
  SET_RESUME(3f)
  ld t0, 0(s1)
  li t6, 10000                   // 1 ms at 10 MHz: normally the hart is asleep in wfi by then
  add t0, t0, t6
  sd t0, 0(s0)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
4:
  wfi
2:
  // a spurious wake-up is allowed: wait for the interrupt here
  li a4, 10000000
1:
  addi a4, a4, -1
  bnez a4, 1b
  j fail
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_TIMER)
  la t1, m_trap_rec
  ld t0, TRAP_EPC(t1)
  la t6, 4b                      // mepc: after wfi (2b), in the spin loop if wfi woke early, or on the
  bltu t0, t6, fail              // wfi itself if the interrupt came before it
  la t6, 3b
  bgeu t0, t6, fail
  li t0, -1
  sd t0, 0(s0)
  li t0, MIP_MTIP
  csrc mie, t0

  // ---- software interrupt through msip ----
  CHECK_NUM(9)
  li s4, CLINT_MSIP
  li t0, 1
  sw t0, 0(s4)
  csrr a0, mip
  andi a0, a0, MIP_MSIP
  beqz a0, fail
  lw a0, 0(s4)
  CHECK_REG(a0, 1)
  CHECK_NUM(10)
  li t0, MIP_MSIP
  csrs mie, t0
  SET_RESUME(3f)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  li a4, 100000
1:
  addi a4, a4, -1
  bnez a4, 1b
  j fail
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_SOFT)
  sw zero, 0(s4)
  csrr a0, mip
  andi a0, a0, MIP_MSIP
  bnez a0, fail
  // mip.MSIP is read-only in mip (only the CLINT sets it)
  CHECK_NUM(11)
  li t0, MIP_MSIP
  csrs mip, t0
  csrr a0, mip
  andi a0, a0, MIP_MSIP
  bnez a0, fail

  // ---- priority: MSI before MTI when both are pending and enabled ----
  CHECK_NUM(12)
  li t0, MIP_MSIP | MIP_MTIP
  csrs mie, t0
  li t0, 1
  sw t0, 0(s4)
  ld t0, 0(s1)
  sd t0, 0(s0)
  li a4, 1000000                 // wait until both are visible in mip
1:
  addi a4, a4, -1
  beqz a4, fail
  csrr a0, mip
  andi a0, a0, MIP_MSIP | MIP_MTIP
  li t6, MIP_MSIP | MIP_MTIP
  bne a0, t6, 1b
  SET_RESUME(3f)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  nop
  j fail
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_SOFT)
  sw zero, 0(s4)
  CHECK_NUM(13)
  SET_RESUME(3f)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  nop
  j fail
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_TIMER)
  li t0, -1
  sd t0, 0(s0)
  li t0, MIP_MSIP | MIP_MTIP
  csrc mie, t0

  // ---- an M interrupt is always enabled in S and U, whatever mstatus.MIE ----
  CHECK_NUM(14)
  li t0, MIP_MTIP
  csrs mie, t0
  ld t0, 0(s1)
  sd t0, 0(s0)
1:
  csrr a0, mip                   // wait until pending
  andi a0, a0, MIP_MTIP
  beqz a0, 1b
  SET_RESUME(3f)
  GOTO_S(2f)
2:
  nop
  j fail
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_TIMER)
  la t1, m_trap_rec
  ld t0, TRAP_STATUS(t1)
  li t6, MSTATUS_MPP
  and t0, t0, t6
  CHECK_REG(t0, MSTATUS_MPP_S)
  li t0, -1
  sd t0, 0(s0)
  li t0, MIP_MTIP
  csrc mie, t0

  // ---- mideleg: S software and timer interrupts handled in S, through stvec in vectored mode ----
  la t0, s_vectors
  ori t0, t0, 1                  // MODE = Vectored
  csrw stvec, t0
  li t0, MIP_SSIP | MIP_STIP
  csrw mideleg, t0
  csrs mie, t0
  CHECK_NUM(15)
  csrr a0, mideleg
  andi a0, a0, MIP_SSIP | MIP_STIP
  CHECK_REG(a0, MIP_SSIP | MIP_STIP)
  // a delegated interrupt is never taken in M
  CHECK_NUM(16)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  li t0, MIP_SSIP
  csrs mip, t0
  la t1, m_trap_rec
  ld s2, TRAP_COUNT(t1)
  nop
  nop
  ld s3, TRAP_COUNT(t1)
  bne s2, s3, fail
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  // in S with sstatus.SIE = 0 it waits; sip shows it
  CHECK_NUM(17)
  GOTO_S(1f)
1:
  csrr a0, sip
  andi a0, a0, MIP_SSIP
  la t1, s_trap_rec
  ld s3, TRAP_COUNT(t1)
  bnez s3, 8f                    // no S trap yet
  BACK_TO_M(2f)
2:
  CHECK_REG(a0, MIP_SSIP)
  // enabling SIE in S takes it at once, at vector 1 = base + 4 * 1
  CHECK_NUM(18)
  SET_S_RESUME(3f)
  GOTO_S(1f)
1:
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  nop
  j 8f
3:
  li t0, MIP_SSIP                // S clears its own software interrupt
  csrc sip, t0
  csrr s5, sip
  BACK_TO_M(2f)
2:
  CHECK_SCAUSE(CAUSE_INTERRUPT | IRQ_S_SOFT)
  CHECK_TRAP_FIELD(s_trap_rec, TRAP_VECTOR, 1)
  CHECK_NUM(19)
  andi s5, s5, MIP_SSIP
  bnez s5, fail
  // in U the S interrupt is enabled whatever SIE: timer (set by M in mip.STIP) at vector 5
  CHECK_NUM(20)
  li t0, MIP_STIP
  csrs mip, t0
  SET_S_RESUME(3f)
  GOTO_U(1f)
1:
  nop
  j 8f
3:
  BACK_TO_M(2f)
2:
  CHECK_SCAUSE(CAUSE_INTERRUPT | IRQ_S_TIMER)
  CHECK_TRAP_FIELD(s_trap_rec, TRAP_VECTOR, 5)
  la t1, s_trap_rec
  ld t0, TRAP_STATUS(t1)
  andi t0, t0, SSTATUS_SPP
  CHECK_REG(t0, 0)               // came from U
  li t0, MIP_STIP
  csrc mip, t0
  // exceptions go to the base of a vectored stvec (vector 0)
  CHECK_NUM(21)
  li t0, 1 << CAUSE_USER_ECALL
  csrw medeleg, t0
  SET_S_RESUME(3f)
  GOTO_U(1f)
1:
  ecall
  j 8f
3:
  BACK_TO_M(2f)
2:
  CHECK_SCAUSE(CAUSE_USER_ECALL)
  CHECK_TRAP_FIELD(s_trap_rec, TRAP_VECTOR, 0)
  csrw medeleg, zero
  // direct mode: every trap goes to the base
  CHECK_NUM(22)
  la t0, s_vectors
  csrw stvec, t0
  li t0, MIP_SSIP
  csrs mip, t0
  SET_S_RESUME(3f)
  GOTO_U(1f)
1:
  nop
  j 8f
3:
  li t0, MIP_SSIP
  csrc sip, t0
  BACK_TO_M(2f)
2:
  CHECK_SCAUSE(CAUSE_INTERRUPT | IRQ_S_SOFT)
  CHECK_TRAP_FIELD(s_trap_rec, TRAP_VECTOR, 0)

  // ---- M vectored mode: interrupt cause n at mtvec base + 4n ----
  CHECK_NUM(23)
  la t0, m_vectors
  ori t0, t0, 1
  csrw mtvec, t0
  li t0, MIP_MSIP
  csrs mie, t0
  li t0, 1
  sw t0, 0(s4)
  SET_RESUME(3f)
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  nop
  j fail
3:
  sw zero, 0(s4)
  la t0, m_trap_entry
  csrw mtvec, t0
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_SOFT)
  CHECK_TRAP_FIELD(m_trap_rec, TRAP_VECTOR, 3)
  li t0, MIP_MSIP
  csrc mie, t0

  // ---- WFI in S (TW = 0), as a kernel's idle loop: the machine timer wakes it and traps into M ----
  CHECK_NUM(24)
  li t0, MIP_MTIP
  csrs mie, t0
  ld t0, 0(s1)
  li t6, 10000
  add t0, t0, t6
  sd t0, 0(s0)
  SET_RESUME(3f)
  GOTO_S(1f)
1:
  wfi
  li a4, 10000000                // a spurious wake-up is allowed: wait here
2:
  addi a4, a4, -1
  bnez a4, 2b
  j 8f
3:
  CHECK_MCAUSE(CAUSE_INTERRUPT | IRQ_M_TIMER)
  la t1, m_trap_rec
  ld t0, TRAP_STATUS(t1)
  li t6, MSTATUS_MPP
  and t0, t0, t6
  CHECK_REG(t0, MSTATUS_MPP_S)
  li t0, -1
  sd t0, 0(s0)
  TEST_PASS

8:
  // an S-mode path that must not be reached: report through M
  ecall
  j fail

// Vector tables: entry n records n in the trap record's TRAP_VECTOR, then runs the common handler.
#define S_VECTOR(n) csrrw t0, sscratch, t0; sd t1, TRAP_SAVE_T1(t0); li t1, n; sd t1, TRAP_VECTOR(t0); \
  ld t1, TRAP_SAVE_T1(t0); csrrw t0, sscratch, t0; j s_trap_entry
#define M_VECTOR(n) csrrw t0, mscratch, t0; sd t1, TRAP_SAVE_T1(t0); li t1, n; sd t1, TRAP_VECTOR(t0); \
  ld t1, TRAP_SAVE_T1(t0); csrrw t0, mscratch, t0; j m_trap_entry
  .option push
  .option norvc
  .align 8
s_vectors:
  j s_vec0
  j s_vec1
  j fail
  j fail
  j fail
  j s_vec5
  j fail
  j fail
  j fail
  j fail
s_vec0: S_VECTOR(0)
s_vec1: S_VECTOR(1)
s_vec5: S_VECTOR(5)
  .align 8
m_vectors:
  j fail
  j fail
  j fail
  j m_vec3
  j fail
  j fail
  j fail
  j fail
m_vec3: M_VECTOR(3)
  .option pop
