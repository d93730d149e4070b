/* matmul_rate: the machine's BLAS matmul rate in the engine's precision, the
 * denominator of model FLOP utilisation. Times C = A B^T for square n x n
 * matrices (default 1024) and prints GFLOP/s; also --json for scripts.
 *
 * usage: smoe_matmul_rate [n] [repeats] [threads] */
#include <stdio.h>
#include <stdlib.h>

#include "ops.h"
#include "train.h"

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1024, reps = argc > 2 ? atoi(argv[2]) : 10,
      threads = argc > 3 ? atoi(argv[3]) : 0;
  if (n <= 0 || reps <= 0) {
    fprintf(stderr, "usage: smoe_matmul_rate [n>0] [repeats>0] [threads]\n");
    return 2;
  }
  threads = smoe_set_threads(threads);
  size_t nn = (size_t)n * n;
  real *a = xmalloc(sizeof(real) * nn), *b = xmalloc(sizeof(real) * nn),
       *c = xmalloc(sizeof(real) * nn);
  for (size_t i = 0; i < nn; i++) a[i] = (real)((i % 7) * 0.01), b[i] = (real)((i % 5) * 0.02);
  smoe_gemm(0, 1, n, n, n, 1, a, n, b, n, 0, c, n); /* warm up */
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = smoe_now();
    smoe_gemm(0, 1, n, n, n, 1, a, n, b, n, 0, c, n);
    double dt = smoe_now() - t0;
    if (dt < best) best = dt;
  }
  double gflops = 2.0 * n * n * (double)n / best / 1e9;
  printf("{\"n\": %d, \"threads\": %d, \"precision\": \"%s\", \"gflops\": %.3f}\n", n, threads,
         SMOE_REAL_NAME, gflops);
  free(a), free(b), free(c);
  return 0;
}
