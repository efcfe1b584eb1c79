// RV64M multiply and divide, including the *W forms, division by zero and signed overflow
// (RISC-V unprivileged ISA, chapter 7 "M Extension", table 7.1 "Semantics for division by zero and
// division overflow").
#include "test.h"

  .text
  .globl test_main
test_main:
  TEST_RR_OP(1, mul, 0x0000000000000000, 0, 0)
  TEST_RR_OP(2, mul, 0x0000000000000015, 3, 7)
  TEST_RR_OP(3, mul, 0xfffffffffffffff1, -3, 5)
  TEST_RR_OP(4, mul, 0x0000000000000001, -1, -1)
  TEST_RR_OP(5, mul, 0x8000000000000000, 0x8000000000000000, -1)
  TEST_RR_OP(6, mul, 0xc3c757fe42adc799, 0x123456789abcdef1, 0x0fedcba987654329)
  // mulh: high 64 bits of signed x signed
  TEST_RR_OP(7, mulh, 0x0000000000000000, 3, 7)
  TEST_RR_OP(8, mulh, 0xffffffffffffffff, -3, 5)
  TEST_RR_OP(9, mulh, 0x4000000000000000, 0x8000000000000000, 0x8000000000000000)
  TEST_RR_OP(10, mulh, 0xc000000000000000, 0x8000000000000000, 0x7fffffffffffffff)
  TEST_RR_OP(11, mulh, 0x0000000000000000, -1, 0)
  TEST_RR_OP(12, mulh, 0x0000000000000000, -1, -1)
  // mulhu: unsigned x unsigned
  TEST_RR_OP(13, mulhu, 0xfffffffffffffffe, -1, -1)
  TEST_RR_OP(14, mulhu, 0x4000000000000000, 0x8000000000000000, 0x8000000000000000)
  TEST_RR_OP(15, mulhu, 0x0000000000000002, 0x8000000000000000, 4)
  TEST_RR_OP(16, mulhu, 0x0000000000000000, 0xffffffff, 0xffffffff)
  // mulhsu: signed rs1 x unsigned rs2
  TEST_RR_OP(17, mulhsu, 0xffffffffffffffff, -1, -1)
  TEST_RR_OP(18, mulhsu, 0xc000000000000000, 0x8000000000000000, 0x8000000000000000)
  TEST_RR_OP(19, mulhsu, 0x7ffffffffffffffe, 0x7fffffffffffffff, -1)
  TEST_RR_OP(20, mulhsu, 0x0000000000000000, 1, -1)
  TEST_RR_OP(21, mulhsu, 0xffffffffffffffff, -1, 1)
  // mulw: low 32 bits of the product, sign-extended; upper input bits ignored
  TEST_RR_OP(22, mulw, 0xffffffff80000000, 0x40000000, 2)
  TEST_RR_OP(23, mulw, 0x0000000000000015, 0xabcdef0000000003, 0x1234567800000007)
  TEST_RR_OP(24, mulw, 0x0000000000000001, 0xffffffff, 0xffffffff)
  TEST_RR_OP(25, mulw, 0xffffffffedcba988, 0x12345678, -1)
  TEST_RR_SRC1_EQ_DEST(26, mul, 143, 13, 11)
  TEST_RR_SRC2_EQ_DEST(27, mulh, 0, 14, 11)

  // div: rounds towards zero
  TEST_RR_OP(28, div, 3, 20, 6)
  TEST_RR_OP(29, div, -3, -20, 6)
  TEST_RR_OP(30, div, -3, 20, -6)
  TEST_RR_OP(31, div, 3, -20, -6)
  // division by zero: quotient all ones, remainder = dividend, no trap
  TEST_RR_OP(32, div, -1, 20, 0)
  TEST_RR_OP(33, div, -1, -20, 0)
  TEST_RR_OP(34, divu, -1, 20, 0)
  TEST_RR_OP(35, rem, 20, 20, 0)
  TEST_RR_OP(36, rem, -20, -20, 0)
  TEST_RR_OP(37, remu, 20, 20, 0)
  // overflow: INT_MIN / -1 = INT_MIN, remainder 0
  TEST_RR_OP(38, div, 0x8000000000000000, 0x8000000000000000, -1)
  TEST_RR_OP(39, rem, 0, 0x8000000000000000, -1)
  // divu/remu
  TEST_RR_OP(40, divu, 0x2aaaaaaaaaaaaaa7, -20, 6)
  TEST_RR_OP(41, divu, 0, 20, -6)
  TEST_RR_OP(42, remu, 2, -20, 6)
  TEST_RR_OP(43, remu, 20, 20, -6)
  TEST_RR_OP(44, divu, 1, 0x8000000000000000, 0x8000000000000000)
  // rem: sign follows the dividend
  TEST_RR_OP(45, rem, 2, 20, 6)
  TEST_RR_OP(46, rem, -2, -20, 6)
  TEST_RR_OP(47, rem, 2, 20, -6)
  TEST_RR_OP(48, rem, -2, -20, -6)
  // *W: operate on the low 32 bits, result sign-extended
  TEST_RR_OP(49, divw, 3, 20, 6)
  TEST_RR_OP(50, divw, -3, -20, 6)
  TEST_RR_OP(51, divw, -1, 20, 0)
  TEST_RR_OP(52, divw, 0xffffffff80000000, 0x80000000, -1)
  TEST_RR_OP(53, divw, 0xffffffff80000000, 0x1234567880000000, 0xffffffff)
  TEST_RR_OP(54, divuw, 0x000000002aaaaaa7, -20, 6)
  TEST_RR_OP(55, divuw, -1, 20, 0)
  TEST_RR_OP(56, divuw, -1, 20, 0x100000000)
  TEST_RR_OP(57, divuw, 0xffffffff80000000, 0x80000000, 1)
  TEST_RR_OP(58, remw, -2, -20, 6)
  TEST_RR_OP(59, remw, 0, 0x80000000, -1)
  TEST_RR_OP(60, remw, 0xffffffff80000000, 0x80000000, 0)
  TEST_RR_OP(61, remw, 20, 0xffffffff00000014, 0)
  TEST_RR_OP(62, remuw, 2, -20, 6)
  TEST_RR_OP(63, remuw, 0xffffffff80000000, 0x80000000, 0)
  TEST_RR_OP(64, remuw, 0xffffffffffffffec, -20, 0)
  TEST_RR_OP(65, remuw, 1, 0xffffffff, 2)
  TEST_RR_ZERO_DEST(66, div, 7, 0)
  TEST_PASS
