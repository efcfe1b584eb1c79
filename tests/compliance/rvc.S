// C extension: hand-written compressed instructions (immediate encodings, sign extension, stack-pointer
// forms, compressed control flow with pc + 2 links), reserved encodings trapping, and rvc.c compiled with
// C enabled (RISC-V unprivileged ISA, chapter 16 "C Standard Extension", table 16.5 and section 16.8).
#include "test.h"

  .data
  .align 3
cdat:
  .dword 0x8877665544332211
  .dword 0xfedcba9876543210
  .dword 0, 0

  .text
  .globl test_main
test_main:
  .option push
  .option rvc
  // c.li / c.lui: 6-bit signed immediates
  TEST_CASE(1, a0, -32, c.li a0, -32)
  TEST_CASE(2, a0, 31, c.li a0, 31)
  TEST_CASE(3, a0, 0x000000000001f000, c.lui a0, 0x1f)
  TEST_CASE(4, a0, 0xfffffffffffe0000, c.lui a0, 0xfffe0)
  TEST_CASE(5, a0, 0xfffffffffffff000, c.lui a0, 0xfffff)
  // c.addi / c.addiw (result sign-extended from 32 bits) / c.addi16sp / c.addi4spn
  TEST_CASE(6, a0, 0x0000000000000000, li a0, 32; c.addi a0, -32)
  TEST_CASE(7, a0, 0xffffffff80000000, li a0, 0x7fffffff; c.addiw a0, 1)
  TEST_CASE(8, a0, 0x0000000000000005, li a0, 0xffffffff00000005; c.addiw a0, 0)   // sext.w
  CHECK_NUM(9)
  mv s0, sp
  c.addi16sp sp, -512
  sub a0, s0, sp
  CHECK_REG(a0, 512)
  c.addi16sp sp, 496
  sub a0, s0, sp
  CHECK_REG(a0, 16)
  c.addi4spn a0, sp, 1020
  sub a0, a0, sp
  CHECK_REG(a0, 1020)
  mv sp, s0
  // shifts: c.slli up to 63, c.srli, c.srai sign-fills
  TEST_CASE(10, a0, 0x8000000000000000, li a0, 1; c.slli a0, 63)
  TEST_CASE(11, a0, 0x0000000000000001, li a0, 0x8000000000000000; c.srli a0, 63)
  TEST_CASE(12, a0, 0xfffffffffffffff0, li a0, 0x8000000000000000; c.srai a0, 59)
  TEST_CASE(13, a0, 0x0000000000000003, li a0, 0x7000000000000000; c.srai a0, 61)
  // c.andi: sign-extended 6-bit immediate
  TEST_CASE(14, a0, 0xffffffffffffffe0, li a0, -1; c.andi a0, -32)
  TEST_CASE(15, a0, 0x000000000000000a, li a0, 0x1a; c.andi a0, 15)
  // register-register
  TEST_CASE(16, a0, 0x123, li a1, 0x123; c.mv a0, a1)
  TEST_CASE(17, a0, 0x300, li a0, 0x100; li a1, 0x200; c.add a0, a1)
  TEST_CASE(18, a0, -0x100, li a0, 0x100; li a1, 0x200; c.sub a0, a1)
  TEST_CASE(19, a0, 0xff0, li a0, 0xf0f; li a1, 0x0ff; c.xor a0, a1)
  TEST_CASE(20, a0, 0xfff, li a0, 0xf0f; li a1, 0x0ff; c.or a0, a1)
  TEST_CASE(21, a0, 0x00f, li a0, 0xf0f; li a1, 0x0ff; c.and a0, a1)
  TEST_CASE(22, a0, 0xffffffff80000000, li a0, 0x7fffffff; li a1, 1; c.addw a0, a1)
  TEST_CASE(23, a0, 0x000000007fffffff, li a0, 0x80000000; li a1, 1; c.subw a0, a1)
  TEST_CASE(24, a0, 0x0000000000000002, li a0, 0x1234567800000001; li a1, 0xffffffff00000001; c.addw a0, a1)
  // loads and stores: c.lw sign-extends, c.ld, c.sw, c.sd
  TEST_CASE(25, a0, 0xffffffff88776655, la a1, cdat; c.lw a0, 4(a1))
  TEST_CASE(26, a0, 0xfedcba9876543210, la a1, cdat; c.ld a0, 8(a1))
  TEST_CASE(27, a0, 0xfffffffff0e1d2c3, la a1, cdat; li a2, 0xf0e1d2c3; c.sw a2, 16(a1); lw a0, 16(a1))
  TEST_CASE(28, a0, 0x0102030405060708, la a1, cdat; li a2, 0x0102030405060708; c.sd a2, 24(a1); ld a0, 24(a1))
  // stack-pointer forms: c.lwsp/c.ldsp/c.swsp/c.sdsp
  CHECK_NUM(29)
  mv s0, sp
  la sp, cdat
  c.lwsp a0, 4(sp)
  CHECK_REG(a0, 0xffffffff88776655)
  c.ldsp a0, 8(sp)
  CHECK_REG(a0, 0xfedcba9876543210)
  li a2, 0x80000000
  c.swsp a2, 16(sp)
  c.lwsp a0, 16(sp)
  CHECK_REG(a0, 0xffffffff80000000)
  li a2, 0x1122334455667788
  c.sdsp a2, 24(sp)
  c.ldsp a0, 24(sp)
  CHECK_REG(a0, 0x1122334455667788)
  mv sp, s0
  // FP compressed loads/stores: c.fld/c.fsd/c.fldsp/c.fsdsp move the 64 bits unchanged
  CHECK_NUM(30)
  la a1, cdat
  c.fld fa0, 8(a1)
  c.fsd fa0, 16(a1)
  ld a0, 16(a1)
  CHECK_REG(a0, 0xfedcba9876543210)
  mv s0, sp
  mv sp, a1
  c.fldsp fa1, 0(sp)
  c.fsdsp fa1, 24(sp)
  mv sp, s0
  ld a0, 24(a1)
  CHECK_REG(a0, 0x8877665544332211)

  // control flow: c.j, c.beqz/c.bnez taken and not, c.jr, c.jalr links pc + 2
  TEST_CASE(31, a0, 1, li a0, 1; c.j 1f; li a0, 2; 1: nop)
  CHECK_NUM(32)
  li a0, 0
  c.beqz a0, 1f
  j fail
