// Privilege modes and synchronous traps: ecall from M/S/U, ebreak, illegal instructions with mtval, mret
// and sret into S and U, medeleg delegation to S, mstatus.TW/TSR/TVM and mcounteren/scounteren
// (RISC-V privileged ISA, sections 3.1.6 "mstatus", 3.1.8 "medeleg", 3.1.11 "mcounteren",
// 3.3 "Machine-Mode Privileged Instructions", 4.1.3 "scounteren").
#include "test.h"

#define MSTATUS_MPP_SHIFT 11

  .text
  .globl test_main
test_main:
  .option push
  .option norvc                  // mepc/mtval below are computed with 4-byte instructions

  // ---- ecall / ebreak from M ----
  TEST_TRAP(1, CAUSE_MACHINE_ECALL, 2: ecall)
  CHECK_MEPC(2b)
  CHECK_MTVAL(0)
  TEST_TRAP(2, CAUSE_BREAKPOINT, 2: ebreak)
  CHECK_MEPC(2b)
  // trap entry: MPP = M, MIE -> MPIE; the trap record holds mstatus as seen by the handler
  CHECK_NUM(3)
  li t0, MSTATUS_MIE
  csrs mstatus, t0               // no interrupt is enabled in mie, so none fires
  SET_RESUME(2f)
  ecall
2:
  la t1, m_trap_rec
  ld t0, TRAP_STATUS(t1)
  li t6, MSTATUS_MPP | MSTATUS_MPIE | MSTATUS_MIE
  and t0, t0, t6
  CHECK_REG(t0, MSTATUS_MPP | MSTATUS_MPIE)
  .option pop
  // c.ebreak: mepc = its address
  .option push
  .option rvc
  TEST_TRAP(4, CAUSE_BREAKPOINT, 2: c.ebreak)
  CHECK_MEPC(2b)
  .option pop
  .option push
  .option norvc

  // ---- illegal instructions: mcause 2, mtval = the instruction bits ----
  TEST_TRAP(5, CAUSE_ILLEGAL_INSTRUCTION, 2: .word 0x0000006b)   // reserved major opcode
  CHECK_MTVAL(0x0000006b)
  CHECK_MEPC(2b)
  TEST_TRAP(6, CAUSE_ILLEGAL_INSTRUCTION, .word 0xffffffff)
  CHECK_MTVAL(0xffffffff)
  TEST_TRAP(7, CAUSE_ILLEGAL_INSTRUCTION, .word 0x40001033)   // OP funct3 SLL with funct7 0x20: reserved
  CHECK_MTVAL(0x40001033)
  TEST_TRAP(8, CAUSE_ILLEGAL_INSTRUCTION, .word 0x4000503b | (1 << 25))      // OP-32 funct7 0x21 funct3 5: reserved
  CHECK_MTVAL(0x4200503b)
  // unimp (csrrw x0, cycle, x0)
  TEST_TRAP(9, CAUSE_ILLEGAL_INSTRUCTION, unimp)
  CHECK_MTVAL(0xc0001073)

  // ---- into S and U with mret; ecall from there (mcause 9 / 8) ----
  CHECK_NUM(10)
  GOTO_S(1f)
1:
  SET_RESUME(3f)
2:
  ecall
  j fail
3:
  CHECK_MCAUSE(CAUSE_SUPERVISOR_ECALL)
  CHECK_MEPC(2b)
  la t1, m_trap_rec
  ld t0, TRAP_STATUS(t1)
  li t6, MSTATUS_MPP
  and t0, t0, t6
  CHECK_REG(t0, MSTATUS_MPP_S)   // MPP records S
  CHECK_NUM(11)
  GOTO_U(1f)
1:
  SET_RESUME(3f)
2:
  ecall
  j fail
3:
  CHECK_MCAUSE(CAUSE_USER_ECALL)
  CHECK_MEPC(2b)
  la t1, m_trap_rec
  ld t0, TRAP_STATUS(t1)
  li t6, MSTATUS_MPP
  and t0, t0, t6
  CHECK_REG(t0, 0)               // MPP records U
  // mret: MIE <- MPIE, MPIE <- 1, MPP <- U (least-privileged supported mode)
  CHECK_NUM(12)
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  GOTO_U(1f)
1:
  BACK_TO_M(2f)
2:
  la t1, m_trap_rec
  ld t0, TRAP_STATUS(t1)         // mstatus at the U ecall: reflects what mret left
  li t6, MSTATUS_MIE | MSTATUS_MPIE
  and t0, t0, t6
  CHECK_REG(t0, 0)               // MIE was MPIE (0) ... and trap entry copied MIE (0) into MPIE
  // ebreak and illegal instructions in U also land in M
  CHECK_NUM(13)
  GOTO_U(1f)
1:
  TEST_TRAP(13, CAUSE_BREAKPOINT, ebreak)
  GOTO_U(1f)
1:
  TEST_TRAP(14, CAUSE_ILLEGAL_INSTRUCTION, .word 0x0000006b)
  CHECK_MTVAL(0x0000006b)

  // ---- privileged instructions and CSRs from lower modes are illegal ----
  GOTO_S(1f)
