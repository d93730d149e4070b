/* test_cuda_dense: the CUDA dense ops (cuda/ops_dense.cu) against their CPU
 * references (ops.h) on random inputs (fixed seeds), edge shapes (one row,
 * one column, T = 1, H = Hkv) and odd or realistic ones (N = 37, D = 33;
 * B 2, T 128, H 8, Hkv 2, d 32; V 257 with ignored targets): GEMM (the
 * four transpose cases), matmul forward and backward (with NULL outputs),
 * embedding, RMSNorm, RoPE, causal GQA attention
 * (both ways the heads are batched; and the decode step against a cache)
 * and cross-entropy, forward and
 * backward, and fused (the table's op: the gradient in place). Backward
 * outputs start at random values, so a kernel that writes where it should
 * add fails.
 *
 * Ops that share the CPU's row and element code and order (rows.h) must
 * give the same bits: embedding, RMSNorm (dw with the CPU on
 * smoe_rmsnorm_dw_blocks threads), RoPE, cross-entropy backward, and the
 * cross-entropy probabilities in float (in double the exp differs by an
 * ulp: 1e-12). The rest sums in other orders (cuBLAS, not OpenBLAS; warp
 * sums in the softmax): max |gpu - cpu| <= tol * (1 + max |cpu|) over the
 * output, with tol = 2e-6 sqrt(K) in float (K the longest reduction: a few
 * float ulps times its growth), 1e-12 in double; the loss within 1e-12
 * relative (the double log may differ by an ulp). The attention is also
 * run twice: the same bits. Without a usable device it prints why and
 * exits 77 (ctest: skipped). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda_ops.h"
#include "ops.h"
#include "rows.h"

static int failed;
static uint64_t seed = 42;

static real rnd(void) { /* uniform in [-1, 1) */
  seed = smoe_mix64(seed);
  return (real)((double)(seed >> 11) / 9007199254740992.0 * 2 - 1);
}
static real *rand_host(size_t n, double scale) {
  real *x = malloc(sizeof(real) * n + 1);
  for (size_t i = 0; i < n; i++) x[i] = (real)(scale * rnd());
  return x;
}
static void *to_dev(const void *host, size_t bytes) {
  void *d = smoe_cuda_alloc(bytes);
  smoe_cuda_to_device(d, host, bytes);
  return d;
}
static real *from_dev(const real *dev, size_t n) {
  real *x = malloc(sizeof(real) * n + 1);
  smoe_cuda_to_host(x, dev, sizeof(real) * n);
  return x;
}

#ifdef SMOE_REAL_DOUBLE
#define EXP_TOL 1e-12 /* glibc's and CUDA's double exp may differ by an ulp */
static double gemm_tol(double K) {
  (void)K;
  return 1e-12;
}
#else
#define EXP_TOL -1.0 /* the float exp is elem.h's polynomial: the same bits */
static double gemm_tol(double K) {
  return 2e-6 * sqrt(K > 1 ? K : 1);
}
#endif

/* got (host) against want (host): bitwise when tol < 0, else max |diff| <=
 * tol * (1 + max |want|); one line, PASS or FAIL */
static void check(const char *op, const char *shape, const real *got, const real *want, size_t n,
                  double tol) {
  double diff = 0, big = 0;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - (double)want[i]);
    if (!(e <= diff)) diff = e; /* NaN counts */
    if (fabs((double)want[i]) > big) big = fabs((double)want[i]);
    if (memcmp(got + i, want + i, sizeof(real)) != 0 && bad++ == 0) first = i;
  }
  int ok = tol < 0 ? bad == 0 : diff <= tol * (1 + big);
  printf("%-20s %-30s max|diff| %-10.3g ", op, shape, diff);
  if (tol < 0)
    printf("(bitwise: %zu differ) ", bad);
  else
    printf("(bound %.3g) ", tol * (1 + big));
  printf("%s\n", ok ? "PASS" : "FAIL");
  if (!ok && bad)
    printf("    first difference at [%zu]: %.17g vs CPU %.17g\n", first, (double)got[first],
           (double)want[first]);
  failed += !ok;
}

