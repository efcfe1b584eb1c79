// matmul: dense double-precision matrix multiply (192x192, i-k-j order so the inner loop streams rows),
// then a Gauss-Jordan style elimination with divisions, as numeric code does.
#include <string.h>

#include "real-program.h"

enum { N = 192 };
static double a[N][N], b[N][N], c[N][N];

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  uint64_t seed = 31337, sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      a[i][j] = (double)(rp_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
      b[i][j] = (double)(rp_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
    }
  for (unsigned r = 0; r < 4 * scale; r++) {
    memset(c, 0, sizeof c);
    for (int i = 0; i < N; i++)
      for (int k = 0; k < N; k++) {
        double x = a[i][k];
        for (int j = 0; j < N; j++) c[i][j] += x * b[k][j];
      }
    // Elimination on c (diagonal made dominant so no pivoting is needed).
    for (int i = 0; i < N; i++) c[i][i] += N;
    for (int p = 0; p < N; p++)
      for (int i = p + 1; i < N; i++) {
        double f = c[i][p] / c[p][p];
        for (int j = p; j < N; j++) c[i][j] -= f * c[p][j];
      }
    double det = 0;
    for (int i = 0; i < N; i++) det += c[i][i];
    uint64_t bits;
    memcpy(&bits, &det, 8);
    sum = sum * 31 + bits;
    memcpy(b, c, sizeof b);
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) b[i][j] /= N * 4.0;
  }
  rp_end("matmul", t, sum);
  return 0;
}
