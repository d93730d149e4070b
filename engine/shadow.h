/* shadow.h: hedged replica counts and same-step shadows for one MoE layer:
 * two ways to stay balanced when a cold expert suddenly turns hot, which a
 * plan made from the previous step's loads cannot foresee (it gave the
 * expert one replica, so one rank computes all of its tokens). Pure
 * functions over arrays: no MPI, no I/O, no globals; the same inputs give
 * the same result on every rank.
 *
 * Sizes and layouts as in plan.h and split.h: E experts, G ranks of S
 * slots, slot_expert (G*S) with -1 for an empty slot, counts (G*E) this
 * step's tokens from each source rank to each expert. */
#ifndef SMOE_SHADOW_H
#define SMOE_SHADOW_H

#include "arena.h"
#include "common.h"

/* Hedged planning loads: out_e = mean_e + z * sqrt(var_e), where mean and
 * var are an expert's recent load and its variance (EMAs over steps, see
 * smoe_hedge_update). An expert whose load swings is planned for its peaks,
 * not its mean, so that a swing back up lands on several ranks; a steady one
 * (var 0) is planned as before. z = 0: out = mean. */
void smoe_hedge_loads(const double *mean, const double *var, int E, double z, double *out);
/* One step's loads x (E) into the EMAs (decay ema in [0, 1)): the variance
 * of x around the mean before the update, then the mean. first != 0: the
 * first step (mean = x, var = 0). */
void smoe_hedge_update(double *mean, double *var, const double *x, int E, double ema, int first);

/* The cost model of shadows, in seconds: row_s, what a rank spends per token
 * row it computes (forward and backward); shadow_s, what receiving a
 * shadow's weights before the layer's expert compute (and sending its
 * gradient back after) adds to the shadow's rank; slice_s, what one more
 * shadow adds to every other rank. In swiftmoe every rank holds 1/G of each
 * expert's weights (its optimizer shard), so a shadow's weights come as G
 * slices from G ranks and its gradient goes back the same way: shadows on
 * different ranks move in parallel, each rank receiving at most one per
 * shadow slot. So a layer with n shadows takes about
 *     max_rows(n) * row_s + (n > 0 ? shadow_s : 0) + n * slice_s
 * where max_rows is the most token rows any rank computes. */
typedef struct {
  double row_s, shadow_s, slice_s;
} smoe_shadow_cost_t;

/* Same-step shadows (FasterMoE's shadowing, decided from the exact counts):
 * an extra replica of an expert for this step only, in one of H shadow
 * slots per rank. None when even a perfect balance (the slowest rank at the
 * mean) would not pay for one shadow. Otherwise greedy, one at a time: the expert with the most tokens
 * per replica (the split levels each expert's replicas, so that one bounds
 * the slowest rank; ties: the lower index), onto the least-loaded rank under
 * the load-aware split (smoe_split) of the placement so far (then the lower)
 * with a free shadow slot and no replica of that expert (none: the next
 * expert). A shadow is kept while the rows it saves on the slowest rank pay
 * for its marginal term (slice_s); one that does not is undone and the next
 * expert tried (the slowest rank may be slow for another expert's tokens),
 * and 8 such in a row, or no expert that can take another, end the search.
 * Then the prefix of kept shadows with the lowest estimate is kept, none
 * when no prefix beats no shadow (the first one also pays shadow_s). So by
 * this estimate shadows never make the
 * step slower. Output slot_all (G*(S+H)): rank g's S planned slots then its
 * H shadow slots (-1 where none), a placement of S + H slots per rank that
 * the split and the exchanges take as it is. Returns the number of shadows. */
int smoe_shadow_plan(const int64_t *counts, const int *slot_expert, int E, int G, int S, int H,
                     const smoe_shadow_cost_t *cost, int *slot_all, smoe_arena_t *a);

#endif