/* the device buffer d (n) against want; frees the host copy */
static void check_dev(const char *op, const char *shape, const real *d, const real *want, size_t n,
                      double tol) {
  real *got = from_dev(d, n);
  check(op, shape, got, want, n, tol);
  free(got);
}

static void test_gemm(int M, int N, int K) {
  char shape[64];
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      int lda = ta ? M : K, ldb = tb ? K : N;
      real *A = rand_host((size_t)M * K, 1), *B = rand_host((size_t)K * N, 1),
           *C = rand_host((size_t)M * N, 1);
      real *dA = to_dev(A, sizeof(real) * M * K), *dB = to_dev(B, sizeof(real) * K * N),
           *dC = to_dev(C, sizeof(real) * M * N);
      smoe_gemm(ta, tb, M, N, K, (real)0.7, A, lda, B, ldb, (real)0.3, C, N);
      smoe_cuda_gemm(ta, tb, M, N, K, (real)0.7, dA, lda, dB, ldb, (real)0.3, dC, N);
      snprintf(shape, sizeof shape, "M%d N%d K%d t%d%d", M, N, K, ta, tb);
      check_dev("gemm", shape, dC, C, (size_t)M * N, gemm_tol(K));
      smoe_cuda_free(dA), smoe_cuda_free(dB), smoe_cuda_free(dC);
      free(A), free(B), free(C);
    }
}

#ifndef SMOE_REAL_DOUBLE
/* training.dtype = bf16: the operands rounded to bf16 (elem.h's rounding,
 * the reference rounds them the same way on the host), products summed in
 * fp32: within the fp32 GEMM's bound of the CPU's GEMM on the rounded
 * operands; and far from the unrounded product, so the rounding happened */
static void test_gemm_bf16(int M, int N, int K) {
  char shape[64];
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      int lda = ta ? M : K, ldb = tb ? K : N;
      real *A = rand_host((size_t)M * K, 1), *B = rand_host((size_t)K * N, 1),
           *C = rand_host((size_t)M * N, 1), *C32 = malloc(sizeof(real) * M * N + 1);
      memcpy(C32, C, sizeof(real) * M * N);
      real *dA = to_dev(A, sizeof(real) * M * K), *dB = to_dev(B, sizeof(real) * K * N),
           *dC = to_dev(C, sizeof(real) * M * N);
      smoe_gemm(ta, tb, M, N, K, (real)0.7, A, lda, B, ldb, (real)0.3, C32, N);
      for (size_t i = 0; i < (size_t)M * K; i++) A[i] = smoe_bf16_round(A[i]);
      for (size_t i = 0; i < (size_t)K * N; i++) B[i] = smoe_bf16_round(B[i]);
      smoe_gemm(ta, tb, M, N, K, (real)0.7, A, lda, B, ldb, (real)0.3, C, N);
      smoe_cuda_set_bf16(1);
      smoe_cuda_gemm(ta, tb, M, N, K, (real)0.7, dA, lda, dB, ldb, (real)0.3, dC, N);
      smoe_cuda_set_bf16(0);
      snprintf(shape, sizeof shape, "M%d N%d K%d t%d%d", M, N, K, ta, tb);
      check_dev("gemm bf16", shape, dC, C, (size_t)M * N, gemm_tol(K));
      double far = 0;
      for (size_t i = 0; i < (size_t)M * N; i++) far = fmax(far, fabs((double)C[i] - C32[i]));
      int rounded = K < 8 || far > 1e-4;
      printf("%-24s %-22s bf16 vs fp32 product: max diff %.3g %s\n", "gemm bf16 rounding", shape,
             far, rounded ? "PASS" : "FAIL (no rounding seen)");
      failed += !rounded;
      smoe_cuda_free(dA), smoe_cuda_free(dB), smoe_cuda_free(dC);
      free(A), free(B), free(C), free(C32);
    }
}
#endif

