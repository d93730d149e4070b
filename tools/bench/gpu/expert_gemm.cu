/* expert_gemm.cu: the expert MLPs' GEMMs, forward and backward, in bf16 with
 * fp32 accumulation, as a fraction of the dense bf16 GEMM rate R measured in
 * the same run (8192^3): one cublasGemmEx per non-empty expert (the
 * engine's default) against cuBLAS's grouped GEMM (cublasGemmGroupedBatchedEx,
 * one call per GEMM of the MLP over all experts). For expert e with n rows:
 * h13 = x W13^T, y = act W2^T; backward dact = dy W2, dW2 = dy^T act,
 * dx = dh13 W13, dW13 = dh13^T x: 18 n D F FLOPs. Shapes: D 4096, F 14336,
 * E 8 (Mixtral) and D 2048, F 1408, E 64 (K 8), rows per expert 128 to
 * 8192 on average, balanced or Zipf (s = 1.2) over the experts. Prints a
 * markdown table; exit 77 without a device.
 *   expert_gemm [reps]                                                      */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BENCH_NAME "expert_gemm"
#include "bench_gpu.h"

static cublasHandle_t h;
static const float one = 1, zero = 0;

/* row-major C (M,N) = op(A) op(B) (+ C when acc), bf16 in and out */
static void gemm(int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B, int ldb,
                 void *C, int ldc, int acc) {
  CB(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one,
                  B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, acc ? &one : &zero, C, CUDA_R_16BF,
                  ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

typedef struct {
  int E, D, F, *n;   /* rows per expert */
  int64_t rows;      /* all */
  uint16_t *x, *w13, *w2, *h13, *act, *y, *dy, *dact, *dh13, *dx, *dw13, *dw2;
} moe_t;

static uint16_t *buf(size_t n) {
  uint16_t *p;
  CK(cudaMalloc(&p, n * 2 + 2));
  CK(cudaMemset(p, 0x3c, n * 2 + 2)); /* small finite bf16 values */
  return p;
}

static void loop(const moe_t *m) {
  const int D = m->D, F = m->F;
  int64_t r = 0;
  for (int e = 0; e < m->E; r += m->n[e++]) {
    const int n = m->n[e];
    if (!n) continue; /* empty experts cost nothing */
    const uint16_t *w13 = m->w13 + (size_t)e * 2 * F * D, *w2 = m->w2 + (size_t)e * D * F;
    gemm(0, 1, n, 2 * F, D, m->x + r * D, D, w13, D, m->h13 + r * 2 * F, 2 * F, 0);
    gemm(0, 1, n, D, F, m->act + r * F, F, w2, F, m->y + r * D, D, 0);
    gemm(0, 0, n, F, D, m->dy + r * D, D, w2, F, m->dact + r * F, F, 0);
    gemm(1, 0, D, F, n, m->dy + r * D, D, m->act + r * F, F, m->dw2 + (size_t)e * D * F, F, 1);
    gemm(0, 0, n, D, 2 * F, m->dh13 + r * 2 * F, 2 * F, w13, D, m->dx + r * D, D, 0);
    gemm(1, 0, 2 * F, D, n, m->dh13 + r * 2 * F, 2 * F, m->x + r * D, D,
         m->dw13 + (size_t)e * 2 * F * D, D, 1);
  }
}

/* the six GEMMs of the MLP as six grouped calls: each non-empty expert a
 * group of one (its own row count) */
typedef struct {
  int g;
  cublasOperation_t *ta, *tb;
  int *m, *n, *k, *lda, *ldb, *ldc, *size;
  float *alpha, *beta;
  const void **a, **b;
  void **c;
  const void **da, **db; /* device copies of the pointer arrays */
  void **dc;
} grouped_t;

static void grouped_add(grouped_t *G, int ta, int tb, int M, int N, int K, const void *A, int lda,
                        const void *B, int ldb, void *C, int ldc, int acc) {
  int i = G->g++; /* column-major: C^T = op(B)^T op(A)^T */
  G->ta[i] = tb ? CUBLAS_OP_T : CUBLAS_OP_N, G->tb[i] = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  G->m[i] = N, G->n[i] = M, G->k[i] = K, G->lda[i] = ldb, G->ldb[i] = lda, G->ldc[i] = ldc;
  G->a[i] = B, G->b[i] = A, G->c[i] = C, G->size[i] = 1, G->alpha[i] = 1, G->beta[i] = acc;
}

static grouped_t *grouped_plan(const moe_t *m) {
  grouped_t *G = (grouped_t *)calloc(6, sizeof *G);
  const int D = m->D, F = m->F, E = m->E;
  for (int q = 0; q < 6; q++) {
    grouped_t *g = &G[q];
    g->ta = (cublasOperation_t *)calloc(E, sizeof *g->ta);
    g->tb = (cublasOperation_t *)calloc(E, sizeof *g->tb);
    int **ints[] = {&g->m, &g->n, &g->k, &g->lda, &g->ldb, &g->ldc, &g->size};
    for (int j = 0; j < 7; j++) *ints[j] = (int *)calloc(E, sizeof(int));
    g->alpha = (float *)calloc(E, sizeof(float)), g->beta = (float *)calloc(E, sizeof(float));
    g->a = (const void **)calloc(E, sizeof(void *)), g->b = (const void **)calloc(E, sizeof(void *));
    g->c = (void **)calloc(E, sizeof(void *));
  }
  int64_t r = 0;
  for (int e = 0; e < E; r += m->n[e++]) {
    const int n = m->n[e];
    if (!n) continue;
    const uint16_t *w13 = m->w13 + (size_t)e * 2 * F * D, *w2 = m->w2 + (size_t)e * D * F;
    grouped_add(&G[0], 0, 1, n, 2 * F, D, m->x + r * D, D, w13, D, m->h13 + r * 2 * F, 2 * F, 0);
    grouped_add(&G[1], 0, 1, n, D, F, m->act + r * F, F, w2, F, m->y + r * D, D, 0);
    grouped_add(&G[2], 0, 0, n, F, D, m->dy + r * D, D, w2, F, m->dact + r * F, F, 0);
    grouped_add(&G[3], 1, 0, D, F, n, m->dy + r * D, D, m->act + r * F, F,
                m->dw2 + (size_t)e * D * F, F, 1);
    grouped_add(&G[4], 0, 0, n, D, 2 * F, m->dh13 + r * 2 * F, 2 * F, w13, D, m->dx + r * D, D, 0);
    grouped_add(&G[5], 1, 0, 2 * F, D, n, m->dh13 + r * 2 * F, 2 * F, m->x + r * D, D,
                m->dw13 + (size_t)e * 2 * F * D, D, 1);
  }
  for (int q = 0; q < 6; q++) { /* the pointer arrays live on the device */
    grouped_t *g = &G[q];
    const size_t b = sizeof(void *) * (g->g ? g->g : 1);
    CK(cudaMalloc((void **)&g->da, b));
    CK(cudaMalloc((void **)&g->db, b));
    CK(cudaMalloc((void **)&g->dc, b));
    CK(cudaMemcpy(g->da, g->a, b, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(g->db, g->b, b, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(g->dc, g->c, b, cudaMemcpyHostToDevice));
  }
  return G;
}

static void grouped_run(const grouped_t *G) {
  for (int q = 0; q < 6; q++) {
    const grouped_t *g = &G[q];
    if (!g->g) continue;
    CB(cublasGemmGroupedBatchedEx(h, g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->da, CUDA_R_16BF,
                                  g->lda, g->db, CUDA_R_16BF, g->ldb, g->beta, g->dc, CUDA_R_16BF,
                                  g->ldc, g->g, g->size, CUBLAS_COMPUTE_32F));
  }
}

static void grouped_free(grouped_t *G) {
  for (int q = 0; q < 6; q++) {
    grouped_t *g = &G[q];
    free(g->ta), free(g->tb), free(g->m), free(g->n), free(g->k), free(g->lda), free(g->ldb);
    free(g->ldc), free(g->size), free(g->alpha), free(g->beta), free(g->a), free(g->b), free(g->c);
    cudaFree(g->da), cudaFree(g->db), cudaFree(g->dc);
  }
  free(G);
}

/* rows per expert: `avg` each, or Zipf(1.2) shares of E * avg */
static void routing(int *n, int E, int avg, int zipf) {
  double sum = 0;
  for (int e = 0; e < E; e++) sum += zipf ? pow(e + 1, -1.2) : 1;
  int64_t total = (int64_t)E * avg, given = 0;
  for (int e = 0; e < E; e++) given += n[e] = (int)(total * (zipf ? pow(e + 1, -1.2) : 1) / sum);
  n[0] += (int)(total - given);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5, n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    printf("expert_gemm: skipped: no CUDA device\n");
    return 77;
  }
  CB(cublasCreate(&h));
  { /* R: the dense bf16 rate at 8192^3 */
    const int s = 8192;
    uint16_t *a = buf((size_t)s * s), *b = buf((size_t)s * s), *c = buf((size_t)s * s);
    float ms = median_ms(reps, [&] { gemm(0, 0, s, s, s, a, s, b, s, c, s, 0); });
    double R = 2.0 * s * s * (double)s / (ms * 1e-3) / 1e12;
    printf("R (bf16 GEMM %d^3) = %.1f TFLOP/s\n\n", s, R);
    printf("| D | F | E | routing | rows/expert (mean) | loop TFLOP/s | loop / R | grouped "
           "TFLOP/s | grouped / R |\n|---|---|---|---|---|---|---|---|---|\n");
    cudaFree(a), cudaFree(b), cudaFree(c);
    const int shapes[2][3] = {{4096, 14336, 8}, {2048, 1408, 64}};
    const int avgs[] = {128, 256, 512, 1024, 2048, 4096, 8192};
    for (int sh = 0; sh < 2; sh++)
      for (int zipf = 0; zipf < 2; zipf++)
        for (int ai = 0; ai < 7; ai++) {
          moe_t m = {shapes[sh][2], shapes[sh][0], shapes[sh][1], NULL, 0};
          m.n = (int *)calloc(m.E, sizeof(int));
          routing(m.n, m.E, avgs[ai], zipf);
          m.rows = (int64_t)m.E * avgs[ai];
          const size_t D = m.D, F = m.F, R_ = m.rows, E = m.E;
          if (R_ * 2 * F * 2 * 4 + E * 3 * F * D * 2 * 2 > ((size_t)100 << 30)) continue;
          m.x = buf(R_ * D), m.h13 = buf(R_ * 2 * F), m.act = buf(R_ * F), m.y = buf(R_ * D);
          m.dy = buf(R_ * D), m.dact = buf(R_ * F), m.dh13 = buf(R_ * 2 * F), m.dx = buf(R_ * D);
          m.w13 = buf(E * 2 * F * D), m.w2 = buf(E * D * F), m.dw13 = buf(E * 2 * F * D);
          m.dw2 = buf(E * D * F);
          const double flop = 18.0 * (double)R_ * D * F;
          float tl = median_ms(reps, [&] { loop(&m); });
          grouped_t *G = grouped_plan(&m);
          float tg = median_ms(reps, [&] { grouped_run(G); });
          grouped_free(G);
          double fl = flop / (tl * 1e-3) / 1e12, fg = flop / (tg * 1e-3) / 1e12;
          printf("| %d | %d | %d | %s | %d | %.1f | %.2f | %.1f | %.2f |\n", m.D, m.F, m.E,
                 zipf ? "Zipf 1.2" : "balanced", avgs[ai], fl, fl / R, fg, fg / R);
          fflush(stdout);
          uint16_t *all[] = {m.x, m.h13, m.act, m.y, m.dy, m.dact, m.dh13, m.dx, m.w13, m.w2,
                             m.dw13, m.dw2};
          for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cudaFree(all[i]);
          free(m.n);
        }
  }
  cublasDestroy(h);
  return 0;
}
