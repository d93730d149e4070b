/* whatif.h: what a placement policy would have done on recorded loads
 * (`swiftmoe ckpt replay --policy`). Pure functions over arrays: no MPI, no
 * I/O. The engine's own planner (plan.h), policies (policy.h), split
 * (split.h) and drop rules are called, never re-implemented; eplb and
 * flexmoe are the published schemes built from the same parts.
 *
 * Input: per recorded step, the tokens each rank routed to each expert of
 * each layer (before any drop). Each policy plans step t's placement from
 * what it has seen up to step t - 1 (as training does), then computes step
 * t's tokens under that placement: which are dropped, how they are split
 * over replicas, how many each rank computes, and the bytes moved.
 *
 * The policies (S slots per rank: E/G for static and capacity, else p.S or
 * the engine's adaptive default, smoe_slots_per_rank):
 *   static    smoe_placement_static (E divisible by G), every token to its
 *             expert's one replica, no drops. Placed, like capacity, symi
 *             and swiftmoe, by the engine's smoe_policy_t.
 *   capacity  static; each rank keeps at most max(4, ceil(F K N / E)) of its
 *             tokens for each expert (smoe_drops_quota, rows = 1 per rank;
 *             4 = the engine's placement.min_capacity default).
 *   symi, swiftmoe
 *             the engine's smoe_policy_t exactly as step.c drives it: step 0
 *             from smoe_policy_first, step t from smoe_policy_next on step
 *             t - 1's global counts and routed per-rank counts; symi's drops
 *             (smoe_drops_quota, rows = G, the global batch G N) and even
 *             split, swiftmoe's optimal split (smoe_policy_split_mode).
 *             swiftmoe:shadow=H adds H shadow slots per rank filled each
 *             step from that step's counts (smoe_shadow_plan, shadow.h),
 *             with the cost model in token rows: row_s = 1 and a shadow
 *             paying for itself above shadow_rows rows saved on the slowest
 *             rank (default 5333: fp32 weights, 200 TFLOP/s of expert
 *             compute against 50 GB/s into a rank; 2 x 4 bytes of weights
 *             and gradient per 6 flops per row and weight, x 4000 flops per
 *             byte), slice_s = shadow_rows / G; each shadow sends
 *             2 x expert_bytes (its weights in, its gradient out).
 *   eplb      DeepSeek EPLB as run in training: loads = an EMA of the global
 *             counts (the first step's counts as they are, then ema * loads
 *             + (1 - ema) * counts); step 0 planned from equal loads, then a
 *             re-plan every N steps (greedy counts + eplb packing, no src);
 *             the placement fixed in between; an even split; no drops. A
 *             re-plan moves the replicas that land on a rank that did not
 *             hold their expert (weights and state); a replica that only
 *             changes slot on its rank moves nothing.
 *   flexmoe   FlexMoE (Nie et al. 2023): step 0 as eplb; a layer is
 *             re-planned at step t when its imbalance at t - 1 exceeded the
 *             threshold or t is a multiple of K. A re-plan moves replicas one
 *             at a time, on step t - 1's global counts T and the even-split
 *             model (a rank's load = sum over its slots of T_e / r_e):
 *             h = the expert with the most tokens per replica that some rank
 *             lacks, c = another with the fewest tokens per replica and at
 *             least two replicas; one slot of c, on a rank without h, becomes
 *             h's, the one that leaves the lowest max rank load. The move is
 *             made only while gain > cost in bytes:
 *               gain = (max rank load before - after, tokens per step) x K
 *                      x row_bytes  (the re-plan period: the steps it pays)
 *               cost = expert_bytes + state_bytes (the replica moves with its
 *                      optimizer state);
 *             else the re-plan stops (or after G*S moves). An even split; no
 *             drops.
 *
 * Metrics, per step t and layer l: the tokens kept after drops split under
 * step t's placement, rank_load from smoe_split_rank_load; imbalance = max
 * over ranks / mean over ranks (1.0 for a layer without tokens); a step's
 * imbalance the mean over layers (as training reports it). */
#ifndef SMOE_WHATIF_H
#define SMOE_WHATIF_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "cost.h"

typedef struct {
  int n, L, E, G, K;       /* steps, layers, experts, ranks, experts per token */
  int64_t tokens_per_rank; /* N: tokens each rank routes per step (per layer) */
  const int64_t *src;      /* (n, L, G, E) tokens rank q routed to expert e at step t */
  double row_bytes;        /* bytes of one dispatched token row (D x element size) */
  double expert_bytes;     /* bytes of one expert's weights (element size) */
  double state_bytes;      /* bytes of one expert's optimizer state: fp32 master + 2 moments */
} smoe_whatif_log_t;

typedef enum {
  SMOE_WHATIF_STATIC = 0, /* one replica each, fixed, no drops */
  SMOE_WHATIF_CAPACITY,   /* static, drops over max(4, ceil(factor K N / E)) per expert per rank */
  SMOE_WHATIF_SYMI,       /* the engine's symi policy */
  SMOE_WHATIF_SWIFTMOE,   /* the engine's swiftmoe policy */
  SMOE_WHATIF_EPLB,       /* DeepSeek EPLB: greedy counts + eplb packing of an EMA, every N steps */
  SMOE_WHATIF_FLEXMOE     /* FlexMoE: replicas own their optimizer state and move with it */
} smoe_whatif_kind_t;

