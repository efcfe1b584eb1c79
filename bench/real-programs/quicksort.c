// quicksort: sorting random 32-bit words with a plain recursive quicksort (branches that mispredict half
// the time) and with libc's qsort (an indirect call to the comparator per comparison), then a binary search
// of each sorted array.
#include "real-program.h"

static uint32_t a[1 << 16];

static void quicksort(uint32_t *v, long lo, long hi) {
  while (lo < hi) {
    uint32_t p = v[lo + (hi - lo) / 2];
    long i = lo, j = hi;
    while (i <= j) {
      while (v[i] < p) i++;
      while (v[j] > p) j--;
      if (i <= j) {
        uint32_t t = v[i];
        v[i++] = v[j];
        v[j--] = t;
      }
    }
    // Recurse into the smaller half, loop on the larger: bounded stack depth.
    if (j - lo < hi - i) {
      quicksort(v, lo, j);
      lo = i;
    } else {
      quicksort(v, i, hi);
      hi = j;
    }
  }
}

static int cmp(const void *x, const void *y) {
  uint32_t u = *(const uint32_t *)x, w = *(const uint32_t *)y;
  return (u > w) - (u < w);
}

static void fill(uint64_t *seed, size_t n) {
  for (size_t i = 0; i < n; i++) a[i] = (uint32_t)rp_rand(seed);
}

static uint64_t check(size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s = s * 3 + a[i];
  // Binary searches for every 8th element: more unpredictable branches.
  for (size_t i = 0; i < n; i += 8) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (a[mid] < a[i]) lo = mid + 1;
      else hi = mid;
    }
    s += lo;
  }
  return s;
}

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  uint64_t seed = 42, sum = 0;
  for (unsigned r = 0; r < 6 * scale; r++) {
    fill(&seed, 1 << 16);
    quicksort(a, 0, (1 << 16) - 1);
    sum = sum * 7 + check(1 << 16);
  }
  for (unsigned r = 0; r < 2 * scale; r++) {
    fill(&seed, 1 << 16);
    qsort(a, 1 << 16, sizeof a[0], cmp);
    sum = sum * 7 + check(1 << 16);
  }
  // The example: many sorts of 8,192 words.
  for (unsigned r = 0; r < 16 * scale; r++) {
    fill(&seed, 8192);
    quicksort(a, 0, 8191);
    sum = sum * 7 + check(8192);
  }
  rp_end("quicksort", t, sum);
  return 0;
}