static void test_matmul(int N, int C, int OC) {
  char shape[64];
  snprintf(shape, sizeof shape, "N%d C%d OC%d", N, C, OC);
  size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
  real *inp = rand_host(ni, 1), *w = rand_host(nw, 1), *out = rand_host(no, 1);
  real *dout = rand_host(no, 1), *dinp = rand_host(ni, 1), *dw = rand_host(nw, 1);
  real *d_inp = to_dev(inp, sizeof(real) * ni), *d_w = to_dev(w, sizeof(real) * nw),
       *d_out = to_dev(out, sizeof(real) * no), *d_dout = to_dev(dout, sizeof(real) * no),
       *d_dinp = to_dev(dinp, sizeof(real) * ni), *d_dw = to_dev(dw, sizeof(real) * nw);
  smoe_matmul_forward(out, inp, w, N, C, OC);
  smoe_cuda_matmul_forward(d_out, d_inp, d_w, N, C, OC);
  check_dev("matmul_forward", shape, d_out, out, no, gemm_tol(C));
  smoe_matmul_backward(dinp, dw, dout, inp, w, N, C, OC);
  smoe_cuda_matmul_backward(d_dinp, d_dw, d_dout, d_inp, d_w, N, C, OC);
  check_dev("matmul_backward dinp", shape, d_dinp, dinp, ni, gemm_tol(OC));
  check_dev("matmul_backward dw", shape, d_dw, dw, nw, gemm_tol(N));
  /* either output may be NULL: the other still accumulates */
  smoe_matmul_backward(NULL, dw, dout, inp, w, N, C, OC);
  smoe_cuda_matmul_backward(NULL, d_dw, d_dout, d_inp, d_w, N, C, OC);
  smoe_matmul_backward(dinp, NULL, dout, inp, w, N, C, OC);
  smoe_cuda_matmul_backward(d_dinp, NULL, d_dout, d_inp, d_w, N, C, OC);
  check_dev("matmul_backward NULL", shape, d_dinp, dinp, ni, gemm_tol(2.0 * OC));
  check_dev("matmul_backward NULL", shape, d_dw, dw, nw, gemm_tol(2.0 * N));
  smoe_cuda_free(d_inp), smoe_cuda_free(d_w), smoe_cuda_free(d_out), smoe_cuda_free(d_dout);
  smoe_cuda_free(d_dinp), smoe_cuda_free(d_dw);
  free(inp), free(w), free(out), free(dout), free(dinp), free(dw);
}

static void test_embedding(int N, int D, int V) {
  char shape[64];
  snprintf(shape, sizeof shape, "N%d D%d V%d", N, D, V);
  int32_t *tok = malloc(sizeof(int32_t) * N);
  for (int n = 0; n < N; n++) /* repeats: ids from a few, some rows the same id */
    tok[n] = (int32_t)(smoe_mix64(seed + (uint64_t)n) % (uint64_t)(n % 3 ? V : (V + 3) / 4));
  real *table = rand_host((size_t)V * D, 1), *out = rand_host((size_t)N * D, 1);
  real *dout = rand_host((size_t)N * D, 1), *dtable = rand_host((size_t)V * D, 1);
  int32_t *d_tok = to_dev(tok, sizeof(int32_t) * N);
  real *d_table = to_dev(table, sizeof(real) * V * D), *d_out = to_dev(out, sizeof(real) * N * D),
       *d_dout = to_dev(dout, sizeof(real) * N * D),
       *d_dtable = to_dev(dtable, sizeof(real) * V * D);
  smoe_embedding_forward(out, tok, table, N, D);
  smoe_cuda_embedding_forward(d_out, d_tok, d_table, N, D);
  check_dev("embedding_forward", shape, d_out, out, (size_t)N * D, -1);
  smoe_embedding_backward(dtable, dout, tok, N, D, V);
  smoe_cuda_embedding_backward(d_dtable, d_dout, d_tok, N, D, V);
  check_dev("embedding_backward", shape, d_dtable, dtable, (size_t)V * D, -1);
  smoe_cuda_free(d_tok), smoe_cuda_free(d_table), smoe_cuda_free(d_out), smoe_cuda_free(d_dout);
  smoe_cuda_free(d_dtable);
  free(tok), free(table), free(out), free(dout), free(dtable);
}

