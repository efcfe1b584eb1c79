// F/D non-arithmetic operations: fmin/fmax (signed zeros, quiet and signaling NaNs), feq/flt/fle with
// NaNs and their flags, fclass, fsgnj/fsgnjn/fsgnjx on NaN payloads, and single-precision operations
// reading an improperly NaN-boxed register as the canonical NaN (RISC-V unprivileged ISA, sections
// 12.6 "Single-Precision Floating-Point Computational Instructions", 12.8 "Compare", 12.9 "Classify",
// 13.2 "NaN Boxing of Narrower Values").
#include "test.h"

#define LOAD_RAW(freg, value) li t0, value; fmv.d.x freg, t0
// Check n: after code, a0 (result bits or integer) and a1 (fflags) must be as given.
#define TEST_RAW(n, result, flags, code...) \
  CHECK_NUM(n); fsflags x0; code; frflags a1; CHECK_REG(a0, result); CHECK_REG(a1, flags)

  .text
  .globl test_main
test_main:
  // ---- fmin/fmax: -0 < +0; a single NaN operand is ignored; sNaN raises NV ----
  TEST_FP_OP2N_D(1, fmin.d, 0x00, 0x3ff0000000000000, 0x3ff0000000000000, 0x4000000000000000)
  TEST_FP_OP2N_D(2, fmax.d, 0x00, 0x4000000000000000, 0x3ff0000000000000, 0x4000000000000000)
  TEST_FP_OP2N_D(3, fmin.d, 0x00, 0x8000000000000000, 0x8000000000000000, 0x0000000000000000)
  TEST_FP_OP2N_D(4, fmin.d, 0x00, 0x8000000000000000, 0x0000000000000000, 0x8000000000000000)
  TEST_FP_OP2N_D(5, fmax.d, 0x00, 0x0000000000000000, 0x8000000000000000, 0x0000000000000000)
  TEST_FP_OP2N_D(6, fmax.d, 0x00, 0x0000000000000000, 0x0000000000000000, 0x8000000000000000)
  TEST_FP_OP2N_D(7, fmin.d, 0x00, 0x3ff0000000000000, 0x7ff8000000000000, 0x3ff0000000000000)
  TEST_FP_OP2N_D(8, fmin.d, 0x00, 0x3ff0000000000000, 0x3ff0000000000000, 0x7ff8000000000000)
  TEST_FP_OP2N_D(9, fmax.d, 0x10, 0x3ff0000000000000, 0x7ff0000000000001, 0x3ff0000000000000)
  TEST_FP_OP2N_D(10, fmin.d, 0x00, 0x7ff8000000000000, 0x7ff8000000000123, 0xfff8000000000000)
  TEST_FP_OP2N_D(11, fmax.d, 0x10, 0x7ff8000000000000, 0x7ff0000000000001, 0x7ff8000000000000)
  TEST_FP_OP2N_D(12, fmin.d, 0x00, 0xfff0000000000000, 0xfff0000000000000, 0x3ff0000000000000)
  TEST_FP_OP2N_S(13, fmin.s, 0x00, 0x80000000, 0x00000000, 0x80000000)
  TEST_FP_OP2N_S(14, fmax.s, 0x00, 0xbf800000, 0x7fc00000, 0xbf800000)
  TEST_FP_OP2N_S(15, fmax.s, 0x10, 0x40000000, 0x7f800001, 0x40000000)
  TEST_FP_OP2N_S(16, fmin.s, 0x00, 0x7fc00000, 0x7fc00001, 0xffc00000)

  // ---- compares: feq is quiet (NV only for sNaN), flt/fle signal on any NaN ----
  TEST_FP_INT_OP2_D(17, feq.d, 0x00, 1, 0x3ff0000000000000, 0x3ff0000000000000)
  TEST_FP_INT_OP2_D(18, feq.d, 0x00, 1, 0x8000000000000000, 0x0000000000000000)
  TEST_FP_INT_OP2_D(19, flt.d, 0x00, 0, 0x8000000000000000, 0x0000000000000000)
  TEST_FP_INT_OP2_D(20, fle.d, 0x00, 1, 0x8000000000000000, 0x0000000000000000)
  TEST_FP_INT_OP2_D(21, feq.d, 0x00, 0, 0x7ff8000000000000, 0x3ff0000000000000)
  TEST_FP_INT_OP2_D(22, feq.d, 0x10, 0, 0x7ff0000000000001, 0x3ff0000000000000)
  TEST_FP_INT_OP2_D(23, flt.d, 0x10, 0, 0x7ff8000000000000, 0x3ff0000000000000)
  TEST_FP_INT_OP2_D(24, fle.d, 0x10, 0, 0x3ff0000000000000, 0x7ff8000000000000)
  TEST_FP_INT_OP2_D(25, flt.d, 0x00, 1, 0xfff0000000000000, 0x7fefffffffffffff)
  TEST_FP_INT_OP2_D(26, fle.d, 0x00, 0, 0x4000000000000000, 0x3ff0000000000000)
  TEST_FP_INT_OP2_D(27, feq.d, 0x00, 0, 0x7ff8000000000000, 0x7ff8000000000000)
  TEST_FP_INT_OP2_S(28, feq.s, 0x00, 0, 0x7fc00000, 0x3f800000)
  TEST_FP_INT_OP2_S(29, flt.s, 0x10, 0, 0x7fc00000, 0x3f800000)
  TEST_FP_INT_OP2_S(30, fle.s, 0x00, 1, 0xbf800000, 0xbf800000)
  TEST_FP_INT_OP2_S(31, flt.s, 0x00, 1, 0x3f800000, 0x40000000)
  TEST_FP_INT_OP2_S(32, feq.s, 0x10, 0, 0x3f800000, 0x7f800001)

  // ---- fclass: one bit of ten ----
  TEST_FP_INT_OP1N_D(33, fclass.d, 0x00, 0x001, 0xfff0000000000000)   // -inf
  TEST_FP_INT_OP1N_D(34, fclass.d, 0x00, 0x002, 0xbff0000000000000)   // -normal
  TEST_FP_INT_OP1N_D(35, fclass.d, 0x00, 0x004, 0x8000000000000001)   // -subnormal
  TEST_FP_INT_OP1N_D(36, fclass.d, 0x00, 0x008, 0x8000000000000000)   // -0
  TEST_FP_INT_OP1N_D(37, fclass.d, 0x00, 0x010, 0x0000000000000000)   // +0
  TEST_FP_INT_OP1N_D(38, fclass.d, 0x00, 0x020, 0x000fffffffffffff)   // +subnormal
  TEST_FP_INT_OP1N_D(39, fclass.d, 0x00, 0x040, 0x7fefffffffffffff)   // +normal
  TEST_FP_INT_OP1N_D(40, fclass.d, 0x00, 0x080, 0x7ff0000000000000)   // +inf
  TEST_FP_INT_OP1N_D(41, fclass.d, 0x00, 0x100, 0x7ff0000000000001)   // sNaN, no NV
  TEST_FP_INT_OP1N_D(42, fclass.d, 0x00, 0x200, 0x7ff8000000000000)   // qNaN
  TEST_FP_INT_OP1N_D(43, fclass.d, 0x00, 0x200, 0xfff8000000000001)   // negative qNaN
  TEST_FP_INT_OP1N_S(44, fclass.s, 0x00, 0x001, 0xff800000)
  TEST_FP_INT_OP1N_S(45, fclass.s, 0x00, 0x004, 0x80000001)
  TEST_FP_INT_OP1N_S(46, fclass.s, 0x00, 0x010, 0x00000000)
  TEST_FP_INT_OP1N_S(47, fclass.s, 0x00, 0x040, 0x3f800000)
  TEST_FP_INT_OP1N_S(48, fclass.s, 0x00, 0x100, 0x7f800001)
  TEST_FP_INT_OP1N_S(49, fclass.s, 0x00, 0x200, 0x7fc00000)
  TEST_FP_INT_OP1N_S(50, fclass.s, 0x00, 0x020, 0x007fffff)

  // ---- sign injection: bit operations, NaN payloads kept, never a flag ----
  TEST_FP_OP2N_D(51, fsgnj.d, 0x00, 0xfff8000000000123, 0x7ff8000000000123, 0xbff0000000000000)
  TEST_FP_OP2N_D(52, fsgnjn.d, 0x00, 0xfff0000000000001, 0x7ff0000000000001, 0x3ff0000000000000)
  TEST_FP_OP2N_D(53, fsgnjx.d, 0x00, 0x7ff8000000000abc, 0xfff8000000000abc, 0xbff0000000000000)
  TEST_FP_OP2N_D(54, fsgnj.d, 0x00, 0xbff0000000000000, 0x3ff0000000000000, 0x8000000000000000)
  TEST_FP_OP2N_D(55, fsgnjn.d, 0x00, 0xc000000000000000, 0x4000000000000000, 0x4000000000000000)  // fneg
  TEST_FP_OP2N_D(56, fsgnjx.d, 0x00, 0x4008000000000000, 0xc008000000000000, 0xc008000000000000)  // fabs
  TEST_FP_OP2N_S(57, fsgnj.s, 0x00, 0xffc00123, 0x7fc00123, 0xbf800000)
  TEST_FP_OP2N_S(58, fsgnjn.s, 0x00, 0xff800001, 0x7f800001, 0x3f800000)
  TEST_FP_OP2N_S(59, fsgnjx.s, 0x00, 0x3f800000, 0xbf800000, 0xbf800000)

  // ---- single-precision operations on registers that are not NaN-boxed: the canonical NaN ----
  // (f1 = 1.0f with the upper word 0, f5 = 1.0f with the upper word not all ones, f2 = boxed -1.0f)
  LOAD_RAW(f1, 0x000000003f800000)
  LOAD_RAW(f5, 0xfffffffe3f800000)
  LOAD_RAW(f2, 0xffffffffbf800000)
  LOAD_RAW(f6, 0xffffffff3f800000)
  TEST_RAW(60, 0xffffffff7fc00000, 0x00, fadd.s f3, f1, f1; fmv.x.d a0, f3)
  TEST_RAW(61, 0xffffffff7fc00000, 0x00, fmul.s f3, f5, f6; fmv.x.d a0, f3)
  TEST_RAW(62, 0xffffffffffc00000, 0x00, fsgnj.s f3, f1, f2; fmv.x.d a0, f3)   // magnitude of the canonical NaN
  TEST_RAW(63, 0xffffffff3f800000, 0x00, fsgnj.s f3, f2, f1; fmv.x.d a0, f3)   // sign of the canonical NaN
  TEST_RAW(64, 0x200, 0x00, fclass.s a0, f1)
  TEST_RAW(65, 0, 0x00, feq.s a0, f1, f6)
  TEST_RAW(66, 0, 0x10, flt.s a0, f6, f5)
  TEST_RAW(67, 0x7ff8000000000000, 0x00, fcvt.d.s f3, f1; fmv.x.d a0, f3)
  TEST_RAW(68, 0x7fffffff, 0x10, fcvt.w.s a0, f1, rtz)
  TEST_RAW(69, 0xffffffff3f800000, 0x00, fmin.s f3, f1, f6; fmv.x.d a0, f3)
  TEST_RAW(70, 0xffffffff7fc00000, 0x00, fmadd.s f3, f6, f6, f5; fmv.x.d a0, f3)
  TEST_RAW(71, 0xffffffff7fc00000, 0x00, fsqrt.s f3, f1; fmv.x.d a0, f3)
  // a boxed value works as usual
  TEST_RAW(72, 0xffffffff40000000, 0x00, fadd.s f3, f6, f6; fmv.x.d a0, f3)
  // double operations on a boxed single see a NaN (the bits are a double NaN), quietly
  TEST_RAW(73, 0, 0x00, feq.d a0, f6, f6)
  TEST_PASS
