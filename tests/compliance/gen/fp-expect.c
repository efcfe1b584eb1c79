// Host tool (x86-64 or any IEEE 754 host with <fenv.h>): prints the TEST_FP_* lines of fd-arith-d.S and
// fd-arith-s.S, computing each expected result and its exception flags with the host's FPU in the four
// rounding modes it has (RNE, RTZ, RDN, RUP). RMM cases and RISC-V-specific NaN rules are written by hand
// in the .S files. A NaN result is replaced by the RISC-V canonical NaN. The checks then had to pass on
// QEMU (softfloat), a second, independent implementation.
//   gcc -O0 -frounding-math -o /tmp/fp-expect fp-expect.c -lm && /tmp/fp-expect d 1   (s 1, u 1)
#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int modes[] = {FE_TONEAREST, FE_TOWARDZERO, FE_DOWNWARD, FE_UPWARD};
static const char *rm_names[] = {"rne", "rtz", "rdn", "rup"};

static int flags_now(void) {
  int f = 0;
  if (fetestexcept(FE_INEXACT)) f |= 0x01;
  if (fetestexcept(FE_UNDERFLOW)) f |= 0x02;
  if (fetestexcept(FE_OVERFLOW)) f |= 0x04;
  if (fetestexcept(FE_DIVBYZERO)) f |= 0x08;
  if (fetestexcept(FE_INVALID)) f |= 0x10;
  return f;
}

