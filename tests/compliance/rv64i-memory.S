// RV64I loads and stores of every width with sign/zero extension, offsets, store-to-load forwarding and
// FENCE/FENCE.I; misaligned accesses checked only as far as the ISA fixes them (RISC-V unprivileged ISA,
// section 2.6 "Load and Store Instructions", 2.7 "Memory Ordering Instructions").
#include "test.h"

  .data
  .align 3
tdat:
  .dword 0x8899aabbccddeeff
  .dword 0x0011223344556677
tdat_w:
  .word 0x80000001
  .word 0x7ffffffe
  .align 3
scratch:
  .dword 0, 0, 0, 0
mis:
  .dword 0x0706050403020100, 0x0f0e0d0c0b0a0908

  .text
  .globl test_main
test_main:
  // byte: lb sign-extends, lbu zero-extends (little-endian: byte 0 is 0xff)
  TEST_LD_OP(1, lb, 0xffffffffffffffff, 0, tdat)
  TEST_LD_OP(2, lbu, 0x00000000000000ff, 0, tdat)
  TEST_LD_OP(3, lb, 0xffffffffffffff88, 7, tdat)
  TEST_LD_OP(4, lb, 0x0000000000000077, 8, tdat)
  TEST_LD_OP(5, lbu, 0x0000000000000088, 7, tdat)
  // half
  TEST_LD_OP(6, lh, 0xffffffffffffeeff, 0, tdat)
  TEST_LD_OP(7, lhu, 0x000000000000eeff, 0, tdat)
  TEST_LD_OP(8, lh, 0xffffffffffff8899, 6, tdat)
  TEST_LD_OP(9, lh, 0x0000000000006677, 8, tdat)
  // word
  TEST_LD_OP(10, lw, 0xffffffffccddeeff, 0, tdat)
  TEST_LD_OP(11, lwu, 0x00000000ccddeeff, 0, tdat)
  TEST_LD_OP(12, lw, 0xffffffff8899aabb, 4, tdat)
  TEST_LD_OP(13, lw, 0x0000000044556677, 8, tdat)
  TEST_LD_OP(14, lw, 0xffffffff80000001, 0, tdat_w)
  TEST_LD_OP(15, lwu, 0x0000000080000001, 0, tdat_w)
  TEST_LD_OP(16, lw, 0x000000007ffffffe, 4, tdat_w)
  // double
  TEST_LD_OP(17, ld, 0x8899aabbccddeeff, 0, tdat)
  TEST_LD_OP(18, ld, 0x0011223344556677, 8, tdat)
  // negative offsets
  TEST_LD_OP(19, ld, 0x8899aabbccddeeff, -8, tdat + 8)
  TEST_LD_OP(20, lbu, 0x0000000000000077, -8, tdat + 16)
  // stores: write then read back, each width only touches its bytes
  TEST_ST_OP(21, ld, sd, 0x0123456789abcdef, 0, scratch)
  TEST_ST_OP(22, lb, sb, 0xffffffffffffffaa, 8, scratch)
  TEST_ST_OP(23, lh, sh, 0xffffffffffffaa55, 10, scratch)
  TEST_ST_OP(24, lw, sw, 0xffffffff87654321, 12, scratch)
  TEST_CASE(25, a0, 0x87654321aa5500aa, la a1, scratch; ld a0, 8(a1))
  // sb writes just the low byte of rs2
  TEST_CASE(26, a0, 0x0123456789abcd11, la a1, scratch; li a2, 0x7777777777777711; sb a2, 0(a1); ld a0, 0(a1))
  TEST_CASE(27, a0, 0x0123456789ab2211, la a1, scratch; li a2, 0x7777777777772222; sb a2, 1(a1); ld a0, 0(a1))
  TEST_CASE(28, a0, 0x0123456733332211, la a1, scratch; li a2, -0x0000cccd; sh a2, 2(a1); ld a0, 0(a1))
  TEST_CASE(29, a0, 0x4444444433332211, la a1, scratch; li a2, 0x0000000044444444; sw a2, 4(a1); ld a0, 0(a1))
  // a load into x0 is performed but discards the value
  TEST_CASE(30, zero, 0, la a1, tdat; ld zero, 0(a1))
  // store with a negative offset
  TEST_CASE(31, a0, 0x5a, la a1, scratch + 24; li a2, 0x5a; sb a2, -8(a1); lbu a0, -8(a1))

  // loads and stores of every width at every alignment relative to a dword, built from sb then read
  // aligned (misaligned accesses themselves come later)
  CHECK_NUM(32)
  la a1, scratch
  sd zero, 0(a1)
  li a2, 0x11
  sb a2, 3(a1)
  li a2, 0x2233
  sh a2, 4(a1)
  ld a0, 0(a1)
  CHECK_REG(a0, 0x0000223311000000)

  // fence and fence.i retire; a store then fence.i makes new code visible to fetch
  CHECK_NUM(33)
  fence
  fence rw, rw
  fence r, r
  fence w, w
  fence iorw, iorw
  fence.tso
  fence.i
  // self-modifying code: patch "li a0, 1" into "li a0, 2" and run it
  CHECK_NUM(34)
  la a1, patch_site
  li a2, 0x00200513              // addi a0, zero, 2
  sw a2, 0(a1)
  fence.i
  jal ra, patch_site
  CHECK_REG(a0, 2)

  // Misaligned loads and stores: the ISA lets the execution environment either perform them or raise an
  // address-misaligned (or access-fault) exception with mtval = the address. Check whichever happened.
