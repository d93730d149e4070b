/* cost.h: what one training step costs on a described cluster (`swiftmoe
 * sim`, `swiftmoe compare`). Pure functions: no I/O, no MPI; the rows each
 * rank computes and exchanges come from whatif.h's fluid replay of a
 * placement policy, the rest from the scenario (hardware + model).
 *
 * The model, per step (l over the L MoE layers; g over the G GPUs; every
 * part in seconds; no overlap between parts: an upper bound where a system
 * overlaps communication with compute, the same for every policy):
 *
 *   N      = global_batch seq / G tokens per GPU; K rows per token
 *   f_row  = 2 m D F: one row's forward FLOPs through an expert of m
 *            D x F matrices (m = 2 GPT MLP, 3 SwiGLU); backward = 2 f_row
 *   expert = sum_l max_g rows[l][g] 3 f_row / R            (R: FLOP/s)
 *   a2a    = sum_l 4 max_g x(bytes_g) ;  the dispatch and combine of the
 *            forward and of the backward move the same rows:
 *            bytes_g = max(send_g, recv_g) D e  (rows to / from other GPUs,
 *            e bytes per element), and for a volume b from one GPU
 *            x(b) = max(b f_in / B_in, b (1 - f_in) / B_out)
 *                   + (P_in - 1) a_in + (G - P_in) a_out
 *            (P_in = GPUs per node, at most G; f_in = (P_in - 1) / (G - 1) of
 *            a GPU's remote rows go to its own node: the other end of a
 *            remote row is any other GPU alike; B, a: the links' bandwidth
 *            per GPU and latency per message, one message per peer)
 *   dense  = N (6 P_l L + 12 L seq D + 6 V D) / R   (P_l: a layer's dense
 *            weights: attention and router; 12 L seq D: attention scores
 *            forward and backward; 6 V D: the output layer)
 *   dense_comm = 2 ring(P_dense e): reduce-scatter of the dense gradients,
 *            all-gather of the weights; ring(b) = (G-1)/G b / B_ring +
 *            (G-1) a_ring over the slowest link the ring crosses (the
 *            network when G > P_in, else NVLink)
 *   expert_sync, by how the policy keeps expert state (smoe_cost_sync_t):
 *     SHARDED (swiftmoe, symi): every non-empty slot's gradient goes to
 *            the G shards and its next weights come from them: per layer
 *            2 max_g x(max(n_g, n/G) P e (G-1)/G), n_g the slots GPU g
 *            filled, n all of them
 *     LOCAL (static, capacity): 0 (one replica, its state beside it)
 *     REPLICATED (eplb, flexmoe): each expert's r_e replicas all-reduce
 *            their gradients: per layer max_g x(sum over g's slots of
 *            2 (r_e - 1) / r_e P e)
 *   optimizer: AdamW over the parameters whose state GPU g keeps
 *            (SHARDED: (L E P + P_dense) / G; LOCAL: its E/G experts;
 *            REPLICATED: every replica it holds); on the GPU: W 30 / HBM
 *            (read fp32 master, m, v, grad; write master, m, v and a bf16
 *            weight); on the host (optimizer_on_host, the seed paper's
 *            setup): W 2 e / PCIe (gradients down, weights up) + W 30 /
 *            host memory bandwidth
 *   migration (eplb, flexmoe): the replicas that arrived on the busiest GPU
 *            this step, each with its weights and optimizer state (12 B per
 *            parameter), at x(); + PCIe both ways when the state is on the
 *            host
 *   ckpt   = (stage + max(0, write - interval t)) / interval: an async
 *            checkpoint stalls a step for copying each GPU's state shard
 *            (12 B per parameter of (L E P + P_dense) / G) to host
 *            staging (over PCIe; in host memory when the state is there),
 *            and for any part of the write to disk that outlasts the
 *            interval's steps (t: the step without the checkpoint)
 *
 * FasterMoE's model (He et al., PPoPP 2022; fastmoe's shadow_policy.py):
 *   lat = 3 comp B_max + 4 send B_max + sum of model sends
 * with comp = f_row / R per row, send = D e / B_out per row and B_max the
 * most rows one GPU computes: computed beside ours on the same rows as a
 * cross-check (smoe_cost_fastermoe). */
#ifndef SMOE_COST_H
#define SMOE_COST_H

#include <stdint.h>

#include "common.h"

typedef struct {
  char name[24];
  const char *about; /* what it is and where the figures come from */
  /* the cluster */
  int G;             /* GPUs */
  int per_node;      /* GPUs per node (NVLink inside) */
  double flops;      /* R: achieved matmul FLOP/s per GPU */
  double hbm_bw;     /* B/s per GPU */
  double in_bw, in_alpha;   /* NVLink: B/s per GPU one way, s per message */
  double out_bw, out_alpha; /* network: B/s per GPU one way, s per message */
  double pcie_bw;    /* host <-> GPU B/s per GPU */
  double host_bw;    /* host memory B/s one GPU's optimizer can use */
  double disk_bw;    /* checkpoint write B/s per GPU */
  int optimizer_on_host;
  double hbm_bytes;  /* memory per GPU, for the memory column */
  /* the model */
  int L, E, K, S;    /* S: slots per GPU of the adaptive policies */
  int D, F, mats;    /* an expert: mats matrices of D x F */
  int seq, vocab;
  int64_t batch;     /* sequences per step, all GPUs */
  double dense_layer; /* P_l: a layer's dense weights (attention, norms, router) */
  double elem;       /* bytes per weight and activation element */
  int interval;      /* steps between checkpoints */
} smoe_scenario_t;

