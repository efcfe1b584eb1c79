// Macros of the compliance programs (RISC-V unprivileged and privileged specs, QEMU virt memory map):
// each check has a number, loaded into gp before the check, that becomes the failure code.
#ifndef TSVM_COMPLIANCE_TEST_H
#define TSVM_COMPLIANCE_TEST_H

// ---- QEMU virt board -------------------------------------------------------------------------------
#define SIFIVE_TEST_BASE 0x100000
#define FINISHER_PASS 0x5555
#define FINISHER_FAIL 0x3333
#define UART_BASE 0x10000000
#define CLINT_BASE 0x2000000
#define CLINT_MSIP (CLINT_BASE + 0x0)
#define CLINT_MTIMECMP (CLINT_BASE + 0x4000)
#define CLINT_MTIME (CLINT_BASE + 0xbff8)

// ---- Privileged architecture (names as in the spec) ------------------------------------------------
#define MSTATUS_SIE (1 << 1)
#define MSTATUS_MIE (1 << 3)
#define MSTATUS_SPIE (1 << 5)
#define MSTATUS_MPIE (1 << 7)
#define MSTATUS_SPP (1 << 8)
#define MSTATUS_MPP (3 << 11)
#define MSTATUS_MPP_S (1 << 11)
#define MSTATUS_FS (3 << 13)
#define MSTATUS_FS_INITIAL (1 << 13)
#define MSTATUS_MPRV (1 << 17)
#define MSTATUS_SUM (1 << 18)
#define MSTATUS_MXR (1 << 19)
#define MSTATUS_TVM (1 << 20)
#define MSTATUS_TW (1 << 21)
#define MSTATUS_TSR (1 << 22)
#define SSTATUS_SIE MSTATUS_SIE
#define SSTATUS_SPIE MSTATUS_SPIE
#define SSTATUS_SPP MSTATUS_SPP
#define SSTATUS_SUM MSTATUS_SUM
#define SSTATUS_MXR MSTATUS_MXR

#define MIP_SSIP (1 << 1)
#define MIP_MSIP (1 << 3)
#define MIP_STIP (1 << 5)
#define MIP_MTIP (1 << 7)
#define MIP_SEIP (1 << 9)
#define MIP_MEIP (1 << 11)

#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL_INSTRUCTION 2
#define CAUSE_BREAKPOINT 3
#define CAUSE_MISALIGNED_LOAD 4
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS 7
#define CAUSE_USER_ECALL 8
#define CAUSE_SUPERVISOR_ECALL 9
#define CAUSE_MACHINE_ECALL 11
#define CAUSE_FETCH_PAGE_FAULT 12
#define CAUSE_LOAD_PAGE_FAULT 13
#define CAUSE_STORE_PAGE_FAULT 15
#define CAUSE_INTERRUPT (1 << 63)
#define IRQ_S_SOFT 1
#define IRQ_M_SOFT 3
#define IRQ_S_TIMER 5
#define IRQ_M_TIMER 7

#define PTE_V (1 << 0)
#define PTE_R (1 << 1)
#define PTE_W (1 << 2)
#define PTE_X (1 << 3)
#define PTE_U (1 << 4)
#define PTE_G (1 << 5)
#define PTE_A (1 << 6)
#define PTE_D (1 << 7)
#define SATP_MODE_SV39 (8 << 60)
#define SATP_MODE_SV48 (9 << 60)

#define FFLAGS_NX 0x01
#define FFLAGS_UF 0x02
#define FFLAGS_OF 0x04
#define FFLAGS_DZ 0x08
#define FFLAGS_NV 0x10

// ---- Trap record (runtime.S fills it; one for M, one for S) ----------------------------------------
// The handlers find their record through mscratch/sscratch: a test that uses those CSRs restores them.
#define TRAP_CAUSE 0
#define TRAP_EPC 8
#define TRAP_TVAL 16
#define TRAP_STATUS 24
#define TRAP_COUNT 32
#define TRAP_RESUME 40
#define TRAP_SAVE_T0 48
#define TRAP_SAVE_T1 56
#define TRAP_SAVE_T2 64
#define TRAP_VECTOR 72   // free for tests: e.g. which vectored entry was taken
#define TRAP_REC_SIZE 80

#ifdef __ASSEMBLER__

// Absolute addressing: `la` is auipc+addi, no GOT (the programs are linked at a fixed address).
.option nopic

// Every check loads its number into gp; 1..255 because the number becomes an 8-bit process exit code.
#define CHECK_NUM(n) \
  .if ((n) < 1) || ((n) > 255); .error "check numbers must be 1..255"; .endif; li gp, n

// Fails check n unless register reg equals the 64-bit value expect after running code (t6 is scratch).
#define TEST_CASE(n, reg, expect, code...) \
  CHECK_NUM(n); code; li t6, expect; bne reg, t6, fail

#define CHECK_REG(reg, expect) li t6, expect; bne reg, t6, fail

// ---- Integer ---------------------------------------------------------------------------------------
#define TEST_RR_OP(n, inst, expect, v1, v2) \
  TEST_CASE(n, a0, expect, li a1, v1; li a2, v2; inst a0, a1, a2)
