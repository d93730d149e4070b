/* moe.h: the sparse MoE block's pieces: router, dispatch plan, expert MLPs,
 * combine, and the router's auxiliary losses. Each is a forward/backward pair
 * of plain functions over arrays (Megatron-Core's split: the router decides,
 * the dispatcher moves tokens, the experts compute, model.c orchestrates).
 * These are the CPU backend's implementations; the model calls them
 * through the op table (backend.h).
 *
 * An expert's parameters are one flat vector of P = 3*F*D values:
 *   w1 (F, D) | w3 (F, D) | w2 (D, F)
 * so w1 and w3 together are one (2F, D) matrix, and an expert is one pointer
 * and a length (what the sharded optimizer and checkpoints move later). */
#ifndef SMOE_MOE_H
#define SMOE_MOE_H

#include "common.h"

static inline size_t smoe_expert_numel(int D, int F) { return 3 * (size_t)F * (size_t)D; }

/* In: probs holds router logits (N, E). Out: probs = softmax(logits), lse (N)
 * = logsumexp(logits), idx/gw (N, K) = the top-k experts by probs + bias
 * (bias (E) may be NULL; ties go to the lower index) and their probabilities
 * renormalised to sum to 1. Bias changes selection, never the gate values. */
void smoe_router_forward(real *probs, real *lse, int32_t *idx, real *gw, const real *bias, int N, int E,
                    int K);

/* Statistics for the aux losses, summed (not averaged) so that ranks can add
 * them: choice_counts (K, E) tokens whose k-th choice is e; prob_sum (E) sum of
 * probs over tokens; z_sum = sum of lse^2. Outputs are overwritten. */
void smoe_router_stats(int64_t *choice_counts, double *prob_sum, double *z_sum, const real *probs,
                  const real *lse, const int32_t *idx, int N, int E, int K);

/* Switch/HF load-balancing loss of one layer from global stats over n_tokens:
 * E * sum_k sum_e (count[k,e]/n) (prob_sum[e]/n). */
double smoe_router_aux_loss(const int64_t *choice_counts, const double *prob_sum, int64_t n_tokens,
                       int E, int K);

/* dlogits (N, E) = d(loss)/d(router logits), written, from: dgw (N, K) the
 * gradient of the gate weights; aux_dp (E) the aux loss gradient w.r.t. each
 * token's probs (coef * E * sum_k count[k,e] / n^2, same for every token);
 * z_scale = coef_z * 2 / n (times lse per token). */
void smoe_router_backward(real *dlogits, const real *probs, const real *lse, const int32_t *idx,
                     const real *gw, const real *dgw, const real *aux_dp, real z_scale, int N,
                     int E, int K);

/* xe[pos[n*K+k]] = x[n]: each expert's tokens become contiguous rows. In
 * these four functions pos[a] < 0 marks a dropped assignment (capacity):
 * it is skipped, and its gate weight gets no gradient. */
void smoe_moe_gather(real *xe, const real *x, const int *pos, int N, int K, int D);
/* dx[n] += sum_k dxe[pos[n*K+k]] */
void smoe_moe_gather_backward(real *dx, const real *dxe, const int *pos, int N, int K, int D);

/* out[n] += sum_k gw[n,k] * ye[pos[n*K+k]] */
void smoe_moe_combine(real *out, const real *ye, const real *gw, const int *pos, int N, int K, int D);
/* dye[pos] = gw * dout[n] (written); dgw[n,k] = dout[n] . ye[pos] (written). */
void smoe_moe_combine_backward(real *dye, real *dgw, const real *dout, const real *ye, const real *gw,
                          const int *pos, int N, int K, int D);

/* Expert MLPs on expert-sorted rows: for the rows [offsets[e], offsets[e+1])
 * of expert e with weights experts + e*P: h13 = xe [w1; w3]^T (rows, 2F),
 * act = silu(h1) * h3 (rows, F), ye = act w2^T (rows, D). */
void smoe_experts_forward(real *ye, real *h13, real *act, const real *xe, const real *experts,
                     const int *offsets, int E, int D, int F);
/* dxe (written), dexperts (+=), with scratch dh13 (rows, 2F) and dact (rows, F). */
void smoe_experts_backward(real *dxe, real *dexperts, real *dh13, real *dact, const real *dye,
                      const real *xe, const real *h13, const real *act, const real *experts,
                      const int *offsets, int E, int D, int F);

#endif
