/* ops.c: dense transformer ops, forward and backward, on the CPU.
 * Matmuls go to BLAS; everything else is plain loops split by OpenMP. */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "rows.h"

void smoe_gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
               const real *B, int ldb, real beta, real *C, int ldc) {
  if (M == 0 || N == 0) return;
#ifdef SMOE_REAL_DOUBLE
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void smoe_matmul_forward(real *out, const real *inp, const real *w, int N, int C, int OC) {
  smoe_gemm(0, 1, N, OC, C, 1, inp, C, w, C, 0, out, OC);
}

void smoe_matmul_backward(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                     int N, int C, int OC) {
  if (dinp) smoe_gemm(0, 0, N, C, OC, 1, dout, OC, w, C, 1, dinp, C);
  if (dw) smoe_gemm(1, 0, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
}

void smoe_embedding_forward(real *out, const int32_t *tokens, const real *table, int N, int D) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    memcpy(out + (size_t)n * D, table + (size_t)tokens[n] * D, sizeof(real) * (size_t)D);
}

void smoe_embedding_backward(real *dtable, const real *dout, const int32_t *tokens, int N, int D,
                        int V) {
  /* Rows of one token id may repeat, so split the work by feature columns. */
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int lo = D * id / nt, hi = D * (id + 1) / nt;
    for (int n = 0; n < N; n++) {
      real *dst = dtable + (size_t)tokens[n] * D;
      const real *src = dout + (size_t)n * D;
      for (int i = lo; i < hi; i++) dst[i] += src[i];
    }
  }
  (void)V;
}

void smoe_rmsnorm_forward(real *out, real *rstd, const real *inp, const real *w, int N, int D,
                     double eps) {
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const real *x = inp + (size_t)n * D;
    real *y = out + (size_t)n * D;
    real r = smoe_rmsnorm_rstd(x, D, eps);
    for (int i = 0; i < D; i++) y[i] = smoe_rmsnorm_y(w[i], x[i], r);
    rstd[n] = r;
  }
}

void smoe_rmsnorm_backward(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                      const real *rstd, int N, int D, smoe_arena_t *scratch) {
  /* y_i = w_i x_i r, r = (mean x^2 + eps)^-1/2:
   * dx_i = r (w_i dy_i) - x_i r^3 / D * sum_j w_j dy_j x_j;  dw_i = sum_n dy_i x_i r. */
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const real *x = inp + (size_t)n * D, *dy = dout + (size_t)n * D;
    real *dx = dinp + (size_t)n * D;
    real r = rstd[n];
    real c = smoe_rmsnorm_dcoef(x, dy, w, r, D);
    for (int i = 0; i < D; i++) dx[i] += smoe_rmsnorm_dx(r, w[i], dy[i], c, x[i]);
  }
  /* dw: each thread sums a fixed block of rows into its own row of partial
   * sums, then the partials are added in thread order (bitwise reproducible
   * for a given thread count; the CUDA op does the same with
   * smoe_rmsnorm_dw_blocks blocks) */
  int nt = omp_get_max_threads();
  size_t mark = smoe_arena_mark(scratch);
  double *acc = smoe_arena_zero(scratch, (size_t)nt * D, sizeof(double));
#pragma omp parallel num_threads(nt)
  {
    double *a = acc + (size_t)omp_get_thread_num() * D;
    int id = omp_get_thread_num(), lo = (int)((int64_t)N * id / nt), hi = (int)((int64_t)N * (id + 1) / nt);
    for (int n = lo; n < hi; n++) {
      const real *x = inp + (size_t)n * D, *dy = dout + (size_t)n * D;
      real r = rstd[n];
      for (int i = 0; i < D; i++) a[i] += smoe_rmsnorm_dw_term(dy[i], x[i], r);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < D; i++) dw[i] += (real)acc[(size_t)t * D + i];
  smoe_arena_release(scratch, mark);
}

void smoe_rope_tables(real *cos_t, real *sin_t, int T, int d, double theta) {
  int h = d / 2;
  for (int t = 0; t < T; t++)
    for (int j = 0; j < h; j++) {
      double inv_freq = 1.0 / pow(theta, (2.0 * j) / d);
      double a = t * inv_freq;
      cos_t[(size_t)t * h + j] = (real)cos(a);
      sin_t[(size_t)t * h + j] = (real)sin(a);
    }
}

