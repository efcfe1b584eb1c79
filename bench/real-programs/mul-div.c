// mul-div: 64-bit multiply and divide as hashing and number theory use them: a multiply/xorshift hash
// (splitmix64's finalizer), 64-bit gcd by remainders, and modular exponentiation with 128-bit products
// (mulhu and libgcc's __umodti3), plus plain 64-bit division and remainder by varying divisors.
#include "real-program.h"

static inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m) { return (uint64_t)((unsigned __int128)a * b % m); }

static uint64_t powmod(uint64_t b, uint64_t e, uint64_t m) {
  uint64_t r = 1 % m;
  b %= m;
  while (e) {
    if (e & 1) r = mulmod(r, b, m);
    b = mulmod(b, b, m);
    e >>= 1;
  }
  return r;
}

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  uint64_t sum = 0;
  uint64_t x = 1;
  for (uint64_t i = 0; i < 4000000ull * scale; i++) {
    x = mix(x + i);
    sum ^= x;
  }
  uint64_t seed = 12345;
  for (unsigned i = 0; i < 200000 * scale; i++) {
    uint64_t a = rp_rand(&seed), b = rp_rand(&seed) >> (i & 31);
    sum += gcd(a, b | 1);
  }
  for (unsigned i = 0; i < 6000 * scale; i++) {
    uint64_t m = rp_rand(&seed) | 1;
    sum ^= powmod(rp_rand(&seed), rp_rand(&seed), m);
  }
  for (unsigned i = 0; i < 1000000 * scale; i++) {
    uint64_t n = rp_rand(&seed), d = (rp_rand(&seed) >> (i % 60)) | 1;
    int64_t sn = (int64_t)n, sd = (int64_t)(d >> 1) - (int64_t)(d >> 2);
    sum += n / d + n % d + (uint64_t)(sd ? sn / sd + sn % sd : 0);
  }
  rp_end("mul-div", t, sum);
  return 0;
}
