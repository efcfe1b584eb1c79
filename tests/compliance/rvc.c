// A representative integer program compiled with the C extension (-march=rv64gc -O2): CRC-32, an
// insertion sort, a jump-table switch, recursion and 32-bit wrap-around, folded into one checksum that
// rvc.S compares with the value the same source computes on the build host.
#include <stdint.h>

uint64_t rvc_program(void);

static uint32_t crc32(const uint8_t *p, uint32_t n) {
  uint32_t crc = 0xffffffffu;
  for (uint32_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static void sort(int64_t *a, int n) {
  for (int i = 1; i < n; i++) {
    int64_t v = a[i];
    int j = i - 1;
    while (j >= 0 && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}

static uint64_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static __attribute__((noinline)) uint64_t op(uint32_t which, uint64_t x, uint64_t y) {
  switch (which) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x ^ (y << 3);
    case 3: return (x >> 7) | (y << 57);
    case 4: return x * 0x9e3779b97f4a7c15ull + y;
    case 5: return (uint64_t)((int64_t)x >> 13) + y;
    case 6: return (uint32_t)x * (uint32_t)y;
    case 7: return y ? x / y : x;
    default: return ~x;
  }
}

struct item {
  int16_t a;
  uint8_t b;
  int32_t c;
  uint64_t d;
};

static uint8_t bytes[512];
static int64_t values[64];
static struct item items[16];

uint64_t rvc_program(void) {
  uint64_t seed = 0x243f6a8885a308d3ull;
  for (int i = 0; i < 512; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    bytes[i] = (uint8_t)(seed >> 56);
  }
  uint64_t h = crc32(bytes, 512);
  for (int i = 0; i < 64; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    values[i] = (int64_t)seed >> (i & 31);
  }
  sort(values, 64);
  for (int i = 0; i < 64; i++) h = h * 31 + (uint64_t)values[i];
  for (int i = 0; i < 16; i++) {
    items[i].a = (int16_t)(i * -1234);
    items[i].b = (uint8_t)(i * 77);
    items[i].c = (int32_t)(0x7ffffff0u + (uint32_t)i * 3u);  // wraps: gcc converts modulo 2^32
    items[i].d = h >> i;
  }
  for (int i = 0; i < 16; i++) {
    h ^= (uint64_t)(int64_t)items[i].a + items[i].b + (uint64_t)(int64_t)items[i].c + items[i].d;
    h = op((uint32_t)(h % 9), h, (uint64_t)i + 1);
  }
  uint32_t w = 0x7fffffffu;
  for (int i = 0; i < 100; i++) w = w * 3u + (uint32_t)i;
  h += w;
  h += fib(20);
  return h;
}
