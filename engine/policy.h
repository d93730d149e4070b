/* policy.h: the placement policies (placement.policy): which placement each
 * step uses, and whether a step's tokens are split over an expert's replicas
 * by the load-aware split. Decisions are pure and the same on every rank.
 *
 *   static    one replica per expert, fixed (expert e on rank e / (E/G))
 *   capacity  static, with tokens over each expert's capacity dropped
 *   random    a new random placement every step (tests)
 *   swiftmoe  greedy replica counts + balanced slots planned from the last
 *             step's loads, the optimal split of the current tokens, no drops
 *   symi      the paper as published: proportional counts + contiguous slots,
 *             tokens split evenly over replicas, drops over capacity */
#ifndef SMOE_POLICY_H
#define SMOE_POLICY_H

#include "placement.h"

typedef enum {
  SMOE_POLICY_STATIC = 0,
  SMOE_POLICY_CAPACITY,
  SMOE_POLICY_RANDOM,
  SMOE_POLICY_SWIFTMOE,
  SMOE_POLICY_SYMI
} smoe_policy_kind_t;

typedef struct {
  smoe_policy_kind_t kind;
  int L, E, G, S;
  uint64_t seed;
  double ema;    /* load smoothing: loads = ema * loads + (1 - ema) * this step's */
  double *loads; /* (L, E) the loads the next plan uses */
  int have_loads;
  int H;         /* swiftmoe: the last H of each rank's S slots are shadow slots, which
                    the plans leave empty (filled per step from its counts: shadow.h) */
  smoe_arena_t scratch; /* the planner's temporary arrays */
} smoe_policy_t;

/* Returns 0, or -1 with err naming the policy and the allowed ones. */
/* The policy called name, or -1 with err naming the choices. */
int smoe_policy_kind(const char *name, smoe_policy_kind_t *kind, smoe_err_t *err);
int smoe_policy_init(smoe_policy_t *p, const char *name, int L, int E, int G, int S,
                     uint64_t seed, double ema, smoe_err_t *err);
void smoe_policy_free(smoe_policy_t *p);
/* swiftmoe: keep the last H slots of each rank free for same-step shadows
 * (placement.shadow_slots); plans then use S - H slots per rank. */
void smoe_policy_shadow_slots(smoe_policy_t *p, int H);

/* The placement of step 0 into out (initialised for L, E, G, S). */
int smoe_policy_first(smoe_policy_t *p, smoe_placement_t *out, smoe_err_t *err);

/* The placement of step 0 planned from loads (L, E), e.g. a recorded run's
 * (placement.init_from): every policy's own planner, for static and capacity
 * one replica per expert packed by load (the greedy counts are then all 1,
 * the balanced slots put the heaviest first onto the least-loaded rank).
 * The random policy has no such placement: -1 with err. */
int smoe_policy_first_from(smoe_policy_t *p, const double *loads, smoe_placement_t *out,
                           smoe_err_t *err);

/* The placement of step `step` from the previous step's global loads
 * expert_counts (L, E) and per-source counts src (L, G, E) (or NULL). */
void smoe_policy_next(smoe_policy_t *p, const int64_t *expert_counts, const int64_t *src,
                      int64_t step, const smoe_placement_t *now, smoe_placement_t *next);

/* How a step's tokens reach the replicas: 0 = one route per (rank, expert),
 * 1 = the load-aware split, 2 = an even split (symi). */
int smoe_policy_split_mode(smoe_policy_kind_t kind);

/* Which routed tokens a step computes, the rest dropped: a rule decided here
 * from counts only; the model applies its quotas (smoe_capacity_keep) and
 * knows nothing of policies. */
typedef enum { SMOE_DROPS_NONE = 0, SMOE_DROPS_CAPACITY, SMOE_DROPS_SYMI } smoe_drops_kind_t;
typedef struct {
  smoe_drops_kind_t kind;
  double factor;        /* placement.capacity_factor */
  int64_t min_capacity; /* capacity: the least per expert per rank */
  int by_weight;        /* capacity: lowest gate weight dropped first (else by position) */
} smoe_drops_t;

/* The rule of a policy: capacity and symi drop, the others compute every
 * token. drop_order: "position" or "weight" (placement.drop_order). */
smoe_drops_t smoe_policy_drops(smoe_policy_kind_t kind, double factor, int64_t min_capacity,
                               const char *drop_order);

/* allowed (rows, E) <- how many of the tokens counted in counts (rows, E)
 * for each expert are computed; returns how many are dropped in all.
 *   capacity: rows = 1, this rank's counts of its n_tokens tokens; each
 *     expert keeps at most max(min_capacity, ceil(factor K n_tokens / E));
 *   symi: rows = G, every rank's counts, n_tokens the global batch's; expert
 *     e keeps replicas[e] x ceil(factor K n_tokens / (G S)), shared by the
 *     ranks in proportion to their counts, the remainder one each to the
 *     lower ranks;
 *   none: everything (allowed = counts). */
int64_t smoe_drops_quota(const smoe_drops_t *d, const int64_t *counts, int rows, int E, int K,
                         int64_t n_tokens, const int *replicas, int G, int S, int64_t *allowed);

/* The most rows one rank's S slots can receive in one MoE layer, when each
 * of the G ranks routes N tokens to K distinct experts each (E experts in
 * all); the expert activation and exchange buffers are sized by it:
 *   no drops (static, random, swiftmoe): G N min(K, S): a token sends a rank
 *     at most one row for each expert it chose, and the rank holds at most S
 *     distinct experts (any placement, any split);
 *   capacity: S G cap, cap = max(min_capacity, ceil(factor K N / E)): each
 *     slot receives at most cap rows from each rank;
 *   symi: S (ceil(factor K G N / (G S)) + G): the even split gives a slot
 *     its share of its expert's capacity, plus at most one row of remainder
 *     from each rank;
 * the smaller of the first and the policy's own. */
int64_t smoe_drops_rows_bound(const smoe_drops_t *d, int G, int S, int E, int K, int64_t N);

#endif