#define TEST_MISALIGNED_LD(n, inst, expect, offset) \
  CHECK_NUM(n); la a1, mis; li a0, 0; SET_RESUME(8f); inst a0, offset(a1); CLEAR_RESUME; \
  CHECK_REG(a0, expect); j 9f; \
8: la t1, m_trap_rec; ld t0, TRAP_CAUSE(t1); li t6, CAUSE_MISALIGNED_LOAD; beq t0, t6, 7f; \
  li t6, CAUSE_LOAD_ACCESS; bne t0, t6, fail; \
7: ld t0, TRAP_TVAL(t1); addi t6, a1, offset; bne t0, t6, fail; 9:
  TEST_MISALIGNED_LD(35, lh, 0x0000000000000201, 1)
  TEST_MISALIGNED_LD(36, lhu, 0x0000000000000807, 7)
  TEST_MISALIGNED_LD(37, lw, 0x0000000004030201, 1)
  TEST_MISALIGNED_LD(38, lw, 0x000000000a090807, 7)
  TEST_MISALIGNED_LD(39, lwu, 0x0000000006050403, 3)
  TEST_MISALIGNED_LD(40, ld, 0x0807060504030201, 1)
  TEST_MISALIGNED_LD(41, ld, 0x0c0b0a0908070605, 5)
#define TEST_MISALIGNED_ST(n, stinst, value, offset, expect_lo, expect_hi) \
  CHECK_NUM(n); la a1, mis; sd zero, 0(a1); sd zero, 8(a1); li a2, value; SET_RESUME(8f); \
  stinst a2, offset(a1); CLEAR_RESUME; ld a0, 0(a1); CHECK_REG(a0, expect_lo); ld a0, 8(a1); \
  CHECK_REG(a0, expect_hi); j 9f; \
8: la t1, m_trap_rec; ld t0, TRAP_CAUSE(t1); li t6, CAUSE_MISALIGNED_STORE; beq t0, t6, 7f; \
  li t6, CAUSE_STORE_ACCESS; bne t0, t6, fail; \
7: ld t0, TRAP_TVAL(t1); addi t6, a1, offset; bne t0, t6, fail; 9:
  TEST_MISALIGNED_ST(42, sh, 0xbbaa, 1, 0x0000000000bbaa00, 0)
  TEST_MISALIGNED_ST(43, sw, 0xddccbbaa, 6, 0xbbaa000000000000, 0x000000000000ddcc)
  TEST_MISALIGNED_ST(44, sd, 0x8877665544332211, 3, 0x5544332211000000, 0x0000000000887766)
  TEST_PASS

  .align 2
patch_site:
  .option push
  .option norvc
  addi a0, zero, 1
  .option pop
  ret