typedef struct {
  smoe_whatif_kind_t kind;
  char label[48];   /* the spec as given, for the table ("capacity:1.25") */
  double factor;    /* capacity, symi: capacity factor (default 1.0) */
  int S;            /* slots per rank; 0: the engine's default for the policy (placement.h) */
  double ema;       /* swiftmoe, symi: load smoothing (default 0, placement.load_ema's);
                       eplb: (default 0.9) */
  int every;        /* eplb: re-plan every N steps (default 100); flexmoe: K (default 50) */
  double threshold; /* flexmoe: re-plan when max/mean rank load exceeds it (default 1.25) */
  int shadow;       /* swiftmoe: shadow slots per rank (default 0) */
  double shadow_rows; /* swiftmoe: rows a shadow must save to pay (default 5333) */
} smoe_whatif_policy_t;

/* Parses "static", "capacity[:F]", "symi[:F]", "swiftmoe[:S=..,ema=..]",
 * "eplb[:N]", "flexmoe[:K]" and key=value forms into p. Keys: capacity:
 * factor; symi: factor, S, ema; swiftmoe: S, ema, shadow, shadow_rows; eplb:
 * every, ema, S; flexmoe: every, threshold, S (factor > 0, 0 <= ema < 1,
 * every >= 1, threshold >= 1, S >= 1, shadow >= 0, shadow_rows >= 0). Returns 0, or -1 with err naming the bad part and
 * what is allowed. */
int smoe_whatif_parse(const char *spec, smoe_whatif_policy_t *p, smoe_err_t *err);

typedef struct {
  int64_t steps;                     /* steps simulated */
  double imb_mean, imb_p95, imb_max; /* over steps (p95: nearest rank) of a step's imbalance */
  double dropped_frac;               /* tokens dropped / tokens routed, over the whole log */
  double dispatch_bytes;             /* per step, all layers: 2 x row_bytes x the tokens sent to a
                                        slot on another rank than their own (there and back) */
  double weights_bytes;              /* per step, all layers: expert weights received.
                                        swiftmoe, symi: every non-empty slot refilled from the G
                                        shards, (G-1)/G x expert_bytes each, whatever the plan;
                                        static, capacity: 0 (updated in place);
                                        eplb, flexmoe: every replica beyond an expert's first gets
                                        its updated weights, (r_e - 1) x expert_bytes, plus
                                        expert_bytes per move */
  double state_bytes;                /* per step: optimizer state moved, state_bytes per move
                                        (eplb, flexmoe) */
  double churn;                      /* per step and layer: slots whose expert differs from the
                                        previous step's (0 at step 0) */
  double peak_extra_bytes;           /* eplb, flexmoe: the most replicas one rank received in one
                                        re-plan (all layers) x (expert_bytes + state_bytes): it holds
                                        the old and the new while moving; 0 for the others */
  int64_t moves;                     /* eplb, flexmoe: replicas that arrived on a rank that did not
                                        hold their expert, over the whole log */
  int64_t replans;                   /* eplb, flexmoe: steps at which some layer was re-planned */
  double shadows;                    /* swiftmoe:shadow: shadows per step, all layers */
  double shadow_bytes;               /* ... and their bytes per step: 2 x expert_bytes each */
} smoe_whatif_result_t;

/* Simulates policy p over the whole log (n >= 1). Memory: the run's arrays
 * and the engine calls' scratch are allocated once per call, nothing per
 * step. Returns 0, or -1 with err (bad shapes, a negative count or byte
 * size, shapes that do not fit the policy, e.g. static with E not divisible
 * by G). */
int smoe_whatif_run(const smoe_whatif_log_t *log, const smoe_whatif_policy_t *p,
                    smoe_whatif_result_t *out, smoe_err_t *err);

/* The fluid replay, for the cluster model (cost.h, `swiftmoe sim`): the
 * same policies on each step's global counts alone, as if every rank routed
 * the same share T_e / G of each expert (the scale of a 1024-GPU cluster
 * has no room for per-source counts: G x E per layer and step). Differences
 * from smoe_whatif_run: capacity drops each rank's T_e / G over its
 * capacity (a real batch, whose ranks differ, drops more); symi's drops are
 * the same (they use the global counts); the engine's policies plan without
 * per-source counts (src = NULL: no locality hint); a slot's rows come from
 * smoe_split_slot_rows; of a GPU's rows, those from itself are min(rows,
 * T_e / G) under the load-aware split (own rank first) and rows / G under
 * the even one (every source alike); shadows are refused. Each step, after
 * its layers, observe(ctx, step) sees the placement, the rows, the exchange
 * and the moves (smoe_cost_step_t). */
typedef struct {
  int n, L, E, G, K;
  int64_t tokens_per_rank;
  void (*counts)(void *ctx, int64_t t, int64_t *out); /* out (L, E): step t's token rows */
  void (*observe)(void *ctx, const smoe_cost_step_t *st); /* or NULL */
  void *ctx;
  double row_bytes, expert_bytes, state_bytes;
} smoe_whatif_fluid_t;

int smoe_whatif_fluid(const smoe_whatif_fluid_t *f, const smoe_whatif_policy_t *p,
                      smoe_whatif_result_t *out, smoe_err_t *err);

#endif