static void test_rmsnorm(int N, int D, smoe_arena_t *arena) {
  char shape[64];
  snprintf(shape, sizeof shape, "N%d D%d", N, D);
  size_t n = (size_t)N * D;
  real *inp = rand_host(n, 2), *w = rand_host(D, 1), *out = rand_host(n, 1),
       *rstd = rand_host(N, 1);
  real *dout = rand_host(n, 1), *dinp = rand_host(n, 1), *dw = rand_host(D, 1);
  real *d_inp = to_dev(inp, sizeof(real) * n), *d_w = to_dev(w, sizeof(real) * D),
       *d_out = to_dev(out, sizeof(real) * n), *d_rstd = to_dev(rstd, sizeof(real) * N),
       *d_dout = to_dev(dout, sizeof(real) * n), *d_dinp = to_dev(dinp, sizeof(real) * n),
       *d_dw = to_dev(dw, sizeof(real) * D);
  smoe_rmsnorm_forward(out, rstd, inp, w, N, D, 1e-5);
  smoe_cuda_rmsnorm_forward(d_out, d_rstd, d_inp, d_w, N, D, 1e-5);
  check_dev("rmsnorm_forward out", shape, d_out, out, n, -1);
  check_dev("rmsnorm_forward rstd", shape, d_rstd, rstd, N, -1);
  /* the CPU's dw partial sums are per thread: as many as the GPU's blocks */
  int threads = omp_get_max_threads();
  omp_set_num_threads(smoe_rmsnorm_dw_blocks(N, D));
  smoe_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, D, arena);
  omp_set_num_threads(threads);
  smoe_cuda_rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, D, NULL);
  check_dev("rmsnorm_backward dinp", shape, d_dinp, dinp, n, -1);
  check_dev("rmsnorm_backward dw", shape, d_dw, dw, D, -1);
  smoe_cuda_free(d_inp), smoe_cuda_free(d_w), smoe_cuda_free(d_out), smoe_cuda_free(d_rstd);
  smoe_cuda_free(d_dout), smoe_cuda_free(d_dinp), smoe_cuda_free(d_dw);
  free(inp), free(w), free(out), free(rstd), free(dout), free(dinp), free(dw);
}

static void test_rope(int N, int T, int nh, int d) {
  char shape[80];
  snprintf(shape, sizeof shape, "N%d T%d nh%d d%d", N, T, nh, d);
  size_t n = (size_t)N * nh * d, nt = (size_t)T * (d / 2);
  real *cos_t = malloc(sizeof(real) * nt + 1), *sin_t = malloc(sizeof(real) * nt + 1);
  smoe_rope_tables(cos_t, sin_t, T, d, 10000.0);
  real *x = rand_host(n, 1);
  real *d_x = to_dev(x, sizeof(real) * n);
  real *d_cos = to_dev(cos_t, sizeof(real) * nt), *d_sin = to_dev(sin_t, sizeof(real) * nt);
  const real *c = d_cos, *s = d_sin;
  smoe_rope_forward(x, cos_t, sin_t, N, T, nh, d);
  smoe_cuda_rope_forward(d_x, c, s, N, T, nh, d);
  check_dev("rope_forward", shape, d_x, x, n, -1);
  smoe_rope_backward(x, cos_t, sin_t, N, T, nh, d);
  smoe_cuda_rope_backward(d_x, c, s, N, T, nh, d);
  check_dev("rope_backward", shape, d_x, x, n, -1);
  smoe_cuda_free(d_x), smoe_cuda_free(d_cos), smoe_cuda_free(d_sin);
  free(cos_t), free(sin_t), free(x);
}