#define TEST_RR_SRC1_EQ_DEST(n, inst, expect, v1, v2) \
  TEST_CASE(n, a1, expect, li a1, v1; li a2, v2; inst a1, a1, a2)
#define TEST_RR_SRC2_EQ_DEST(n, inst, expect, v1, v2) \
  TEST_CASE(n, a2, expect, li a1, v1; li a2, v2; inst a2, a1, a2)
#define TEST_RR_ZERO_DEST(n, inst, v1, v2) \
  TEST_CASE(n, x0, 0, li a1, v1; li a2, v2; inst x0, a1, a2)
#define TEST_RR_ZERO_SRC1(n, inst, expect, v2) \
  TEST_CASE(n, a0, expect, li a2, v2; inst a0, x0, a2)
#define TEST_IMM_OP(n, inst, expect, v1, imm) \
  TEST_CASE(n, a0, expect, li a1, v1; inst a0, a1, imm)
#define TEST_IMM_SRC1_EQ_DEST(n, inst, expect, v1, imm) \
  TEST_CASE(n, a1, expect, li a1, v1; inst a1, a1, imm)
#define TEST_R_OP(n, inst, expect, v1) \
  TEST_CASE(n, a0, expect, li a1, v1; inst a0, a1)

// Loads read from label base + offset; stores write then read back with the matching load.
#define TEST_LD_OP(n, inst, expect, offset, base) \
  TEST_CASE(n, a0, expect, la a1, base; inst a0, offset(a1))
#define TEST_ST_OP(n, ldinst, stinst, expect, offset, base) \
  TEST_CASE(n, a0, expect, la a1, base; li a2, expect; stinst a2, offset(a1); ldinst a0, offset(a1))

#define TEST_BR2_TAKEN(n, inst, v1, v2) \
  CHECK_NUM(n); li a1, v1; li a2, v2; inst a1, a2, 1f; j fail; 1:
#define TEST_BR2_NOT_TAKEN(n, inst, v1, v2) \
  CHECK_NUM(n); li a1, v1; li a2, v2; inst a1, a2, fail

// ---- Traps -----------------------------------------------------------------------------------------
// The next trap into M (or S) resumes at label, in M (or S), with its cause/epc/tval recorded.
#define SET_RESUME(label) la t0, label; la t1, m_trap_rec; sd t0, TRAP_RESUME(t1); sd zero, TRAP_CAUSE(t1)
#define SET_S_RESUME(label) la t0, label; la t1, s_trap_rec; sd t0, TRAP_RESUME(t1); sd zero, TRAP_CAUSE(t1)
#define CLEAR_RESUME la t1, m_trap_rec; sd zero, TRAP_RESUME(t1)

#define CHECK_TRAP_FIELD(rec, field, expect) la t1, rec; ld t0, field(t1); CHECK_REG(t0, expect)
#define CHECK_MCAUSE(expect) CHECK_TRAP_FIELD(m_trap_rec, TRAP_CAUSE, expect)
#define CHECK_MTVAL(expect) CHECK_TRAP_FIELD(m_trap_rec, TRAP_TVAL, expect)
#define CHECK_SCAUSE(expect) CHECK_TRAP_FIELD(s_trap_rec, TRAP_CAUSE, expect)
#define CHECK_STVAL(expect) CHECK_TRAP_FIELD(s_trap_rec, TRAP_TVAL, expect)
// mepc must be the address of label.
#define CHECK_MEPC(label) la t1, m_trap_rec; ld t0, TRAP_EPC(t1); la t6, label; bne t0, t6, fail
#define CHECK_SEPC(label) la t1, s_trap_rec; ld t0, TRAP_EPC(t1); la t6, label; bne t0, t6, fail

// Check n: code must trap into M with mcause cause (the instruction at the end of code is not reached
// past). Uses t0, t1, t6.
#define TEST_TRAP(n, cause, code...) \
  CHECK_NUM(n); SET_RESUME(1f); code; j fail; 1: CHECK_MCAUSE(cause)

// Enter a lower privilege at label (from M), via mret.
#define GOTO_MODE(mpp, label) \
  li t0, MSTATUS_MPP; csrc mstatus, t0; li t0, mpp; csrs mstatus, t0; la t0, label; csrw mepc, t0; mret
#define GOTO_U(label) GOTO_MODE(0, label)
#define GOTO_S(label) GOTO_MODE(MSTATUS_MPP_S, label)
// From any mode, come back to M at label: ecall into the M handler.
#define BACK_TO_M(label) SET_RESUME(label); ecall

#define TEST_PASS j pass

// ---- Floating point --------------------------------------------------------------------------------
// Operands and results live in .data next to the check; a0 = result bits, a1 = fflags.
#define FP_DATA(a, b, c, r) \
  .pushsection .data; .align 3; 9: .dword a, b, c, r; .popsection; la t5, 9b

// Binary op (double): result bits and exact fflags. rm is a static rounding mode or dyn.
#define TEST_FP_OP2_D(n, inst, rm, flags, result, a, b) \
  CHECK_NUM(n); FP_DATA(a, b, 0, result); fld f1, 0(t5); fld f2, 8(t5); fsflags x0; \
  inst f3, f1, f2, rm; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail
