// guest-mips: a CPU-bound integer workload (bitwise CRC-32, insertion sort, 16x16 matrix multiply) for
// measuring emulated instructions per second. It reads minstret/mcycle around the work and reports the
// counts in the result block (start.S) and on the 16550 UART of QEMU's virt board.
#include <stdint.h>

#ifndef ITERATIONS
#define ITERATIONS 150
#endif

#define UART ((volatile uint8_t *)0x10000000)

struct bench_result {
  char magic[8];
  uint64_t instret;
  uint64_t cycles;
  uint64_t checksum;
  uint64_t done;
};
extern struct bench_result bench_result;
void bench_main(void);

static void putc_uart(char c) {
  while ((UART[5] & 0x20) == 0) {
  }
  UART[0] = (uint8_t)c;
}

static void puts_uart(const char *s) {
  while (*s) putc_uart(*s++);
}

static void putu_uart(uint64_t v) {
  char buf[21];
  int i = 20;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  puts_uart(&buf[i]);
}

static void putx_uart(uint64_t v) {
  puts_uart("0x");
  for (int i = 60; i >= 0; i -= 4) putc_uart("0123456789abcdef"[(v >> i) & 15]);
}

static inline uint64_t rd_instret(void) {
  uint64_t v;
  __asm__ volatile("csrr %0, minstret" : "=r"(v));
  return v;
}

static inline uint64_t rd_cycle(void) {
  uint64_t v;
  __asm__ volatile("csrr %0, mcycle" : "=r"(v));
  return v;
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

void bench_main(void) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  uint64_t checksum = 0;
  uint64_t i0 = rd_instret();
  uint64_t c0 = rd_cycle();
  for (int it = 0; it < ITERATIONS; it++) {
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
  uint64_t c1 = rd_cycle();
  uint64_t i1 = rd_instret();
  bench_result.instret = i1 - i0;
  bench_result.cycles = c1 - c0;
  bench_result.checksum = checksum;
  __asm__ volatile("fence" ::: "memory");
  bench_result.done = 1;
  puts_uart("guest-mips: instret=");
  putu_uart(i1 - i0);
  puts_uart(" cycles=");
  putu_uart(c1 - c0);
  puts_uart(" checksum=");
  putx_uart(checksum);
  puts_uart("\n");
}