/* One new query per head against n cached positions (sampling). */
static void test_attention_decode(int n, int H, int Hkv, int d) {
  char shape[80];
  snprintf(shape, sizeof shape, "n%d H%d Hkv%d d%d", n, H, Hkv, d);
  size_t nq = (size_t)H * d, nk = (size_t)n * Hkv * d, na = (size_t)H * n;
  real *q = rand_host(nq, 1), *k = rand_host(nk, 1), *v = rand_host(nk, 1);
  real *out = rand_host(nq, 1), *att = rand_host(na, 1);
  real *d_q = to_dev(q, sizeof(real) * nq), *d_k = to_dev(k, sizeof(real) * nk),
       *d_v = to_dev(v, sizeof(real) * nk), *d_out = to_dev(out, sizeof(real) * nq),
       *d_att = to_dev(att, sizeof(real) * na);
  const double tol = gemm_tol((double)n + d);
  smoe_attention_decode(out, att, q, k, v, n, H, Hkv, d);
  smoe_cuda_attention_decode(d_out, d_att, d_q, d_k, d_v, n, H, Hkv, d);
  check_dev("attention_decode out", shape, d_out, out, nq, tol);
  check_dev("attention_decode att", shape, d_att, att, na, tol);
  smoe_cuda_free(d_q), smoe_cuda_free(d_k), smoe_cuda_free(d_v), smoe_cuda_free(d_out),
      smoe_cuda_free(d_att);
  free(q), free(k), free(v), free(out), free(att);
}

static void test_attention(int B, int T, int H, int Hkv, int d, smoe_arena_t *arena) {
  char shape[80];
  snprintf(shape, sizeof shape, "B%d T%d H%d Hkv%d d%d", B, T, H, Hkv, d);
  size_t nq = (size_t)B * T * H * d, nk = (size_t)B * T * Hkv * d, na = (size_t)B * H * T * T;
  real *q = rand_host(nq, 1), *k = rand_host(nk, 1), *v = rand_host(nk, 1);
  real *out = rand_host(nq, 1), *att = rand_host(na, 1), *dout = rand_host(nq, 1);
  real *dq = rand_host(nq, 1), *dk = rand_host(nk, 1), *dv = rand_host(nk, 1);
  real *d_q = to_dev(q, sizeof(real) * nq), *d_k = to_dev(k, sizeof(real) * nk),
       *d_v = to_dev(v, sizeof(real) * nk), *d_out = to_dev(out, sizeof(real) * nq),
       *d_att = to_dev(att, sizeof(real) * na), *d_dout = to_dev(dout, sizeof(real) * nq),
       *d_dq = to_dev(dq, sizeof(real) * nq), *d_dk = to_dev(dk, sizeof(real) * nk),
       *d_dv = to_dev(dv, sizeof(real) * nk);
  /* the starting gradients again, for the second (determinism) run */
  real *d_dq2 = to_dev(dq, sizeof(real) * nq), *d_dk2 = to_dev(dk, sizeof(real) * nk),
       *d_dv2 = to_dev(dv, sizeof(real) * nk);
  const double tol = gemm_tol((double)T * (H / Hkv) + d);

  smoe_attention_forward(out, att, q, k, v, B, T, H, Hkv, d);
  smoe_cuda_attention_forward(d_out, d_att, d_q, d_k, d_v, B, T, H, Hkv, d);
  check_dev("attention_forward out", shape, d_out, out, nq, tol);
  real *g_att = from_dev(d_att, na);
  check("attention_forward att", shape, g_att, att, na, tol);
  size_t above = 0; /* the upper triangle: probability exactly 0 */
  for (size_t r = 0; r < (size_t)B * H * T; r++)
    for (int j = (int)(r % T) + 1; j < T; j++) above += g_att[r * T + j] != 0;
  printf("%-20s %-30s %zu nonzero above the diagonal %s\n", "attention_forward", shape, above,
         above ? "FAIL" : "PASS");
  failed += above != 0;

  smoe_attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, H, Hkv, d, arena);
  smoe_cuda_attention_backward(d_dq, d_dk, d_dv, d_dout, d_att, d_q, d_k, d_v, B, T, H, Hkv, d,
                               NULL);
  check_dev("attention_backward dq", shape, d_dq, dq, nq, tol);
  check_dev("attention_backward dk", shape, d_dk, dk, nk, tol);
  check_dev("attention_backward dv", shape, d_dv, dv, nk, tol);

  /* determinism: forward and backward again give the same bits */
  real *g_out = from_dev(d_out, nq), *g_dq = from_dev(d_dq, nq), *g_dk = from_dev(d_dk, nk),
       *g_dv = from_dev(d_dv, nk);
  smoe_cuda_attention_forward(d_out, d_att, d_q, d_k, d_v, B, T, H, Hkv, d);
  smoe_cuda_attention_backward(d_dq2, d_dk2, d_dv2, d_dout, d_att, d_q, d_k, d_v, B, T, H, Hkv, d,
                               NULL);
  check_dev("attention rerun out", shape, d_out, g_out, nq, -1);
  check_dev("attention rerun att", shape, d_att, g_att, na, -1);
  check_dev("attention rerun dq", shape, d_dq2, g_dq, nq, -1);
  check_dev("attention rerun dk", shape, d_dk2, g_dk, nk, -1);
  check_dev("attention rerun dv", shape, d_dv2, g_dv, nk, -1);

  real *dev[] = {d_q, d_k, d_v, d_out, d_att, d_dout, d_dq, d_dk, d_dv, d_dq2, d_dk2, d_dv2};
  for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) smoe_cuda_free(dev[i]);
  real *host[] = {q, k, v, out, att, dout, dq, dk, dv, g_att, g_out, g_dq, g_dk, g_dv};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
}