/* rope(x) = x cos + rotate_half(x) sin, rotate_half(x) = (-x2, x1) for halves
 * (x1, x2): x1' = x1 c - x2 s, x2' = x2 c + x1 s. Its transpose (backward) is
 * the same rotation with -s. */
static void rope_apply(real *x, const real *cos_t, const real *sin_t, int N, int T, int nh, int d,
                       real sign) {
  int h = d / 2;
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const real *c = cos_t + (size_t)(n % T) * h, *s = sin_t + (size_t)(n % T) * h;
    for (int hd = 0; hd < nh; hd++) {
      real *x1 = x + ((size_t)n * nh + hd) * d, *x2 = x1 + h;
      for (int j = 0; j < h; j++) smoe_rope_pair(x1 + j, x2 + j, c[j], s[j], sign);
    }
  }
}

void smoe_rope_forward(real *x, const real *cos_t, const real *sin_t, int N, int T, int nh, int d) {
  rope_apply(x, cos_t, sin_t, N, T, nh, d, 1);
}

void smoe_rope_backward(real *dx, const real *cos_t, const real *sin_t, int N, int T, int nh, int d) {
  rope_apply(dx, cos_t, sin_t, N, T, nh, d, -1);
}

/* Attention runs one (sequence, head) at a time as small GEMMs, the heads
 * split over OpenMP threads; OpenBLAS's OpenMP build runs a call made inside
 * a parallel region on the calling thread. The causal T x T products are
 * computed whole (BLAS beats a triangular loop by far at these sizes) and
 * the upper triangle is masked to probability 0. */
void smoe_attention_forward(real *out, real *att, const real *q, const real *k, const real *v, int B,
                       int T, int H, int Hkv, int d) {
  const int qs = H * d, ks = Hkv * d, group = H / Hkv;
  const real scale = (real)(1.0 / sqrt((double)d));
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int b = 0; b < B; b++)
    for (int hd = 0; hd < H; hd++) {
      const int kh = hd / group;
      const real *qb = q + (size_t)b * T * qs + (size_t)hd * d;
      const real *kb = k + (size_t)b * T * ks + (size_t)kh * d;
      const real *vb = v + (size_t)b * T * ks + (size_t)kh * d;
      real *p = att + ((size_t)b * H + hd) * T * T;
      smoe_gemm(0, 1, T, T, d, scale, qb, qs, kb, ks, 0, p, T); /* scores = q k^T / sqrt(d) */
      for (int t = 0; t < T; t++) {
        real *row = p + (size_t)t * T, mx = row[0], sum = 0;
        for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j <= t; j++) sum += row[j] = r_exp(row[j] - mx);
        real inv = 1 / sum;
        for (int j = 0; j <= t; j++) row[j] *= inv;
        for (int j = t + 1; j < T; j++) row[j] = 0;
      }
      smoe_gemm(0, 0, T, d, T, 1, p, T, vb, ks, 0, out + (size_t)b * T * qs + (size_t)hd * d, qs);
    }
}

void smoe_attention_decode(real *out, real *att, const real *q, const real *k, const real *v, int n,
                           int H, int Hkv, int d) {
  const int ks = Hkv * d, group = H / Hkv;
  const real scale = (real)(1.0 / sqrt((double)d));
  for (int hd = 0; hd < H; hd++) {
    const real *kb = k + (size_t)(hd / group) * d, *vb = v + (size_t)(hd / group) * d;
    real *p = att + (size_t)hd * n, mx, sum = 0;
    smoe_gemm(0, 1, 1, n, d, scale, q + (size_t)hd * d, d, kb, ks, 0, p, n);
    mx = p[0];
    for (int j = 1; j < n; j++) mx = p[j] > mx ? p[j] : mx;
    for (int j = 0; j < n; j++) sum += p[j] = r_exp(p[j] - mx);
    real inv = 1 / sum;
    for (int j = 0; j < n; j++) p[j] *= inv;
    smoe_gemm(0, 0, 1, d, n, 1, p, n, vb, ks, 0, out + (size_t)hd * d, d);
  }
}