#define TEST_FP_OP1_D(n, inst, rm, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, result); fld f1, 0(t5); fsflags x0; \
  inst f3, f1, rm; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail
#define TEST_FP_OP3_D(n, inst, rm, flags, result, a, b, c) \
  CHECK_NUM(n); FP_DATA(a, b, c, result); fld f1, 0(t5); fld f2, 8(t5); fld f4, 16(t5); fsflags x0; \
  inst f3, f1, f2, f4, rm; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail
// Ops without a rounding mode (fmin/fmax/fsgnj): same, minus rm.
#define TEST_FP_OP2N_D(n, inst, flags, result, a, b) \
  CHECK_NUM(n); FP_DATA(a, b, 0, result); fld f1, 0(t5); fld f2, 8(t5); fsflags x0; \
  inst f3, f1, f2; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail

// Single precision: operands are 32-bit patterns, loaded NaN-boxed with flw; the result is read back
// as the full 64-bit register so a missing NaN-box shows. result is the 32-bit pattern.
#define FP_BOXED(r) (0xffffffff00000000 | (r))
#define TEST_FP_OP2_S(n, inst, rm, flags, result, a, b) \
  CHECK_NUM(n); FP_DATA(a, b, 0, FP_BOXED(result)); flw f1, 0(t5); flw f2, 8(t5); fsflags x0; \
  inst f3, f1, f2, rm; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail
#define TEST_FP_OP1_S(n, inst, rm, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, FP_BOXED(result)); flw f1, 0(t5); fsflags x0; \
  inst f3, f1, rm; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail
#define TEST_FP_OP3_S(n, inst, rm, flags, result, a, b, c) \
  CHECK_NUM(n); FP_DATA(a, b, c, FP_BOXED(result)); flw f1, 0(t5); flw f2, 8(t5); flw f4, 16(t5); \
  fsflags x0; inst f3, f1, f2, f4, rm; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail
#define TEST_FP_OP2N_S(n, inst, flags, result, a, b) \
  CHECK_NUM(n); FP_DATA(a, b, 0, FP_BOXED(result)); flw f1, 0(t5); flw f2, 8(t5); fsflags x0; \
  inst f3, f1, f2; fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; \
  li t6, flags; bne a1, t6, fail

// FP → integer register (compares, fclass, conversions to integers): a0 = integer result.
#define TEST_FP_INT_OP1_D(n, inst, rm, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, 0); fld f1, 0(t5); fsflags x0; inst a0, f1, rm; frflags a1; \
  li t6, result; bne a0, t6, fail; li t6, flags; bne a1, t6, fail
#define TEST_FP_INT_OP1N_D(n, inst, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, 0); fld f1, 0(t5); fsflags x0; inst a0, f1; frflags a1; \
  li t6, result; bne a0, t6, fail; li t6, flags; bne a1, t6, fail
#define TEST_FP_INT_OP2_D(n, inst, flags, result, a, b) \
  CHECK_NUM(n); FP_DATA(a, b, 0, 0); fld f1, 0(t5); fld f2, 8(t5); fsflags x0; inst a0, f1, f2; \
  frflags a1; li t6, result; bne a0, t6, fail; li t6, flags; bne a1, t6, fail
#define TEST_FP_INT_OP1_S(n, inst, rm, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, 0); flw f1, 0(t5); fsflags x0; inst a0, f1, rm; frflags a1; \
  li t6, result; bne a0, t6, fail; li t6, flags; bne a1, t6, fail
#define TEST_FP_INT_OP1N_S(n, inst, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, 0); flw f1, 0(t5); fsflags x0; inst a0, f1; frflags a1; \
  li t6, result; bne a0, t6, fail; li t6, flags; bne a1, t6, fail
#define TEST_FP_INT_OP2_S(n, inst, flags, result, a, b) \
  CHECK_NUM(n); FP_DATA(a, b, 0, 0); flw f1, 0(t5); flw f2, 8(t5); fsflags x0; inst a0, f1, f2; \
  frflags a1; li t6, result; bne a0, t6, fail; li t6, flags; bne a1, t6, fail

// Integer → FP (fcvt.d.l etc.): a is the integer operand, result the FP bits (64-bit register).
#define TEST_INT_FP_OP(n, inst, rm, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, result); ld a2, 0(t5); fsflags x0; inst f3, a2, rm; fmv.x.d a0, f3; \
  frflags a1; ld t6, 24(t5); bne a0, t6, fail; li t6, flags; bne a1, t6, fail

// ... for the conversions that are always exact and take no rounding mode (fcvt.d.w, fcvt.d.wu).
#define TEST_INT_FP_OP_EXACT(n, inst, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, result); ld a2, 0(t5); fsflags x0; inst f3, a2; fmv.x.d a0, f3; \
  frflags a1; ld t6, 24(t5); bne a0, t6, fail; li t6, flags; bne a1, t6, fail

#endif // __ASSEMBLER__
#endif // TSVM_COMPLIANCE_TEST_H