/* targets: every `skip`-th row -1 (0: none), all -1 when skip is 1 */
static void test_crossentropy(int N, int V, int skip, int with_count, smoe_arena_t *arena) {
  char shape[80];
  snprintf(shape, sizeof shape, "N%d V%d skip%d%s", N, V, skip, with_count ? "" : " n_valid NULL");
  size_t n = (size_t)N * V;
  int32_t *tgt = malloc(sizeof(int32_t) * N);
  for (int r = 0; r < N; r++)
    tgt[r] = skip && r % skip == 0 ? -1 : (int32_t)(smoe_mix64(seed + (uint64_t)r) % (uint64_t)V);
  real *logits = rand_host(n, 4), *dlogits = rand_host(n, 1);
  real *d_logits = to_dev(logits, sizeof(real) * n), *d_dlogits = to_dev(dlogits, sizeof(real) * n);
  int32_t *d_tgt = to_dev(tgt, sizeof(int32_t) * N);
  int valid = -1, d_valid = -2;
  double loss = smoe_crossentropy_forward(logits, tgt, N, V, &valid, arena);
  double d_loss =
      smoe_cuda_crossentropy_forward(d_logits, d_tgt, N, V, with_count ? &d_valid : NULL, NULL);
  if (!with_count) d_valid = valid;
  check_dev("crossentropy probs", shape, d_logits, logits, n, EXP_TOL);
  double rel = fabs(d_loss - loss) / (fabs(loss) > 1e-300 ? fabs(loss) : 1);
  int ok = rel <= 1e-12 && d_valid == valid;
  printf("%-20s %-30s loss %.17g vs CPU %.17g (rel %.3g, bound 1e-12), valid %d vs %d %s\n",
         "crossentropy loss", shape, d_loss, loss, rel, d_valid, valid, ok ? "PASS" : "FAIL");
  failed += !ok;
  /* backward from the CPU's probabilities on both sides: written, not added */
  smoe_cuda_to_device(d_logits, logits, sizeof(real) * n);
  real scale = (real)(1.0 / (valid > 0 ? valid : 1));
  smoe_crossentropy_backward(dlogits, logits, tgt, N, V, scale);
  smoe_cuda_crossentropy_backward(d_dlogits, d_logits, d_tgt, N, V, scale);
  check_dev("crossentropy_backward", shape, d_dlogits, dlogits, n, -1);
  /* the fused op of the table on fresh logits: loss and gradient in place */
  real *fresh = rand_host(n, 4);
  smoe_cuda_to_device(d_logits, fresh, sizeof(real) * n);
  int fv = -1;
  double fl = smoe_cuda_crossentropy(d_logits, d_tgt, N, V, scale, &fv, NULL);
  double cl = smoe_crossentropy(fresh, tgt, N, V, scale, &valid, arena);
  check_dev("crossentropy fused", shape, d_logits, fresh, n, EXP_TOL);
  rel = fabs(fl - cl) / (fabs(cl) > 1e-300 ? fabs(cl) : 1);
  ok = rel <= 1e-12 && fv == valid;
  printf("%-20s %-30s loss rel %.3g (bound 1e-12), valid %d vs %d %s\n", "crossentropy fused",
         shape, rel, fv, valid, ok ? "PASS" : "FAIL");
  failed += !ok;
  smoe_cuda_free(d_logits), smoe_cuda_free(d_dlogits), smoe_cuda_free(d_tgt);
  free(tgt), free(logits), free(dlogits), free(fresh);
}

