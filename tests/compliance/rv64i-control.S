// RV64I control transfer: every conditional branch taken and not taken, JAL/JALR link values, JALR's
// cleared low bit, backward branches (RISC-V unprivileged ISA, section 2.5 "Control Transfer Instructions").
#include "test.h"

  .text
  .globl test_main
test_main:
  TEST_BR2_TAKEN(1, beq, 0, 0)
  TEST_BR2_TAKEN(2, beq, -1, -1)
  TEST_BR2_NOT_TAKEN(3, beq, 0, 1)
  TEST_BR2_NOT_TAKEN(4, beq, 0x100000000, 0)
  TEST_BR2_TAKEN(5, bne, 0, 1)
  TEST_BR2_TAKEN(6, bne, 0x100000000, 0)
  TEST_BR2_NOT_TAKEN(7, bne, -1, -1)
  TEST_BR2_TAKEN(8, blt, -1, 0)
  TEST_BR2_TAKEN(9, blt, 0x8000000000000000, 0x7fffffffffffffff)
  TEST_BR2_NOT_TAKEN(10, blt, 0, -1)
  TEST_BR2_NOT_TAKEN(11, blt, 7, 7)
  TEST_BR2_TAKEN(12, bge, 0, -1)
  TEST_BR2_TAKEN(13, bge, 7, 7)
  TEST_BR2_NOT_TAKEN(14, bge, -1, 0)
  TEST_BR2_NOT_TAKEN(15, bge, 0x8000000000000000, 0x7fffffffffffffff)
  TEST_BR2_TAKEN(16, bltu, 0, -1)
  TEST_BR2_TAKEN(17, bltu, 0x7fffffffffffffff, 0x8000000000000000)
  TEST_BR2_NOT_TAKEN(18, bltu, -1, 0)
  TEST_BR2_NOT_TAKEN(19, bltu, 7, 7)
  TEST_BR2_TAKEN(20, bgeu, -1, 0)
  TEST_BR2_TAKEN(21, bgeu, 7, 7)
  TEST_BR2_NOT_TAKEN(22, bgeu, 0, -1)
  TEST_BR2_NOT_TAKEN(23, bgeu, 0x7fffffffffffffff, 0x8000000000000000)
  // pseudo-branches against zero
  TEST_BR2_TAKEN(24, bgt, 1, 0)
  TEST_BR2_NOT_TAKEN(25, bleu, 1, 0)

  // backward branch: a loop counting to 10
  CHECK_NUM(26)
  li a0, 0
  li a1, 10
1:
  addi a0, a0, 1
  blt a0, a1, 1b
  CHECK_REG(a0, 10)

  // a branch that is not taken must not execute its target; a taken one must skip the fall-through
  CHECK_NUM(27)
  li a0, 0
  beq zero, zero, 1f
  addi a0, a0, 1
1:
  bne zero, zero, 2f
  addi a0, a0, 2
2:
  CHECK_REG(a0, 2)

  // jal: rd = pc + 4 (4-byte jal even with C enabled)
  CHECK_NUM(28)
  .option push
  .option norvc
  la a1, 2f
1:
  jal a0, 3f
2:
  j fail
3:
  .option pop
  bne a0, a1, fail

  // jal x0 (j) does not write a link
  TEST_CASE(29, a0, 5, li a0, 5; j 1f; li a0, 6; 1: nop)

  // jalr: target = (rs1 + imm) & ~1, rd = pc + 4
  CHECK_NUM(30)
  .option push
  .option norvc
  la a2, 2f
  la a1, 3f
1:
  jalr a0, 0(a1)
2:
  j fail
3:
  .option pop
  bne a0, a2, fail

  // the low bit of the computed target is cleared: jump to label + 1
  CHECK_NUM(31)
  la a1, 1f
  addi a1, a1, 1
  jalr ra, 0(a1)
  j fail
  .align 2
1:
  // and with a negative offset: (label + 5) - 4 = label + 1 -> label
  CHECK_NUM(32)
  la a1, 2f
  addi a1, a1, 5
  jalr ra, -4(a1)
  j fail
  .align 2
2:
  // rd == rs1: the target is computed from the old rs1 value
  CHECK_NUM(33)
  .option push
  .option norvc
  la a1, 2f
  la a2, 1f
1:
  jalr a1, 0(a1)
  j fail
2:
  .option pop
  addi a2, a2, 4
  bne a1, a2, fail

  // call/ret through a function
  CHECK_NUM(34)
  li a0, 20
  call double_it
  CHECK_REG(a0, 40)

  // jalr with x0 as rd writes nothing
  TEST_CASE(35, zero, 0, la a1, 1f; jalr zero, 0(a1); j fail; 1: nop)

  // long-distance jal forward and back across a big gap
  CHECK_NUM(36)
  jal ra, far_target
  CHECK_REG(a0, 0x77)
  TEST_PASS

double_it:
  add a0, a0, a0
  ret

  .skip 0x10000
far_target:
  li a0, 0x77
  ret