1:
  li a0, 5
  c.beqz a0, fail
  c.bnez a0, 2f
  j fail
2:
  li a0, 0
  c.bnez a0, fail
  CHECK_NUM(33)
  la a1, 1f
  c.jr a1
  j fail
1:
  CHECK_NUM(34)
  la a1, 3f
  la a2, 2f
1:
  c.jalr a1
2:
  j fail
3:
  bne ra, a2, fail               // ra = address of c.jalr + 2
  la a2, 1b
  addi a2, a2, 2
  bne ra, a2, fail
  // c.mv and c.add are distinct from c.jr/c.jalr only by rs2 != 0
  TEST_CASE(35, a0, 7, li a0, 3; li a1, 4; c.add a0, a1)
  // a 32-bit instruction at a 2-byte aligned address
  CHECK_NUM(36)
  .align 2
  c.nop
  li a0, 0x12345
  addi a0, a0, 1                 // 4-byte encoding at pc % 4 == 2
  CHECK_REG(a0, 0x12346)
  // branch to a 2-byte aligned target
  CHECK_NUM(37)
  .align 2
  li a0, 0
  beq zero, zero, 1f
  c.nop
1:
  c.addi a0, 1
  CHECK_REG(a0, 1)

  // reserved encodings: all-zero (mcause 2, mtval = 0), c.addi16sp 0, c.lwsp x0, c.jr x0
  TEST_TRAP(38, CAUSE_ILLEGAL_INSTRUCTION, 2: .hword 0x0000)
  CHECK_MTVAL(0)
  CHECK_MEPC(2b)
  TEST_TRAP(39, CAUSE_ILLEGAL_INSTRUCTION, .hword 0x6101)   // c.addi16sp sp, 0
  CHECK_MTVAL(0x6101)
  TEST_TRAP(40, CAUSE_ILLEGAL_INSTRUCTION, .hword 0x4002)   // c.lwsp x0, 0(sp)
  CHECK_MTVAL(0x4002)
  TEST_TRAP(41, CAUSE_ILLEGAL_INSTRUCTION, .hword 0x8002)   // c.jr x0
  CHECK_MTVAL(0x8002)
  TEST_TRAP(42, CAUSE_ILLEGAL_INSTRUCTION, .hword 0x0000; nop)
  // HINT encodings (rd = x0) execute as no-ops, not as illegal instructions
  CHECK_NUM(43)
  li a0, 7
  li a1, 9
  .hword 0x0005                  // c.nop 1 (c.addi x0, 1)
  .hword 0x4015                  // c.li x0, 5
  .hword 0x6005                  // c.lui x0, 1
  .hword 0x802e                  // c.mv x0, a1
  .hword 0x902e                  // c.add x0, a1
  .hword 0x0006                  // c.slli x0, 1
  CHECK_REG(a0, 7)
  CHECK_REG(a1, 9)
  .option pop

  // the compiled program
  CHECK_NUM(44)
  call rvc_program
  CHECK_REG(a0, 0xe1ffafb464188f09)
  TEST_PASS
