// F/D conversions and moves: fcvt between FP and w/wu/l/lu with saturation, NV/NX flags and every rounding
// mode, integer-to-FP rounding, fcvt.s.d/fcvt.d.s, and fmv.x.w/fmv.w.x/fmv.x.d/fmv.d.x with NaN boxing and
// sign extension (RISC-V unprivileged ISA, sections 12.7/13.4 "Floating-Point Conversion and Move
// Instructions", table 12.4 "Domains of float-to-integer conversions and behavior for invalid inputs").
#include "test.h"

// fcvt.s.d: a is a double, result a single (checked NaN-boxed); fcvt.d.s the other way round.
#define TEST_FCVT_S_D(n, rm, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, FP_BOXED(result)); fld f1, 0(t5); fsflags x0; fcvt.s.d f3, f1, rm; \
  fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; li t6, flags; bne a1, t6, fail
#define TEST_FCVT_D_S(n, flags, result, a) \
  CHECK_NUM(n); FP_DATA(a, 0, 0, result); flw f1, 0(t5); fsflags x0; fcvt.d.s f3, f1; \
  fmv.x.d a0, f3; frflags a1; ld t6, 24(t5); bne a0, t6, fail; li t6, flags; bne a1, t6, fail

  .text
  .globl test_main
test_main:
  // ---- fcvt.w.d: round, then saturate to [-2^31, 2^31 - 1]; the 32-bit result is sign-extended ----
  TEST_FP_INT_OP1_D(1, fcvt.w.d, rne, 0x01, 2, 0x3ff8000000000000)                    // 1.5
  TEST_FP_INT_OP1_D(2, fcvt.w.d, rne, 0x01, 2, 0x4004000000000000)                    // 2.5 ties to even
  TEST_FP_INT_OP1_D(3, fcvt.w.d, rmm, 0x01, 3, 0x4004000000000000)                    // ... or away
  TEST_FP_INT_OP1_D(4, fcvt.w.d, rtz, 0x01, -1, 0xbff8000000000000)                   // -1.5
  TEST_FP_INT_OP1_D(5, fcvt.w.d, rdn, 0x01, -2, 0xbff8000000000000)
  TEST_FP_INT_OP1_D(6, fcvt.w.d, rup, 0x01, -1, 0xbff8000000000000)
  TEST_FP_INT_OP1_D(7, fcvt.w.d, rtz, 0x10, 0x000000007fffffff, 0x41e0000000000000)   // 2^31
  TEST_FP_INT_OP1_D(8, fcvt.w.d, rtz, 0x00, 0xffffffff80000000, 0xc1e0000000000000)   // -2^31
  TEST_FP_INT_OP1_D(9, fcvt.w.d, rtz, 0x10, 0xffffffff80000000, 0xc1e0000000200000)   // -2^31 - 1
  TEST_FP_INT_OP1_D(10, fcvt.w.d, rtz, 0x10, 0x000000007fffffff, 0x7ff8000000000000)  // NaN
  TEST_FP_INT_OP1_D(11, fcvt.w.d, rtz, 0x10, 0x000000007fffffff, 0x7ff0000000000000)  // +inf
  TEST_FP_INT_OP1_D(12, fcvt.w.d, rtz, 0x10, 0xffffffff80000000, 0xfff0000000000000)  // -inf
  TEST_FP_INT_OP1_D(13, fcvt.w.d, rtz, 0x00, 0, 0x8000000000000000)                   // -0
  TEST_FP_INT_OP1_D(14, fcvt.w.d, rne, 0x10, 0x000000007fffffff, 0x41dfffffffe00000)  // 2^31 - 0.5 rounds out
  TEST_FP_INT_OP1_D(15, fcvt.w.d, rtz, 0x01, 0x000000007fffffff, 0x41dfffffffe00000)
  TEST_FP_INT_OP1_D(16, fcvt.w.d, rtz, 0x10, 0x000000007fffffff, 0x7ff0000000000001)  // sNaN
  // ---- fcvt.wu.d: [0, 2^32 - 1], sign-extended ----
  TEST_FP_INT_OP1_D(17, fcvt.wu.d, rtz, 0x10, 0, 0xbff0000000000000)                  // -1.0
  TEST_FP_INT_OP1_D(18, fcvt.wu.d, rtz, 0x01, 0, 0xbfe0000000000000)                  // -0.5 -> -0: in range
  TEST_FP_INT_OP1_D(19, fcvt.wu.d, rdn, 0x10, 0, 0xbfe0000000000000)                  // -0.5 -> -1: invalid
  TEST_FP_INT_OP1_D(20, fcvt.wu.d, rtz, 0x00, 0xffffffffffffffff, 0x41efffffffe00000) // 2^32 - 1
  TEST_FP_INT_OP1_D(21, fcvt.wu.d, rtz, 0x10, 0xffffffffffffffff, 0x41f0000000000000) // 2^32
  TEST_FP_INT_OP1_D(22, fcvt.wu.d, rtz, 0x10, 0xffffffffffffffff, 0x7ff8000000000000) // NaN
  TEST_FP_INT_OP1_D(23, fcvt.wu.d, rtz, 0x01, 3, 0x400d99999999999a)                  // 3.7
  TEST_FP_INT_OP1_D(24, fcvt.wu.d, rtz, 0x00, 0, 0x0000000000000000)                  // +0
  TEST_FP_INT_OP1_D(25, fcvt.wu.d, rtz, 0x00, 0xffffffff80000000, 0x41e0000000000000) // 2^31, sign-extended
  // ---- fcvt.l.d / fcvt.lu.d ----
  TEST_FP_INT_OP1_D(26, fcvt.l.d, rtz, 0x10, 0x7fffffffffffffff, 0x43e0000000000000)  // 2^63
  TEST_FP_INT_OP1_D(27, fcvt.l.d, rtz, 0x00, 0x8000000000000000, 0xc3e0000000000000)  // -2^63
  TEST_FP_INT_OP1_D(28, fcvt.l.d, rtz, 0x10, 0x7fffffffffffffff, 0x7ff8000000000000)  // NaN
  TEST_FP_INT_OP1_D(29, fcvt.l.d, rtz, 0x10, 0x8000000000000000, 0xfff0000000000000)  // -inf
  TEST_FP_INT_OP1_D(30, fcvt.l.d, rtz, 0x00, 1000000000000000000, 0x43abc16d674ec800) // 1e18
  TEST_FP_INT_OP1_D(31, fcvt.l.d, rne, 0x01, -2, 0xc004000000000000)                  // -2.5
  TEST_FP_INT_OP1_D(32, fcvt.l.d, rmm, 0x01, -3, 0xc004000000000000)
  TEST_FP_INT_OP1_D(33, fcvt.lu.d, rtz, 0x10, 0, 0xbff0000000000000)                  // -1.0
  TEST_FP_INT_OP1_D(34, fcvt.lu.d, rtz, 0x10, 0xffffffffffffffff, 0x43f0000000000000) // 2^64
  TEST_FP_INT_OP1_D(35, fcvt.lu.d, rtz, 0x00, 0xfffffffffffff800, 0x43efffffffffffff)
  TEST_FP_INT_OP1_D(36, fcvt.lu.d, rtz, 0x10, 0xffffffffffffffff, 0x7ff8000000000000) // NaN
  TEST_FP_INT_OP1_D(37, fcvt.lu.d, rtz, 0x10, 0, 0xfff0000000000000)                  // -inf
  TEST_FP_INT_OP1_D(38, fcvt.lu.d, rtz, 0x10, 0xffffffffffffffff, 0x7ff0000000000000) // +inf
  TEST_FP_INT_OP1_D(39, fcvt.lu.d, rup, 0x01, 1, 0x3e80000000000000)                  // tiny positive
  // dynamic rounding mode
  fsrmi 2
  TEST_FP_INT_OP1_D(40, fcvt.w.d, dyn, 0x01, -1, 0xbfe0000000000000)                  // RDN(-0.5)
  fsrmi 3
  TEST_FP_INT_OP1_D(41, fcvt.l.d, dyn, 0x01, 1, 0x3fe0000000000000)                   // RUP(0.5)
  fsrmi 0

  // ---- single-precision sources ----
  TEST_FP_INT_OP1_S(42, fcvt.w.s, rne, 0x01, 2, 0x3fc00000)                           // 1.5
  TEST_FP_INT_OP1_S(43, fcvt.w.s, rtz, 0x10, 0x7fffffff, 0x7fc00000)                  // NaN
  TEST_FP_INT_OP1_S(44, fcvt.w.s, rtz, 0x10, 0xffffffff80000000, 0xcf32d05e)          // -3e9
  TEST_FP_INT_OP1_S(45, fcvt.wu.s, rtz, 0x10, 0xffffffffffffffff, 0x4f800000)         // 2^32
  TEST_FP_INT_OP1_S(46, fcvt.l.s, rtz, 0x00, 0x8000000000000000, 0xdf000000)          // -2^63
  TEST_FP_INT_OP1_S(47, fcvt.lu.s, rtz, 0x10, 0xffffffffffffffff, 0x5f800000)         // 2^64
  TEST_FP_INT_OP1_S(48, fcvt.lu.s, rtz, 0x00, 0, 0x80000000)                          // -0
  TEST_FP_INT_OP1_S(49, fcvt.l.s, rtz, 0x00, 0x7fffff8000000000, 0x5effffff)
  TEST_FP_INT_OP1_S(50, fcvt.wu.s, rup, 0x01, 1, 0x00000001)                          // subnormal
  TEST_FP_INT_OP1_S(51, fcvt.w.s, rdn, 0x01, -1, 0x80000001)

  // ---- integer sources ----
  TEST_INT_FP_OP_EXACT(52, fcvt.d.w, 0x00, 0xc000000000000000, 0x12345678fffffffe)     // upper bits ignored
  TEST_INT_FP_OP_EXACT(53, fcvt.d.wu, 0x00, 0x41efffffffe00000, 0x00000000ffffffff)
  TEST_INT_FP_OP_EXACT(54, fcvt.d.wu, 0x00, 0x3ff0000000000000, 0xaaaaaaaa00000001)
  TEST_INT_FP_OP(55, fcvt.d.l, rne, 0x01, 0x4340000000000000, 0x0020000000000001)     // 2^53 + 1
  TEST_INT_FP_OP(56, fcvt.d.l, rup, 0x01, 0x4340000000000001, 0x0020000000000001)
  TEST_INT_FP_OP(57, fcvt.d.l, rne, 0x00, 0xc3e0000000000000, 0x8000000000000000)
  TEST_INT_FP_OP(58, fcvt.d.lu, rne, 0x01, 0x43f0000000000000, 0xffffffffffffffff)
  TEST_INT_FP_OP(59, fcvt.d.lu, rtz, 0x01, 0x43efffffffffffff, 0xffffffffffffffff)
  TEST_INT_FP_OP_EXACT(60, fcvt.d.w, 0x00, 0x0000000000000000, 0)                      // +0, never -0
  TEST_INT_FP_OP(61, fcvt.s.w, rne, 0x01, FP_BOXED(0x4b800000), 16777217)
  TEST_INT_FP_OP(62, fcvt.s.w, rne, 0x01, FP_BOXED(0x4b800002), 16777219)             // tie to even
  TEST_INT_FP_OP(63, fcvt.s.w, rdn, 0x01, FP_BOXED(0xcb800002), -16777219)
  TEST_INT_FP_OP(64, fcvt.s.wu, rne, 0x01, FP_BOXED(0x4f800000), 0xffffffff)
  TEST_INT_FP_OP(65, fcvt.s.l, rne, 0x00, FP_BOXED(0xbf800000), -1)
  TEST_INT_FP_OP(66, fcvt.s.lu, rtz, 0x01, FP_BOXED(0x5f7fffff), 0xffffffffffffffff)
  TEST_INT_FP_OP(67, fcvt.s.lu, rmm, 0x01, FP_BOXED(0x4b800001), 16777217)            // tie, away

  // ---- between precisions ----
  TEST_FCVT_S_D(68, rne, 0x05, 0x7f800000, 0x7fefffffffffffff)                        // overflow -> inf
  TEST_FCVT_S_D(69, rtz, 0x05, 0x7f7fffff, 0x7fefffffffffffff)                        // ... or max finite
  TEST_FCVT_S_D(70, rne, 0x03, 0x00000000, 0x01a56e1fc2f8f359)                        // 1e-300: underflow
  TEST_FCVT_S_D(71, rne, 0x01, 0x3dcccccd, 0x3fb999999999999a)                        // 0.1
  TEST_FCVT_S_D(72, rtz, 0x01, 0x3dcccccc, 0x3fb999999999999a)
  TEST_FCVT_S_D(73, rne, 0x00, 0x7fc00000, 0x7ff8000000000123)                        // payload dropped
  TEST_FCVT_S_D(74, rne, 0x10, 0x7fc00000, 0x7ff0000000000001)                        // sNaN
  TEST_FCVT_S_D(75, rne, 0x00, 0x80000000, 0x8000000000000000)                        // -0
  TEST_FCVT_D_S(76, 0x00, 0x3fb99999a0000000, 0x3dcccccd)
  TEST_FCVT_D_S(77, 0x10, 0x7ff8000000000000, 0x7f800001)
  TEST_FCVT_D_S(78, 0x00, 0x36a0000000000000, 0x00000001)                             // 2^-149
  TEST_FCVT_D_S(79, 0x00, 0xfff0000000000000, 0xff800000)
  TEST_FCVT_D_S(80, 0x00, 0x7ff8000000000000, 0x7fc12345)

  // ---- moves ----
  // fmv.x.w sign-extends the 32-bit pattern
  TEST_CASE(81, a0, 0xffffffffbf800000, li a1, 0xbf800000; fmv.w.x f1, a1; fmv.x.w a0, f1)
  TEST_CASE(82, a0, 0x000000003f800000, li a1, 0x3f800000; fmv.w.x f1, a1; fmv.x.w a0, f1)
  // fmv.w.x NaN-boxes, ignoring the upper half of the integer register
  TEST_CASE(83, a0, 0xffffffff3f800000, li a1, 0x123456783f800000; fmv.w.x f1, a1; fmv.x.d a0, f1)
  // fmv.x.d / fmv.d.x move all 64 bits, signaling NaN payloads included, without flags
  CHECK_NUM(84)
  fsflags x0
  li a1, 0x7ff0000000000001
  fmv.d.x f1, a1
  fmv.x.d a0, f1
  bne a0, a1, fail
  frflags a0
  bnez a0, fail
  // fmv.x.w takes the low word even of a register that is not NaN-boxed
  TEST_CASE(85, a0, 0xffffffffc0000000, li a1, 0x00000000c0000000; fmv.d.x f1, a1; fmv.x.w a0, f1)
  // flw boxes; fsw stores the low word unchanged; fld/fsd keep NaN payloads
  CHECK_NUM(86)
  FP_DATA(0x7ff4000000000abc, 0, 0, 0)
  li a1, 0x1234567889abcdef
  fmv.d.x f1, a1
  fsw f1, 8(t5)
  lwu a0, 8(t5)
  CHECK_REG(a0, 0x89abcdef)
  flw f2, 8(t5)
  fmv.x.d a0, f2
  CHECK_REG(a0, 0xffffffff89abcdef)
  fld f2, 0(t5)
  fsd f2, 16(t5)
  ld a0, 16(t5)
  CHECK_REG(a0, 0x7ff4000000000abc)
  // loads, stores and moves never quieten a signaling NaN (single and double)
  CHECK_NUM(87)
  FP_DATA(0x7ff0000000000001, 0, 0, 0)
  li a1, 0x7f800001
  sw a1, 8(t5)
  flw f2, 8(t5)
  fmv.x.d a0, f2
  CHECK_REG(a0, 0xffffffff7f800001)
  fsw f2, 12(t5)
  lwu a0, 12(t5)
  CHECK_REG(a0, 0x7f800001)
  fmv.x.w a0, f2
  CHECK_REG(a0, 0x7f800001)
  CHECK_NUM(88)
  li a1, 0xff800005
  fmv.w.x f3, a1
  fmv.x.w a0, f3
  CHECK_REG(a0, 0xffffffffff800005)
  fld f4, 0(t5)
  fsd f4, 16(t5)
  ld a0, 16(t5)
  CHECK_REG(a0, 0x7ff0000000000001)
  fmv.x.d a0, f4
  CHECK_REG(a0, 0x7ff0000000000001)
  frflags a0
  CHECK_REG(a0, 0)
  TEST_PASS
