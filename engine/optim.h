/* optim.h: AdamW with torch.optim.AdamW's exact semantics, the learning-rate
 * schedule, and global-norm gradient clipping, over flat buffers. */
#ifndef SMOE_OPTIM_H
#define SMOE_OPTIM_H

#include "common.h"

typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
} smoe_adamw_t;

/* One AdamW step (t counts from 1) on n parameters:
 *   p -= lr*wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)              */
void smoe_adamw_step(real *p, const real *g, real *m, real *v, size_t n, const smoe_adamw_t *o,
                     int64_t t);

/* Linear warmup from lr/warmup to lr over `warmup` steps, then cosine decay to
 * min_lr at step `total`; step counts from 0. */
double smoe_lr_at(int64_t step, int64_t warmup, int64_t total, double lr, double min_lr);

/* Sum of squares of x (double accumulation). */
double smoe_sumsq(const real *x, size_t n);

/* Multiplies x by s. */
void smoe_scale(real *x, size_t n, real s);

/* clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0. */
double smoe_clip_factor(double norm, double max_norm);

#endif
