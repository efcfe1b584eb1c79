// recursion: calls and returns, deep and shallow: naive Fibonacci, Ackermann's function, and a recursive
// descent evaluator of generated arithmetic expressions (mutually recursive functions walking a string).
#include "real-program.h"

static uint64_t fib(unsigned n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static uint64_t ack(uint64_t m, uint64_t n) {
  if (m == 0) return n + 1;
  if (n == 0) return ack(m - 1, 1);
  return ack(m - 1, ack(m, n - 1));
}

// Expressions over digits, + - * and parentheses, generated from a seed to a bounded depth.
static char expr[1 << 16];
static size_t len;

static void gen(uint64_t *seed, int depth) {
  uint64_t r = rp_rand(seed);
  if (depth == 0 || r % 4 == 0) {
    expr[len++] = (char)('0' + (r >> 8) % 10);
    return;
  }
  if (r % 4 == 1) {
    expr[len++] = '(';
    gen(seed, depth - 1);
    expr[len++] = ')';
    return;
  }
  gen(seed, depth - 1);
  expr[len++] = "+-*"[(r >> 8) % 3];
  gen(seed, depth - 1);
}

static const char *pos;
static int64_t parse_sum(void);

static int64_t parse_atom(void) {
  if (*pos == '(') {
    pos++;
    int64_t v = parse_sum();
    pos++;  // ')'
    return v;
  }
  return *pos++ - '0';
}

static int64_t parse_product(void) {
  int64_t v = parse_atom();
  while (*pos == '*') {
    pos++;
    v = v * parse_atom() % 1000003;
  }
  return v;
}

static int64_t parse_sum(void) {
  int64_t v = parse_product();
  while (*pos == '+' || *pos == '-') {
    char op = *pos++;
    int64_t w = parse_product();
    v = op == '+' ? v + w : v - w;
  }
  return v;
}

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  uint64_t sum = 0;
  for (unsigned i = 0; i < scale; i++) sum += fib(30 + (i & 1));
  for (unsigned i = 0; i < 12 * scale; i++) sum += ack(2, 2000 + i) + ack(3, 7);
  uint64_t seed = 777;
  for (unsigned i = 0; i < 400 * scale; i++) {
    len = 0;
    gen(&seed, 14);
    expr[len] = 0;
    pos = expr;
    sum = sum * 1000003 + (uint64_t)parse_sum();
  }
  rp_end("recursion", t, sum);
  return 0;
}