int main(void) {
  char why[256];
  if (!smoe_cuda_available(0, why, sizeof why)) {
    printf("test_cuda_dense: skipped: %s\n", why);
    return 77;
  }
  smoe_arena_t arena = {0};
  printf("test_cuda_dense (%s)\n", SMOE_REAL_NAME);

  test_gemm(1, 1, 1);
  test_gemm(37, 33, 29);
  test_gemm(64, 128, 96);
#ifndef SMOE_REAL_DOUBLE
  test_gemm_bf16(1, 1, 1);
  test_gemm_bf16(64, 128, 96);
#endif

  test_matmul(1, 1, 1);
  test_matmul(37, 33, 29);
  test_matmul(256, 128, 96);

  test_embedding(1, 1, 1);
  test_embedding(37, 33, 11);
  test_embedding(256, 64, 257);
  test_embedding(300, 3, 50000); /* few columns: many id ranges */

  test_rmsnorm(1, 1, &arena);
  test_rmsnorm(37, 33, &arena);
  test_rmsnorm(256, 128, &arena);
  test_rmsnorm(5, 1000, &arena);

  test_rope(1, 1, 1, 2);
  test_rope(37, 37, 3, 34);
  test_rope(74, 37, 3, 34);
  test_rope(256, 128, 8, 32);

  /* heads over sequences when H <= B * (H / Hkv), else kv heads per (sequence, group slot) */
  test_attention(1, 1, 1, 1, 1, &arena);
  test_attention(3, 9, 2, 2, 8, &arena);    /* H = Hkv, over sequences */
  test_attention(2, 5, 3, 3, 4, &arena);    /* H = Hkv, over kv heads */
  test_attention(1, 37, 4, 1, 33, &arena);  /* H = 4 Hkv, over sequences */
  test_attention(1, 21, 6, 2, 8, &arena);   /* H = 3 Hkv, over kv heads */
  test_attention(2, 128, 8, 2, 32, &arena); /* realistic */
  test_attention_decode(1, 1, 1, 1);
  test_attention_decode(37, 4, 1, 33); /* H = 4 Hkv */
  test_attention_decode(100, 6, 2, 8); /* H = 3 Hkv, more than a warp of positions */
  test_attention_decode(128, 8, 8, 32);

  test_crossentropy(1, 1, 0, 1, &arena);
  test_crossentropy(37, 33, 5, 1, &arena);
  test_crossentropy(5, 7, 1, 1, &arena); /* no row counts */
  test_crossentropy(256, 257, 7, 1, &arena);
  test_crossentropy(64, 257, 3, 0, &arena);

  smoe_arena_free(&arena);
  printf("test_cuda_dense: %s\n", failed ? "FAILED" : "all passed");
  return failed ? 1 : 0;
}