1:
  TEST_TRAP(15, CAUSE_ILLEGAL_INSTRUCTION, mret)      // mret in S
  CHECK_MTVAL(0x30200073)
  GOTO_U(1f)
1:
  TEST_TRAP(16, CAUSE_ILLEGAL_INSTRUCTION, sret)      // sret in U
  CHECK_MTVAL(0x10200073)
  GOTO_S(1f)
1:
  TEST_TRAP(17, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, mscratch)   // M CSR from S
  CHECK_MTVAL(0x34002573)
  GOTO_U(1f)
1:
  TEST_TRAP(18, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, sscratch)   // S CSR from U
  GOTO_U(1f)
1:
  TEST_TRAP(19, CAUSE_ILLEGAL_INSTRUCTION, sfence.vma)          // sfence.vma in U
  // S can use its own CSRs
  CHECK_NUM(20)
  GOTO_S(1f)
1:
  csrr a0, sscratch
  li a1, 0x5a5a
  csrw stvec, zero
  csrr a2, sstatus
  csrr a2, satp
  sfence.vma
  BACK_TO_M(2f)
2:
  CHECK_MCAUSE(CAUSE_SUPERVISOR_ECALL)

  // ---- sret from S: to U (SPP = 0) and to S (SPP = 1); SIE <- SPIE ----
  CHECK_NUM(21)
  GOTO_S(1f)
1:
  li t0, SSTATUS_SPP
  csrc sstatus, t0
  la t0, 2f
  csrw sepc, t0
  sret
2:
  SET_RESUME(3f)
  ecall
3:
  CHECK_MCAUSE(CAUSE_USER_ECALL)
  CHECK_NUM(22)
  GOTO_S(1f)
1:
  li t0, SSTATUS_SPP | SSTATUS_SPIE
  csrs sstatus, t0
  li t0, SSTATUS_SIE
  csrc sstatus, t0
  la t0, 2f
  csrw sepc, t0
  sret
2:
  csrr s1, sstatus
  BACK_TO_M(3f)
3:
  CHECK_MCAUSE(CAUSE_SUPERVISOR_ECALL)
  li t6, SSTATUS_SPP | SSTATUS_SPIE | SSTATUS_SIE
  and s1, s1, t6
  CHECK_REG(s1, SSTATUS_SPIE | SSTATUS_SIE)     // SIE <- SPIE (1), SPIE <- 1, SPP <- U
  li t0, SSTATUS_SIE
  csrc sstatus, t0
  // sret from M is legal too: it returns to SPP
  CHECK_NUM(23)
  li t0, SSTATUS_SPP
  csrc sstatus, t0
  la t0, 2f
  csrw sepc, t0
  sret
2:
  SET_RESUME(3f)
  ecall
3:
  CHECK_MCAUSE(CAUSE_USER_ECALL)

  // ---- medeleg: delegated exceptions from U and S go to the S handler ----
  la t0, s_trap_entry
  csrw stvec, t0
  li t0, (1 << CAUSE_USER_ECALL) | (1 << CAUSE_ILLEGAL_INSTRUCTION) | (1 << CAUSE_BREAKPOINT)
  csrw medeleg, t0
  csrr a0, medeleg
  CHECK_NUM(24)
  and a0, a0, t0
  bne a0, t0, fail
  // U ecall -> S (scause 8, sepc, SPP = U), then S ecall (not delegated) -> M
  CHECK_NUM(25)
  SET_S_RESUME(3f)
  GOTO_U(1f)
1:
2:
  ecall
  j fail
3:
  BACK_TO_M(4f)
4:
  la t1, s_trap_rec
  ld s1, TRAP_STATUS(t1)         // sstatus as the S handler saw it
  CHECK_MCAUSE(CAUSE_SUPERVISOR_ECALL)
  CHECK_SCAUSE(CAUSE_USER_ECALL)
  CHECK_SEPC(2b)
  li t6, SSTATUS_SPP
  and s1, s1, t6
  CHECK_REG(s1, 0)
  // illegal instruction in S with the bit delegated: S handles its own trap, stval = instruction, SPP = S
  CHECK_NUM(26)
  SET_S_RESUME(3f)
  GOTO_S(1f)
1:
2:
  .word 0x0000006b
  j fail
3:
  BACK_TO_M(4f)
4:
  la t1, s_trap_rec
  ld s1, TRAP_STATUS(t1)
  CHECK_SCAUSE(CAUSE_ILLEGAL_INSTRUCTION)
  CHECK_STVAL(0x0000006b)
  CHECK_SEPC(2b)
  li t6, SSTATUS_SPP
  and s1, s1, t6
  CHECK_REG(s1, SSTATUS_SPP)
  // traps taken in M are never delegated, whatever medeleg says
  CHECK_NUM(27)
  la t1, s_trap_rec
  ld s2, TRAP_COUNT(t1)
  TEST_TRAP(27, CAUSE_ILLEGAL_INSTRUCTION, .word 0x0000006b)
  TEST_TRAP(28, CAUSE_BREAKPOINT, ebreak)
  la t1, s_trap_rec
  ld s3, TRAP_COUNT(t1)
  bne s2, s3, fail
  // not delegated: a U ebreak... is delegated (bit 3); a U load access fault is not: goes to M
  CHECK_NUM(29)
  GOTO_U(1f)
