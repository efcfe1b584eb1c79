// What every program of the real-programs bench shares: a monotonic clock, the retired-instruction counter
// and the one result line the runner reads:
//   real-program: NAME checksum=0x<16 hex digits> ns=N instret=N
// ns is the workload's CLOCK_MONOTONIC time; instret is rdinstret's difference over it (exact under tsvm;
// under QEMU without -icount it follows the host's cycle counter, so the runner takes tsvm's for both).
#ifndef REAL_PROGRAM_H
#define REAL_PROGRAM_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t rp_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline uint64_t rp_instret(void) {
  uint64_t v;
  __asm__ volatile("rdinstret %0" : "=r"(v));
  return v;
}

// The scale factor from argv[1] (default 1): the runner passes a smaller one for a quick check.
static inline unsigned rp_scale(int argc, char **argv) {
  if (argc < 2) return 1;
  char *end;
  unsigned long v = strtoul(argv[1], &end, 10);
  if (*end || v == 0 || v > 1000) {
    fprintf(stderr, "%s: scale '%s' must be a whole number from 1 to 1000\n", argv[0], argv[1]);
    exit(2);
  }
  return (unsigned)v;
}

// A deterministic pseudo-random stream (xorshift64*), the same on every machine.
static inline uint64_t rp_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

// Timing brackets: the workload runs between rp_begin and rp_end; rp_end prints the result line.
struct rp_timer {
  uint64_t ns, instret;
};

static inline struct rp_timer rp_begin(void) {
  struct rp_timer t;
  t.ns = rp_now_ns();
  t.instret = rp_instret();
  return t;
}

static inline void rp_end(const char *name, struct rp_timer t, uint64_t checksum) {
  uint64_t instret = rp_instret() - t.instret;
  uint64_t ns = rp_now_ns() - t.ns;
  printf("real-program: %s checksum=0x%016llx ns=%llu instret=%llu\n", name, (unsigned long long)checksum,
         (unsigned long long)ns, (unsigned long long)instret);
  fflush(stdout);
}
#endif