/* The named scenarios (their figures cited in cost.c). Returns the count;
 * *list the table. */
int smoe_scenarios(const smoe_scenario_t **list);
/* The scenario called name into sc, or -1 with err naming the choices. */
int smoe_scenario_find(const char *name, smoe_scenario_t *sc, smoe_err_t *err);
/* Scales sc to G GPUs (the same GPUs, nodes and per-GPU batch; E raised to
 * the next multiple of G when G does not divide it, so that static can
 * place it; S back to the engine's default when G S slots no longer hold E). */
void smoe_scenario_resize(smoe_scenario_t *sc, int G);
/* The rates the GPU benchmark measured, from the text of its JSON
 * (tests/gpu/calibration.py: ceilings.bf16_gemm_tflops x
 * bench_h200.fraction_of_bf16_R, ceilings.copy_gbps,
 * ceilings.d2h_pinned_gbps; from: the file's name for messages) into sc,
 * replacing the datasheet ones; what it replaced is written to said (n
 * bytes). Returns 0, or -1 with err naming the file and the missing or bad
 * key. */
int smoe_scenario_calibrate(smoe_scenario_t *sc, const char *json, const char *from, char *said,
                            size_t n, smoe_err_t *err);

/* Derived sizes. */
int64_t smoe_cost_tokens(const smoe_scenario_t *sc);        /* N: tokens per GPU per step */
double smoe_cost_expert_params(const smoe_scenario_t *sc);  /* P: one expert */
double smoe_cost_dense_params(const smoe_scenario_t *sc);   /* P_dense: all layers + embeddings */

typedef enum {
  SMOE_SYNC_SHARDED = 0, /* swiftmoe, symi: static shards, slots refilled every step */
  SMOE_SYNC_LOCAL,       /* static, capacity: one replica, its state beside it */
  SMOE_SYNC_REPLICATED   /* eplb, flexmoe: replicas all-reduce, state moves with them */
} smoe_cost_sync_t;

/* One step of a policy's replay (whatif.h fills it). */
typedef struct {
  int64_t t;
  int L, E, G, S;
  const int *slot_expert;   /* (L, G*S) */
  const int *replicas;      /* (L, E) */
  const int64_t *rows;      /* (L, G) rows each GPU computes */
  const int64_t *send;      /* (L, G) of its own rows, those computed on another GPU */
  const int64_t *recv;      /* (L, G) of the rows it computes, those from another GPU */
  int64_t routed, dropped;  /* token rows, all layers */
  const int64_t *incoming;  /* (G) replicas moved onto each GPU this step (eplb, flexmoe) */
  int64_t moves;            /* all of them */
} smoe_cost_step_t;

typedef struct {
  double expert, a2a, dense, dense_comm, expert_sync, optimizer, migration, ckpt;
  double total;
  double fastermoe; /* FasterMoE's lat on the same rows (expert compute and exchange only) */
  double memory;    /* bytes on the busiest GPU */
} smoe_cost_parts_t;

/* The time of one step st under sc. Every field of out is set. */
void smoe_cost_step(const smoe_scenario_t *sc, smoe_cost_sync_t sync, const smoe_cost_step_t *st,
                    smoe_cost_parts_t *out);

/* x(): seconds to move b bytes from one GPU to the others (above). */
double smoe_cost_exchange(const smoe_scenario_t *sc, double b);
/* ring(): seconds for a ring reduce-scatter or all-gather of b bytes. */
double smoe_cost_ring(const smoe_scenario_t *sc, double b);

/* Synthetic loads: each step's global token rows per expert, Zipf(s) over a
 * ranking of the experts that drifts: every step each expert's rank is
 * swapped with a random one with probability d (so a cold expert becomes the
 * hottest at once: the seed paper saw loads change more than 16x within 3
 * iterations). rows = N G K each step: floor(p_rank rows) each, the
 * remainder one row each to the hottest. */
typedef struct {
  double s, d;
  int L, E;
  uint64_t rng;
  int *perm;     /* (L, E) expert at each popularity rank */
  double *p;     /* (E) Zipf weights of the ranks, summing to 1 */
} smoe_synth_t;

int smoe_synth_parse(const char *spec, double *s, double *d, smoe_err_t *err);
void smoe_synth_init(smoe_synth_t *y, double s, double d, int L, int E, uint64_t seed);
void smoe_synth_next(smoe_synth_t *y, int64_t rows, int64_t *counts /* (L, E) */);
void smoe_synth_free(smoe_synth_t *y);

/* Time to target: the first point of a curve (steps, values; n points, in
 * step order) at or below target, its step interpolated linearly between
 * the points around the crossing; -1 when the curve never reaches it. */
double smoe_steps_to_target(const int64_t *steps, const double *values, int n, double target);

#endif
