/* optim.c: AdamW, schedule and clipping. */
#include "optim.h"

#include <math.h>

#include "elem.h"

#ifdef SMOE_REAL_DOUBLE
#define adamw_elem smoe_adamw_elem_f64
#else
#define adamw_elem smoe_adamw_elem_f32
#endif

void smoe_adamw_step(real *p, const real *g, real *m, real *v, size_t n, const smoe_adamw_t *o,
                     int64_t t) {
  const double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
  const real decay = (real)(1.0 - o->lr * o->weight_decay), step = (real)(o->lr / bc1),
             b1 = (real)o->beta1, b2 = (real)o->beta2, sbc2 = (real)sqrt(bc2), eps = (real)o->eps;
#pragma omp parallel for
  for (size_t i = 0; i < n; i++) adamw_elem(p + i, g[i], m + i, v + i, decay, step, b1, b2, sbc2, eps);
}

double smoe_lr_at(int64_t step, int64_t warmup, int64_t total, double lr, double min_lr) {
  if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
  if (total <= warmup) return lr;
  double progress = (double)(step - warmup) / (double)(total - warmup);
  if (progress > 1) progress = 1;
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * progress));
}

double smoe_sumsq(const real *x, size_t n) {
  /* fixed blocks summed in block order: the same result for any thread
   * count; the partial sums of up to GROUP blocks at a time on the stack */
  enum { BLOCK = 4096, GROUP = 256 };
  const size_t nb = (n + BLOCK - 1) / BLOCK;
  double part[GROUP], s = 0;
  for (size_t b0 = 0; b0 < nb; b0 += GROUP) {
    const size_t gb = nb - b0 < GROUP ? nb - b0 : GROUP;
#pragma omp parallel for
    for (size_t b = 0; b < gb; b++) {
      size_t lo = (b0 + b) * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
      double t = 0;
      for (size_t i = lo; i < hi; i++) t += (double)x[i] * x[i];
      part[b] = t;
    }
    for (size_t b = 0; b < gb; b++) s += part[b];
  }
  return s;
}

void smoe_scale(real *x, size_t n, real s) {
#pragma omp parallel for
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

double smoe_clip_factor(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  double f = max_norm / (norm + 1e-6);
  return f < 1.0 ? f : 1.0;
}