1:
  TEST_TRAP(29, CAUSE_LOAD_ACCESS, li a1, 0x4; ld a0, 0(a1))   // nothing is mapped at 4 on virt
  la t1, m_trap_rec              // mtval: the address or zero, both allowed for access faults
  ld t0, TRAP_TVAL(t1)
  beqz t0, 2f
  CHECK_REG(t0, 0x4)
2:
  csrw medeleg, zero

  // ---- mstatus.TW: wfi in S traps illegal ----
  CHECK_NUM(30)
  li t0, MSTATUS_TW
  csrs mstatus, t0
  GOTO_S(1f)
1:
  TEST_TRAP(30, CAUSE_ILLEGAL_INSTRUCTION, wfi)
  CHECK_MTVAL(0x10500073)
  li t0, MSTATUS_TW
  csrc mstatus, t0
  // wfi in M ignores TW (here it returns once the pending interrupt below is seen)
  CHECK_NUM(31)
  li t0, MSTATUS_TW
  csrs mstatus, t0
  li t0, MIP_SSIP
  csrs mie, t0
  csrs mip, t0                   // a pending, enabled (in mie) interrupt: wfi must not stall
  wfi
  csrc mie, t0
  csrc mip, t0
  li t0, MSTATUS_TW
  csrc mstatus, t0

  // ---- mstatus.TSR: sret in S traps illegal ----
  CHECK_NUM(32)
  li t0, MSTATUS_TSR
  csrs mstatus, t0
  GOTO_S(1f)
1:
  TEST_TRAP(32, CAUSE_ILLEGAL_INSTRUCTION, sret)
  li t0, MSTATUS_TSR
  csrc mstatus, t0

  // ---- mstatus.TVM: satp access and sfence.vma in S trap illegal ----
  li t0, MSTATUS_TVM
  csrs mstatus, t0
  GOTO_S(1f)
1:
  TEST_TRAP(33, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, satp)
  CHECK_MTVAL(0x18002573)
  GOTO_S(1f)
1:
  TEST_TRAP(34, CAUSE_ILLEGAL_INSTRUCTION, csrw satp, zero)
  GOTO_S(1f)
1:
  TEST_TRAP(35, CAUSE_ILLEGAL_INSTRUCTION, sfence.vma)
  // M is not affected by TVM
  CHECK_NUM(36)
  csrr a0, satp
  sfence.vma
  li t0, MSTATUS_TVM
  csrc mstatus, t0

  // ---- counter enables: mcounteren gates S and U, scounteren gates U ----
#define CNT_CY 1
#define CNT_TM 2
#define CNT_IR 4
  csrw mcounteren, zero
  csrw scounteren, zero
  GOTO_S(1f)
1:
  TEST_TRAP(37, CAUSE_ILLEGAL_INSTRUCTION, rdcycle a0)
  CHECK_MTVAL(0xc0002573)
  GOTO_S(1f)
1:
  TEST_TRAP(38, CAUSE_ILLEGAL_INSTRUCTION, rdtime a0)
  GOTO_S(1f)
1:
  TEST_TRAP(39, CAUSE_ILLEGAL_INSTRUCTION, rdinstret a0)
  GOTO_U(1f)
1:
  TEST_TRAP(40, CAUSE_ILLEGAL_INSTRUCTION, rdcycle a0)
  // mcounteren on: S may read, U still not (scounteren = 0)
  CHECK_NUM(41)
  csrwi mcounteren, CNT_CY | CNT_TM | CNT_IR
  GOTO_S(1f)
1:
  rdcycle a0
  rdtime a0
  rdinstret a0
  BACK_TO_M(2f)
2:
  CHECK_MCAUSE(CAUSE_SUPERVISOR_ECALL)
  GOTO_U(1f)
1:
  TEST_TRAP(42, CAUSE_ILLEGAL_INSTRUCTION, rdinstret a0)
  // both on: U may read; each bit gates only its counter
  CHECK_NUM(43)
  csrwi scounteren, CNT_CY | CNT_IR
  GOTO_U(1f)
1:
  rdcycle a0
  rdinstret a0
  BACK_TO_M(2f)
2:
  CHECK_MCAUSE(CAUSE_USER_ECALL)
  GOTO_U(1f)
1:
  TEST_TRAP(44, CAUSE_ILLEGAL_INSTRUCTION, rdtime a0)
  csrwi mcounteren, CNT_TM
  csrwi scounteren, CNT_CY | CNT_TM | CNT_IR
  GOTO_U(1f)
1:
  TEST_TRAP(45, CAUSE_ILLEGAL_INSTRUCTION, rdcycle a0)   // mcounteren.CY = 0 wins over scounteren
  // M reads counters whatever the enables
  CHECK_NUM(46)
  csrw mcounteren, zero
  rdcycle a0
  rdtime a0
  rdinstret a0
  .option pop
  TEST_PASS
