// linux-mips: the guest-mips workload (bitwise CRC-32, insertion sort, 16x16 matrix multiply) as a static
// Linux user program with no libc, timing itself with clock_gettime(CLOCK_MONOTONIC) and counting with
// rdinstret (user mode may read instret when the kernel's SBI PMU driver grants it through scounteren).
// Usage: linux-mips [ITERATIONS]  (default 100). Prints one line:
//   linux-mips: iterations=N instret=N ns=N checksum=0x<16 hex digits>
#include <stdint.h>

#define SYS_write 64
#define SYS_exit 93
#define SYS_clock_gettime 113
#define CLOCK_MONOTONIC 1

static long sys3(long n, long a, long b, long c) {
  register long a0 __asm__("a0") = a;
  register long a1 __asm__("a1") = b;
  register long a2 __asm__("a2") = c;
  register long a7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
  return a0;
}

struct timespec64 {
  int64_t tv_sec;
  int64_t tv_nsec;
};

static uint64_t now_ns(void) {
  struct timespec64 t;
  sys3(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&t, 0);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline uint64_t rd_instret(void) {
  uint64_t v;
  __asm__ volatile("rdinstret %0" : "=r"(v));
  return v;
}

static char out[160];
static int outlen;

static void put_s(const char *s) {
  while (*s && outlen < (int)sizeof out) out[outlen++] = *s++;
}

static void put_u(uint64_t v) {
  char b[21];
  int i = 20;
  b[i] = 0;
  do {
    b[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put_s(&b[i]);
}

static void put_x(uint64_t v) {
  char b[17];
  for (int i = 0; i < 16; i++) b[i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
  b[16] = 0;
  put_s("0x");
  put_s(b);
}

static uint8_t buf[4096];
static uint32_t keys[256];
static int32_t ma[16][16], mb[16][16], mc[16][16];

static uint32_t crc32(const uint8_t *p, uint32_t n, uint32_t crc) {
  crc = ~crc;
  for (uint32_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static void sort(uint32_t *a, int n) {
  for (int i = 1; i < n; i++) {
    uint32_t v = a[i];
    int j = i - 1;
    while (j >= 0 && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}

static void matmul(void) {
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      int32_t s = 0;
      for (int k = 0; k < 16; k++) s += ma[i][k] * mb[k][j];
      mc[i][j] = s;
    }
}

static uint64_t workload(int iterations) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  uint64_t checksum = 0;
  for (int it = 0; it < iterations; it++) {
    for (int i = 0; i < 4096; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      buf[i] = (uint8_t)(seed >> 56);
    }
    checksum = checksum * 31 + crc32(buf, sizeof buf, (uint32_t)it);
    for (int i = 0; i < 256; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      keys[i] = (uint32_t)(seed >> 32);
    }
    sort(keys, 256);
    checksum = checksum * 31 + keys[it & 255];
    for (int i = 0; i < 16; i++)
      for (int j = 0; j < 16; j++) {
        ma[i][j] = (int32_t)(keys[(i * 16 + j) & 255] >> 20) - 2048;
        mb[i][j] = (int32_t)(buf[i * 16 + j]) - 128;
      }
    matmul();
    checksum = checksum * 31 + (uint32_t)mc[it & 15][(it >> 4) & 15];
  }
  return checksum;
}

// Called from _start with the initial stack pointer: argc at sp[0], argv from sp[1].
__attribute__((used)) void linux_mips_main(long *sp) {
  int iterations = 100;
  if (sp[0] > 1) {
    const char *a = (const char *)sp[2];
    int n = 0;
    // A bad or huge argument falls back to the default instead of running for ever.
    while (*a >= '0' && *a <= '9' && n < 1000000) n = n * 10 + (*a++ - '0');
    if (n > 0) iterations = n;
  }
  uint64_t t0 = now_ns();
  uint64_t i0 = rd_instret();
  uint64_t checksum = workload(iterations);
  uint64_t i1 = rd_instret();
  uint64_t t1 = now_ns();
  put_s("linux-mips: iterations=");
  put_u((uint64_t)iterations);
  put_s(" instret=");
  put_u(i1 - i0);
  put_s(" ns=");
  put_u(t1 - t0);
  put_s(" checksum=");
  put_x(checksum);
  put_s("\n");
  sys3(SYS_write, 1, (long)out, outlen);
  sys3(SYS_exit, 0, 0, 0);
}

__asm__(
    ".globl _start\n"
    "_start:\n"
    // No libc start-up: set the global pointer the linker relaxes small-data accesses against.
    "  .option push\n"
    "  .option norelax\n"
    "  la gp, __global_pointer$\n"
    "  .option pop\n"
    "  mv a0, sp\n"
    "  andi sp, sp, -16\n"
    "  call linux_mips_main\n");