void smoe_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *att,
                        const real *q, const real *k, const real *v, int B, int T, int H, int Hkv,
                        int d, smoe_arena_t *scratch) {
  const int qs = H * d, ks = Hkv * d, group = H / Hkv;
  const real scale = (real)(1.0 / sqrt((double)d));
  /* One task per (sequence, kv head): it owns dk/dv rows of that head and the
   * dq rows of the query heads in its group, so no two tasks share an output. */
  int nt = omp_get_max_threads();
  size_t mark = smoe_arena_mark(scratch);
  real *dp_all = smoe_arena_take(scratch, smoe_mul(sizeof(real) * (size_t)nt * T, (size_t)T));
#pragma omp parallel num_threads(nt)
  {
    real *dp = dp_all + (size_t)omp_get_thread_num() * T * T; /* (T, T) of this thread */
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
      for (int kh = 0; kh < Hkv; kh++) {
        const real *kb = k + (size_t)b * T * ks + (size_t)kh * d;
        const real *vb = v + (size_t)b * T * ks + (size_t)kh * d;
        real *dkb = dk + (size_t)b * T * ks + (size_t)kh * d;
        real *dvb = dv + (size_t)b * T * ks + (size_t)kh * d;
        for (int hd = kh * group; hd < (kh + 1) * group; hd++) {
          const real *p = att + ((size_t)b * H + hd) * T * T;
          const real *go = dout + (size_t)b * T * qs + (size_t)hd * d;
          const real *qb = q + (size_t)b * T * qs + (size_t)hd * d;
          smoe_gemm(1, 0, T, d, T, 1, p, T, go, qs, 1, dvb, ks); /* dv += p^T dout */
          smoe_gemm(0, 1, T, T, d, 1, go, qs, vb, ks, 0, dp, T); /* dp = dout v^T */
          for (int t = 0; t < T; t++) { /* ds = p (dp - sum_j p dp) / sqrt(d) */
            const real *pr = p + (size_t)t * T;
            real *g = dp + (size_t)t * T, pdp = 0;
            for (int j = 0; j <= t; j++) pdp += pr[j] * g[j];
            for (int j = 0; j <= t; j++) g[j] = pr[j] * (g[j] - pdp) * scale;
            for (int j = t + 1; j < T; j++) g[j] = 0;
          }
          smoe_gemm(0, 0, T, d, T, 1, dp, T, kb, ks, 1,
                    dq + (size_t)b * T * qs + (size_t)hd * d, qs); /* dq += ds k */
          smoe_gemm(1, 0, T, d, T, 1, dp, T, qb, qs, 1, dkb, ks);  /* dk += ds^T q */
        }
      }
  }
  smoe_arena_release(scratch, mark);
}

double smoe_crossentropy_forward(real *logits, const int32_t *targets, int N, int V, int *n_valid,
                            smoe_arena_t *scratch) {
  size_t mark = smoe_arena_mark(scratch);
  double *nll = smoe_arena_take(scratch, sizeof(double) * (size_t)(N > 0 ? N : 1));
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    nll[n] = smoe_xent_row(logits + (size_t)n * V, V, targets[n]);
  }
  /* summed in order so the loss is the same for any thread count */
  double total = 0;
  int valid = 0;
  for (int n = 0; n < N; n++)
    if (targets[n] >= 0) total += nll[n], valid++;
  smoe_arena_release(scratch, mark);
  if (n_valid) *n_valid = valid;
  return valid ? total / valid : 0.0;
}

void smoe_crossentropy_backward(real *dlogits, const real *probs, const int32_t *targets, int N, int V,
                           real scale) {
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    real *g = dlogits + (size_t)n * V;
    const real *p = probs + (size_t)n * V;
    if (targets[n] < 0) {
      memset(g, 0, sizeof(real) * (size_t)V);
      continue;
    }
    for (int i = 0; i < V; i++) g[i] = scale * p[i];
    g[targets[n]] -= scale;
  }
}

double smoe_crossentropy(real *logits, const int32_t *targets, int N, int V, real scale,
                         int *n_valid, smoe_arena_t *scratch) {
  double loss = smoe_crossentropy_forward(logits, targets, N, V, n_valid, scratch);
  smoe_crossentropy_backward(logits, logits, targets, N, V, scale);
  return loss;
}
