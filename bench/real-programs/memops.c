// memops: libc's memcpy, memmove, memset and memcmp over sizes from a few bytes to 256 KiB, aligned and
// not, as buffers, strings and structures are copied and cleared in ordinary code.
#include <string.h>

#include "real-program.h"

static uint8_t src[1 << 18], dst[(1 << 18) + 64];

// Keeps the compiler from turning the libc calls into its own inline code or dropping them.
static void *(*volatile copy)(void *, const void *, size_t) = memcpy;
static void *(*volatile move)(void *, const void *, size_t) = memmove;
static void *(*volatile set)(void *, int, size_t) = memset;
static int (*volatile compare)(const void *, const void *, size_t) = memcmp;

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  uint64_t seed = 99, sum = 0;
  for (size_t i = 0; i < sizeof src; i += 8) {
    uint64_t r = rp_rand(&seed);
    memcpy(src + i, &r, 8);
  }
  // Large blocks: page-sized and bigger.
  for (unsigned r = 0; r < 60 * scale; r++) {
    size_t n = (size_t)1 << (12 + r % 7);
    copy(dst + (r & 7), src, n);
    sum += dst[n / 2] + compare(dst + (r & 7), src, n);
    set(dst, (int)r, n);
    sum += dst[n - 1];
    move(dst + 1, dst, n - 1);
  }
  // Small and medium blocks at every alignment, as structures and strings are copied.
  for (unsigned r = 0; r < 300000 * scale; r++) {
    uint64_t x = rp_rand(&seed);
    size_t n = 1 + (x & 255), so = (x >> 8) & 4095, d = (x >> 20) & 4095;
    copy(dst + d, src + so, n);
    if (x >> 63) set(dst + d, (int)(x >> 32), n / 2);
    sum += dst[d + n - 1] + (uint64_t)compare(dst + d, src + so, n);
  }
  rp_end("memops", t, sum);
  return 0;
}
