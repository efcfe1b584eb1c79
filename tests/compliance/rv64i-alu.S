// RV64I register-register and immediate arithmetic, logic, shifts, compares, LUI/AUIPC and the *W forms
// with their sign extension (RISC-V unprivileged ISA, chapters 2 "RV32I" and 5 "RV64I").
#include "test.h"

  .text
  .globl test_main
test_main:
  // add / sub: wrap-around, no overflow trap
  TEST_RR_OP(1, add, 0x0000000000000003, 1, 2)
  TEST_RR_OP(2, add, 0x0000000000000000, -1, 1)
  TEST_RR_OP(3, add, 0x8000000000000000, 0x7fffffffffffffff, 1)
  TEST_RR_OP(4, add, 0x00000000ffffffff, 0x7fffffff, 0x80000000)
  TEST_RR_SRC1_EQ_DEST(5, add, 24, 13, 11)
  TEST_RR_SRC2_EQ_DEST(6, add, 25, 14, 11)
  TEST_RR_ZERO_DEST(7, add, 1, 2)
  TEST_RR_OP(8, sub, 0xffffffffffffffff, 1, 2)
  TEST_RR_OP(9, sub, 0x7fffffffffffffff, 0x8000000000000000, 1)
  TEST_RR_ZERO_SRC1(10, sub, 0xfffffffffffffffb, 5)
  // addi: 12-bit signed immediate
  TEST_IMM_OP(11, addi, 0x0000000000000800 - 1, 0, 0x7ff)
  TEST_IMM_OP(12, addi, 0xfffffffffffff800, 0, -2048)
  TEST_IMM_OP(13, addi, 0x7fffffffffffffff, 0x8000000000000000, -1)
  TEST_IMM_SRC1_EQ_DEST(14, addi, 24, 13, 11)
  // *W forms: 32-bit result, sign-extended to 64 bits
  TEST_RR_OP(15, addw, 0xffffffff80000000, 0x7fffffff, 1)
  TEST_RR_OP(16, addw, 0x0000000000000000, 0xffffffff, 1)
  TEST_RR_OP(17, addw, 0x0000000000000003, 0x1234567800000001, 0x9abcdef000000002)
  TEST_RR_OP(18, subw, 0x000000007fffffff, 0x80000000, 1)
  TEST_RR_OP(19, subw, 0xffffffffffffffff, 0, 1)
  TEST_IMM_OP(20, addiw, 0xffffffff80000000, 0x7fffffff, 1)
  TEST_IMM_OP(21, addiw, 0x000000007fffffff, 0x80000000, -1)
  TEST_IMM_OP(22, addiw, 0xfffffffffffff800, 0xffffffff00000000, -2048)
  TEST_R_OP(23, sext.w, 0xffffffff87654321, 0x1234567887654321)
  TEST_R_OP(24, sext.w, 0x0000000012345678, 0xffffffff12345678)
  // logic
  TEST_RR_OP(25, and, 0x0f000f000f000f00, 0xff00ff00ff00ff00, 0x0f0f0f0f0f0f0f0f)
  TEST_RR_OP(26, or, 0xff0fff0fff0fff0f, 0xff00ff00ff00ff00, 0x0f0f0f0f0f0f0f0f)
  TEST_RR_OP(27, xor, 0xf00ff00ff00ff00f, 0xff00ff00ff00ff00, 0x0f0f0f0f0f0f0f0f)
  TEST_IMM_OP(28, andi, 0xff00ff00ff00ff00, 0xff00ff00ff00ff00, -1)
  TEST_IMM_OP(29, andi, 0x0000000000000700, 0xff00ff00ff00ff00, 0x70f)
  TEST_IMM_OP(30, ori, 0xfffffffffffff80f, 0x000000000000000f, -2048)
  TEST_IMM_OP(31, xori, 0x00ff00ff00ff00ff, 0xff00ff00ff00ff00, -1)
  TEST_IMM_OP(32, xori, 0xff00ff00ff00f80f, 0xff00ff00ff00ff00, 0x70f)
  // compares, signed vs unsigned
  TEST_RR_OP(33, slt, 1, -1, 0)
  TEST_RR_OP(34, slt, 0, 0, -1)
  TEST_RR_OP(35, slt, 1, 0x8000000000000000, 0x7fffffffffffffff)
  TEST_RR_OP(36, slt, 0, 5, 5)
  TEST_RR_OP(37, sltu, 0, -1, 0)
  TEST_RR_OP(38, sltu, 1, 0, -1)
  TEST_RR_OP(39, sltu, 0, 0x8000000000000000, 0x7fffffffffffffff)
  TEST_RR_OP(40, sltu, 0, 5, 5)
  TEST_IMM_OP(41, slti, 1, -2049 + 1 - 1, -2048)
  TEST_IMM_OP(42, slti, 0, 0, -1)
  TEST_IMM_OP(43, slti, 1, 0x8000000000000000, 0)
  // sltiu sign-extends the immediate, then compares unsigned: x < 0xfff...fff for all x but -1
  TEST_IMM_OP(44, sltiu, 1, 0x7fffffffffffffff, -1)
  TEST_IMM_OP(45, sltiu, 0, -1, -1)
  TEST_IMM_OP(46, sltiu, 1, 0, 1)
  TEST_R_OP(47, seqz, 1, 0)
  TEST_R_OP(48, seqz, 0, 0x100000000)
  TEST_R_OP(49, snez, 1, 0x8000000000000000)
  TEST_RR_ZERO_SRC1(50, sltu, 1, 7)
  // shifts: 6-bit amounts on RV64 (only the low 6 bits of rs2 count)
  TEST_RR_OP(51, sll, 0x8000000000000000, 1, 63)
  TEST_RR_OP(52, sll, 0x0000000000000002, 1, 65)
  TEST_RR_OP(53, sll, 0x1234567000000000, 0xabcdef0012345670, 32)
  TEST_RR_OP(54, srl, 0x0000000000000001, 0x8000000000000000, 63)
  TEST_RR_OP(55, srl, 0x4000000000000000, 0x8000000000000000, 0xffffffffffffff41)
  TEST_RR_OP(56, sra, 0xffffffffffffffff, 0x8000000000000000, 63)
  TEST_RR_OP(57, sra, 0xc000000000000000, 0x8000000000000000, 1)
  TEST_RR_OP(58, sra, 0x3fffffffffffffff, 0x7fffffffffffffff, 1)
  TEST_IMM_OP(59, slli, 0x8000000000000000, 1, 63)
  TEST_IMM_OP(60, srli, 0x00000000ffffffff, -1, 32)
  TEST_IMM_OP(61, srai, 0xffffffff80000000, 0x8000000000000000, 32)
  TEST_IMM_OP(62, srai, 0x0000000000000000, 0x7fffffffffffffff, 63)
  // *W shifts: 5-bit amounts, operate on the low word, sign-extend the 32-bit result
  TEST_RR_OP(63, sllw, 0xffffffff80000000, 1, 31)
  TEST_RR_OP(64, sllw, 0x0000000000000002, 1, 33)
  TEST_RR_OP(65, sllw, 0x0000000000000000, 0xffffffff00000000, 0)
  TEST_RR_OP(66, srlw, 0x0000000000000001, 0x80000000, 31)
  TEST_RR_OP(67, srlw, 0xffffffff80000000, 0xffffffff80000000, 32)
  TEST_RR_OP(68, srlw, 0x0000000040000000, 0x1234567880000000, 1)
  TEST_RR_OP(69, sraw, 0xffffffffffffffff, 0x80000000, 31)
  TEST_RR_OP(70, sraw, 0xffffffffc0000000, 0x0000000080000000, 1)
  TEST_RR_OP(71, sraw, 0x0000000000000001, 0xffffffff7fffffff, 30)
  TEST_IMM_OP(72, slliw, 0xffffffff80000000, 0x00000000ffffffff, 31)
  TEST_IMM_OP(73, slliw, 0x0000000012345678, 0xaaaaaaaa12345678, 0)
  TEST_IMM_OP(74, srliw, 0x0000000000000001, 0xffffffff80000000, 31)
  TEST_IMM_OP(75, srliw, 0xffffffff80000000, 0x0000000080000000, 0)
  TEST_IMM_OP(76, sraiw, 0xffffffffff800000, 0x0000000080000000, 8)
  TEST_IMM_OP(77, sraiw, 0x0000000000007fff, 0x800000007fffffff, 16)
  // lui: 20-bit immediate << 12, sign-extended from bit 31
  TEST_CASE(78, a0, 0xffffffff80000000, lui a0, 0x80000)
  TEST_CASE(79, a0, 0x000000007ffff000, lui a0, 0x7ffff)
  TEST_CASE(80, a0, 0xfffffffffffff000, lui a0, 0xfffff)
  TEST_CASE(81, zero, 0, lui zero, 0x12345)
  // auipc: pc + sign-extended immediate << 12
  CHECK_NUM(82)
  la a1, 1f
1:
  auipc a0, 0
  bne a0, a1, fail
  CHECK_NUM(83)
  la a1, 1f
1:
  auipc a0, 0xfffff              // pc - 4096
  sub a0, a1, a0
  CHECK_REG(a0, 4096)
  CHECK_NUM(84)
  la a1, 1f
1:
  auipc a0, 0x1
  sub a0, a0, a1
  CHECK_REG(a0, 4096)
  // x0 is hard-wired to zero whatever is written to it
  TEST_CASE(85, zero, 0, li a1, 1; addi zero, a1, 5)
  TEST_CASE(86, a0, 0, addi zero, zero, 1; mv a0, zero)
  // nop and the canonical hint encodings retire without effect
  TEST_CASE(87, a0, 42, li a0, 42; nop; addi x0, x0, 0; .word 0x00000013)
  TEST_PASS