static uint64_t dbits(double d) { uint64_t u; memcpy(&u, &d, 8); return isnan(d) ? 0x7ff8000000000000ull : u; }
static uint32_t sbits(float f) { uint32_t u; memcpy(&u, &f, 4); return isnan(f) ? 0x7fc00000u : u; }
static double dfrom(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static float sfrom(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static int n;
static void check_n(void) {
  if (++n > 255) { fprintf(stderr, "more than 255 checks\n"); exit(1); }
}

// volatile operands keep the compiler from folding at build time
static void d_case(const char *op, int arity, uint64_t a, uint64_t b, uint64_t c) {
  for (int m = 0; m < 4; m++) {
    volatile double x = dfrom(a), y = dfrom(b), z = dfrom(c);
    double r;
    fesetround(modes[m]);
    feclearexcept(FE_ALL_EXCEPT);
    if (!strcmp(op, "fadd.d")) r = x + y;
    else if (!strcmp(op, "fsub.d")) r = x - y;
    else if (!strcmp(op, "fmul.d")) r = x * y;
    else if (!strcmp(op, "fdiv.d")) r = x / y;
    else if (!strcmp(op, "fsqrt.d")) r = sqrt(x);
    else if (!strcmp(op, "fmadd.d")) r = fma(x, y, z);
    else if (!strcmp(op, "fmsub.d")) r = fma(x, y, -z);
    else if (!strcmp(op, "fnmsub.d")) r = fma(-x, y, z);
    else if (!strcmp(op, "fnmadd.d")) r = fma(-x, y, -z);
    else abort();
    int f = flags_now();
    fesetround(FE_TONEAREST);
    check_n();
    if (arity == 1)
      printf("  TEST_FP_OP1_D(%d, %s, %s, 0x%02x, 0x%016llx, 0x%016llx)\n", n, op, rm_names[m], f,
             (unsigned long long)dbits(r), (unsigned long long)a);
    else if (arity == 2)
      printf("  TEST_FP_OP2_D(%d, %s, %s, 0x%02x, 0x%016llx, 0x%016llx, 0x%016llx)\n", n, op, rm_names[m], f,
             (unsigned long long)dbits(r), (unsigned long long)a, (unsigned long long)b);
    else
      printf("  TEST_FP_OP3_D(%d, %s, %s, 0x%02x, 0x%016llx, 0x%016llx, 0x%016llx, 0x%016llx)\n", n, op,
             rm_names[m], f, (unsigned long long)dbits(r), (unsigned long long)a, (unsigned long long)b,
             (unsigned long long)c);
  }
}

static void s_case(const char *op, int arity, uint32_t a, uint32_t b, uint32_t c) {
  for (int m = 0; m < 4; m++) {
    volatile float x = sfrom(a), y = sfrom(b), z = sfrom(c);
    float r;
    fesetround(modes[m]);
    feclearexcept(FE_ALL_EXCEPT);
    if (!strcmp(op, "fadd.s")) r = x + y;
    else if (!strcmp(op, "fsub.s")) r = x - y;
    else if (!strcmp(op, "fmul.s")) r = x * y;
    else if (!strcmp(op, "fdiv.s")) r = x / y;
    else if (!strcmp(op, "fsqrt.s")) r = sqrtf(x);
    else if (!strcmp(op, "fmadd.s")) r = fmaf(x, y, z);
    else if (!strcmp(op, "fmsub.s")) r = fmaf(x, y, -z);
    else if (!strcmp(op, "fnmsub.s")) r = fmaf(-x, y, z);
    else if (!strcmp(op, "fnmadd.s")) r = fmaf(-x, y, -z);
    else abort();
    int f = flags_now();
    fesetround(FE_TONEAREST);
    check_n();
    if (arity == 1)
      printf("  TEST_FP_OP1_S(%d, %s, %s, 0x%02x, 0x%08x, 0x%08x)\n", n, op, rm_names[m], f, sbits(r), a);
    else if (arity == 2)
      printf("  TEST_FP_OP2_S(%d, %s, %s, 0x%02x, 0x%08x, 0x%08x, 0x%08x)\n", n, op, rm_names[m], f, sbits(r),
             a, b);
    else
      printf("  TEST_FP_OP3_S(%d, %s, %s, 0x%02x, 0x%08x, 0x%08x, 0x%08x, 0x%08x)\n", n, op, rm_names[m], f,
             sbits(r), a, b, c);
  }
}

// Operands (bit patterns): chosen for rounding direction, overflow, underflow, signed zeros, invalid.
#define D_ONE 0x3ff0000000000000ull
#define D_TWO 0x4000000000000000ull
#define D_THREE 0x4008000000000000ull
#define D_TENTH 0x3fb999999999999aull
#define D_FIFTH 0x3fc999999999999aull
#define D_MAX 0x7fefffffffffffffull
#define D_MIN 0x0010000000000000ull
#define D_INF 0x7ff0000000000000ull
#define D_QNAN 0x7ff8000000000000ull
#define D_SNAN 0x7ff0000000000001ull
#define D_ONE_P 0x3ff0000000000001ull   // 1 + 2^-52
#define D_ONE_M 0x3fefffffffffffffull   // 1 - 2^-53
#define D_HALF_ULP 0x3ca0000000000000ull // 2^-53
#define D_NEG(x) ((x) ^ 0x8000000000000000ull)

#define S_ONE 0x3f800000u
#define S_TWO 0x40000000u
#define S_THREE 0x40400000u
#define S_TENTH 0x3dcccccdu
#define S_FIFTH 0x3e4ccccdu
#define S_MAX 0x7f7fffffu
#define S_MIN 0x00800000u
#define S_INF 0x7f800000u
#define S_QNAN 0x7fc00000u
#define S_SNAN 0x7f800001u
#define S_ONE_P 0x3f800001u
#define S_ONE_M 0x3f7fffffu
#define S_NEG(x) ((x) ^ 0x80000000u)

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  n = atoi(argv[2]) - 1;
  if (argv[1][0] == 'u') {
    // the edges of the exponent range: tininess after rounding, exact subnormals, overflow by a half ulp
    d_case("fmul.d", 2, D_MIN, D_ONE_M, 0);
    d_case("fmul.d", 2, D_MIN, 0x3fe0000000000001ull, 0);
    d_case("fmul.d", 2, 0x000fffffffffffffull, D_ONE_P, 0);
    d_case("fdiv.d", 2, D_MIN, D_ONE_P, 0);
    d_case("fdiv.d", 2, D_ONE, D_MAX, 0);
    d_case("fadd.d", 2, 1, 1, 0);
    d_case("fsub.d", 2, 0x0010000000000001ull, D_MIN, 0);
    d_case("fadd.d", 2, D_MAX, 0x7c90000000000000ull, 0);
    d_case("fmul.d", 2, D_MAX, D_ONE_P, 0);
    d_case("fmadd.d", 3, D_MIN, D_ONE_M, D_NEG(1));
    d_case("fmadd.d", 3, D_MIN, D_ONE_P, D_NEG(D_MIN));
    d_case("fsqrt.d", 1, 2, 0, 0);
    s_case("fmul.s", 2, S_MIN, S_ONE_M, 0);
    s_case("fmul.s", 2, 0x007fffffu, S_ONE_P, 0);
    s_case("fdiv.s", 2, S_ONE, S_MAX, 0);
    s_case("fadd.s", 2, S_MAX, 0x73000000u, 0);
    s_case("fsub.s", 2, 0x00800001u, S_MIN, 0);
    s_case("fmadd.s", 3, S_MIN, S_ONE_M, S_NEG(1));
    s_case("fmul.s", 2, S_MAX, S_ONE_P, 0);
  } else if (argv[1][0] == 'd') {
    d_case("fadd.d", 2, D_TENTH, D_FIFTH, 0);
    d_case("fadd.d", 2, D_NEG(D_TENTH), D_NEG(D_FIFTH), 0);
    d_case("fadd.d", 2, D_MAX, D_MAX, 0);
    d_case("fadd.d", 2, D_ONE, D_NEG(D_ONE), 0);          // exact zero: -0 only in RDN
    d_case("fadd.d", 2, D_INF, D_NEG(D_INF), 0);
    d_case("fadd.d", 2, D_SNAN, D_ONE, 0);
    d_case("fadd.d", 2, D_QNAN, D_ONE, 0);
    d_case("fsub.d", 2, D_ONE, D_HALF_ULP, 0);
    d_case("fsub.d", 2, D_ONE_P, D_ONE, 0);
    d_case("fsub.d", 2, D_INF, D_INF, 0);
    d_case("fmul.d", 2, D_TENTH, D_THREE, 0);
    d_case("fmul.d", 2, D_MAX, D_NEG(D_TWO), 0);
    d_case("fmul.d", 2, D_MIN, D_TENTH, 0);               // tiny and inexact: UF
    d_case("fmul.d", 2, D_MIN, 0x3fe0000000000000ull, 0); // exact subnormal: no UF
    d_case("fmul.d", 2, D_INF, 0, 0);
    d_case("fmul.d", 2, D_NEG(0), D_THREE, 0);
    d_case("fdiv.d", 2, D_ONE, D_THREE, 0);
    d_case("fdiv.d", 2, D_NEG(D_ONE), D_THREE, 0);
    d_case("fdiv.d", 2, D_ONE, 0, 0);
    d_case("fdiv.d", 2, D_NEG(D_ONE), 0, 0);
    d_case("fdiv.d", 2, 0, 0, 0);
    d_case("fdiv.d", 2, D_INF, D_INF, 0);
    d_case("fdiv.d", 2, D_MIN, D_THREE, 0);
    d_case("fdiv.d", 2, D_MAX, D_TENTH, 0);
    d_case("fsqrt.d", 1, D_TWO, 0, 0);
    d_case("fsqrt.d", 1, 0x4010000000000000ull, 0, 0);
    d_case("fsqrt.d", 1, D_NEG(D_ONE), 0, 0);
    d_case("fsqrt.d", 1, D_NEG(0), 0, 0);
    d_case("fsqrt.d", 1, D_INF, 0, 0);
    d_case("fsqrt.d", 1, 1, 0, 0);                         // smallest subnormal
    d_case("fmadd.d", 3, D_ONE_P, D_ONE_M, D_NEG(D_ONE));   // fused: exact tiny result, not 0
    d_case("fmadd.d", 3, D_TENTH, D_THREE, D_FIFTH);
    d_case("fmadd.d", 3, D_MAX, D_TWO, D_NEG(D_MAX));
    d_case("fmadd.d", 3, D_INF, 0, D_ONE);
    d_case("fmadd.d", 3, D_ONE, D_ONE, D_NEG(D_ONE));       // exact zero
    d_case("fmsub.d", 3, D_TENTH, D_THREE, D_FIFTH);
    d_case("fmsub.d", 3, D_ONE_P, D_ONE_M, D_ONE);
    d_case("fnmsub.d", 3, D_TENTH, D_THREE, D_FIFTH);
    d_case("fnmsub.d", 3, 0, D_ONE, 0);
    d_case("fnmadd.d", 3, D_TENTH, D_THREE, D_FIFTH);
    d_case("fnmadd.d", 3, 0, D_ONE, 0);
    d_case("fnmadd.d", 3, D_INF, D_ONE, D_INF);
  } else {
    s_case("fadd.s", 2, S_TENTH, S_FIFTH, 0);
    s_case("fadd.s", 2, S_NEG(S_TENTH), S_NEG(S_FIFTH), 0);
    s_case("fadd.s", 2, S_MAX, S_MAX, 0);
    s_case("fadd.s", 2, S_ONE, S_NEG(S_ONE), 0);
    s_case("fadd.s", 2, S_INF, S_NEG(S_INF), 0);
    s_case("fadd.s", 2, S_SNAN, S_ONE, 0);
    s_case("fadd.s", 2, S_QNAN, S_ONE, 0);
    s_case("fsub.s", 2, S_ONE, 0x33000000u, 0);
    s_case("fsub.s", 2, S_INF, S_INF, 0);
    s_case("fmul.s", 2, S_TENTH, S_THREE, 0);
    s_case("fmul.s", 2, S_MAX, S_NEG(S_TWO), 0);
    s_case("fmul.s", 2, S_MIN, S_TENTH, 0);
    s_case("fmul.s", 2, S_MIN, 0x3f000000u, 0);
    s_case("fmul.s", 2, S_INF, 0, 0);
    s_case("fdiv.s", 2, S_ONE, S_THREE, 0);
    s_case("fdiv.s", 2, S_NEG(S_ONE), S_THREE, 0);
    s_case("fdiv.s", 2, S_ONE, 0, 0);
    s_case("fdiv.s", 2, 0, 0, 0);
    s_case("fdiv.s", 2, S_MIN, S_THREE, 0);
    s_case("fsqrt.s", 1, S_TWO, 0, 0);
    s_case("fsqrt.s", 1, 0x40800000u, 0, 0);
    s_case("fsqrt.s", 1, S_NEG(S_ONE), 0, 0);
    s_case("fsqrt.s", 1, S_NEG(0), 0, 0);
    s_case("fsqrt.s", 1, 1, 0, 0);
    s_case("fmadd.s", 3, S_ONE_P, S_ONE_M, S_NEG(S_ONE));
    s_case("fmadd.s", 3, S_TENTH, S_THREE, S_FIFTH);
    s_case("fmadd.s", 3, S_INF, 0, S_ONE);
    s_case("fmadd.s", 3, S_ONE, S_ONE, S_NEG(S_ONE));
    s_case("fmsub.s", 3, S_TENTH, S_THREE, S_FIFTH);
    s_case("fnmsub.s", 3, S_TENTH, S_THREE, S_FIFTH);
    s_case("fnmadd.s", 3, S_TENTH, S_THREE, S_FIFTH);
    s_case("fnmadd.s", 3, 0, S_ONE, 0);
  }
  return 0;
}
