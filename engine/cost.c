/* cost.c: the cluster cost model (cost.h), its named scenarios, synthetic
 * loads and time to target. */
#define _POSIX_C_SOURCE 200809L
#include "cost.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GB 1e9
#define TFLOP 1e12

/* Achieved matmul rate as a share of the dense bf16 datasheet rate: an
 * assumption for GEMMs of these sizes (llm.c and Megatron report 40-55%
 * model FLOP utilisation on A100/H100); --calibration replaces it with the
 * GPU benchmark's measured rate. */
#define GEMM_EFF 0.45

/* Figures: NVIDIA A100 80GB datasheet (312 TFLOP/s dense bf16, 2,039 GB/s
 * HBM2e); NVIDIA H200 datasheet (989 TFLOP/s dense bf16, 4.8 TB/s HBM3e,
 * 141 GB, NVLink 900 GB/s both ways); PCIe 4.0 x16 32 GB/s and 5.0 x16 64
 * GB/s one way; the networks as the issue states them (100 Gb/s per node in
 * the seed paper, 400 Gb/s per GPU for H200 clusters). Latencies: 2 us per
 * NVLink message, 5 us per network message (typical NCCL small-message
 * latencies). Host memory: 50 GB/s for one GPU's share of a DDR4/DDR5
 * socket; disk: 2 GB/s NVMe per GPU. The models: the seed paper's GPT-Small
 * MoE (12 layers, D 768, F 3072, E 16, top-1, 4 slots per GPU, sequence
 * 512, global batch 64, GPT-2's 50,257-token vocabulary); Mixtral 8x7B's
 * shape (32 layers, D 4096, SwiGLU F 14336, E 8, top-2, vocabulary 32,000);
 * DeepSeek-V3's routed experts (58 MoE layers, D 7168, SwiGLU F 2048,
 * E 256, top-8, vocabulary 129,280), E raised to one expert per GPU at
 * 2048. */
/* the hardware of an H200 GPU in the clusters below */
#define H200 \
  .flops = GEMM_EFF * 989 * TFLOP, .hbm_bw = 4800 * GB, .in_bw = 450 * GB, .in_alpha = 2e-6, \
  .out_bw = 50 * GB, .out_alpha = 5e-6, .pcie_bw = 64 * GB, .host_bw = 50 * GB, \
  .disk_bw = 2 * GB, .optimizer_on_host = 0, .hbm_bytes = 141 * GB

static const smoe_scenario_t SCENARIOS[] = {
    {.name = "paper-a100x16",
     .about = "16 nodes x 1 A100 80GB, PCIe4 32 GB/s, 100 Gb/s network, optimizer on the "
              "host; GPT-Small MoE: 12 layers, D 768, E 16, top-1, 4 slots per GPU, seq 512, "
              "batch 64 (the seed paper's setup)",
     .G = 16, .per_node = 1, .flops = GEMM_EFF * 312 * TFLOP, .hbm_bw = 2039 * GB,
     .in_bw = 300 * GB, .in_alpha = 2e-6, .out_bw = 12.5 * GB, .out_alpha = 5e-6,
     .pcie_bw = 32 * GB, .host_bw = 50 * GB, .disk_bw = 2 * GB, .optimizer_on_host = 1,
     .hbm_bytes = 80 * GB,
     .L = 12, .E = 16, .K = 1, .S = 4, .D = 768, .F = 3072, .mats = 2, .seq = 512,
     .vocab = 50257, .batch = 64, .dense_layer = 4.0 * 768 * 768 + 768 * 16 + 2 * 768,
     .elem = 2, .interval = 100},
    {.name = "h200x8",
     .about = "1 node x 8 H200 (NVLink 450 GB/s per GPU each way); Mixtral 8x7B's shape: 32 "
              "layers, D 4096, E 8, top-2, seq 4096, batch 16",
     .G = 8, .per_node = 8, H200,
     .L = 32, .E = 8, .K = 2, .S = 0, .D = 4096, .F = 14336, .mats = 3, .seq = 4096,
     .vocab = 32000, .batch = 16,
     .dense_layer = 2.0 * 4096 * 4096 + 2.0 * 4096 * 1024 + 4096 * 8 + 2 * 4096, .elem = 2,
     .interval = 100},
    {.name = "h200x256",
     .about = "32 nodes x 8 H200, NVLink inside, 400 Gb/s per GPU across; DeepSeek-V3's routed "
              "experts: 58 layers, D 7168, E 256, top-8, seq 4096, batch 256",
     .G = 256, .per_node = 8, H200,
     .L = 58, .E = 256, .K = 8, .S = 0, .D = 7168, .F = 2048, .mats = 3, .seq = 4096,
     .vocab = 129280, .batch = 256, .dense_layer = 4.0 * 7168 * 7168 + 7168 * 256 + 2 * 7168,
     .elem = 2, .interval = 100},
    {.name = "h200x2048",
     .about = "256 nodes x 8 H200, NVLink inside, 400 Gb/s per GPU across; DeepSeek-V3's "
              "layer shape with one routed expert per GPU: 58 layers, D 7168, E 2048, top-8, "
              "seq 4096, batch 2048",
     .G = 2048, .per_node = 8, H200,
     .L = 58, .E = 2048, .K = 8, .S = 0, .D = 7168, .F = 2048, .mats = 3, .seq = 4096,
     .vocab = 129280, .batch = 2048, .dense_layer = 4.0 * 7168 * 7168 + 7168 * 2048 + 2 * 7168,
     .elem = 2, .interval = 100},
};
enum { NSCEN = sizeof SCENARIOS / sizeof SCENARIOS[0] };

int smoe_scenarios(const smoe_scenario_t **list) {
  *list = SCENARIOS;
  return NSCEN;
}

int smoe_scenario_find(const char *name, smoe_scenario_t *sc, smoe_err_t *err) {
  for (int i = 0; i < NSCEN; i++)
    if (strcmp(name, SCENARIOS[i].name) == 0) {
      *sc = SCENARIOS[i];
      return 0;
    }
  return smoe_fail(err, "scenario \"%s\": expected one of paper-a100x16, h200x8, h200x256, "
                   "h200x2048 (--list-scenarios describes them)", name);
}

void smoe_scenario_resize(smoe_scenario_t *sc, int G) {
  const double per_gpu = (double)sc->batch / sc->G;
  sc->G = G;
  sc->batch = (int64_t)ceil(per_gpu * G);
  if (sc->E < G || sc->E % G) sc->E = (sc->E + G - 1) / G * G;
  if ((int64_t)sc->S * G < sc->E) sc->S = 0; /* too few slots now: the engine's default */
}

/* The number at a dotted path of a JSON object, or NAN. */
static double json_at(const cJSON *o, const char *a, const char *b) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b);
  return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

int smoe_scenario_calibrate(smoe_scenario_t *sc, const char *json, const char *from, char *said,
                            size_t n, smoe_err_t *err) {
  cJSON *o = cJSON_Parse(json);
  if (!o) return smoe_fail(err, "--calibration %s: not JSON (tests/gpu/calibration.py writes it)",
                           from);
  const double peak = json_at(o, "ceilings", "bf16_gemm_tflops");
  const double frac = json_at(o, "bench_h200", "fraction_of_bf16_R");
  const double hbm = json_at(o, "ceilings", "copy_gbps");
  const double pcie = json_at(o, "ceilings", "d2h_pinned_gbps");
  cJSON_Delete(o);
  if (!(peak > 0) || !(hbm > 0) || !(pcie > 0))
    return smoe_fail(err,
                     "--calibration %s: needs ceilings.bf16_gemm_tflops, ceilings.copy_gbps and "
                     "ceilings.d2h_pinned_gbps, each a number > 0",
                     from);
  const double eff = frac > 0 && frac <= 1 ? frac : GEMM_EFF;
  sc->flops = peak * TFLOP * eff;
  sc->hbm_bw = hbm * GB;
  sc->pcie_bw = pcie * GB;
  snprintf(said, n,
           "calibrated from %s: R = %.0f TFLOP/s (%.0f peak x %.2f %s), HBM %.0f GB/s, "
           "PCIe %.1f GB/s",
           from, sc->flops / TFLOP, peak, eff,
           frac > 0 && frac <= 1 ? "measured model FLOP share" : "assumed", hbm, pcie);
  return 0;
}

int64_t smoe_cost_tokens(const smoe_scenario_t *sc) {
  return sc->batch * sc->seq / sc->G;
}

double smoe_cost_expert_params(const smoe_scenario_t *sc) {
  return (double)sc->mats * sc->D * sc->F;
}

double smoe_cost_dense_params(const smoe_scenario_t *sc) {
  return sc->L * sc->dense_layer + 2.0 * sc->vocab * sc->D;
}

/* GPUs of one node, at most G. */
static int node_size(const smoe_scenario_t *sc) {
  return sc->per_node < sc->G ? sc->per_node : sc->G;
}

double smoe_cost_exchange(const smoe_scenario_t *sc, double b) {
  if (sc->G < 2 || b <= 0) return 0;
  const int P = node_size(sc);
  const double f_in = (double)(P - 1) / (sc->G - 1);
  const double t_in = b * f_in / sc->in_bw, t_out = b * (1 - f_in) / sc->out_bw;
  return (t_in > t_out ? t_in : t_out) + (P - 1) * sc->in_alpha + (sc->G - P) * sc->out_alpha;
}

double smoe_cost_ring(const smoe_scenario_t *sc, double b) {
  if (sc->G < 2) return 0;
  const int across = sc->G > node_size(sc);
  const double bw = across ? sc->out_bw : sc->in_bw, a = across ? sc->out_alpha : sc->in_alpha;
  return (double)(sc->G - 1) / sc->G * b / bw + (sc->G - 1) * a;
}

/* AdamW over W parameters on the GPU or the host (cost.h). */
static double adamw(const smoe_scenario_t *sc, double W) {
  if (sc->optimizer_on_host) return W * 2 * sc->elem / sc->pcie_bw + W * 30 / sc->host_bw;
  return W * 30 / sc->hbm_bw;
}

void smoe_cost_step(const smoe_scenario_t *sc, smoe_cost_sync_t sync, const smoe_cost_step_t *st,
                    smoe_cost_parts_t *out) {
  memset(out, 0, sizeof *out);
  const int L = st->L, E = st->E, G = st->G, S = st->S, GS = G * S;
  const double P = smoe_cost_expert_params(sc), Pd = smoe_cost_dense_params(sc);
  const double f_row = 2.0 * sc->mats * sc->D * sc->F, row_b = sc->D * sc->elem;
  const double N = (double)smoe_cost_tokens(sc);
  double most_rows = 0, most_slots = 0;
  for (int l = 0; l < L; l++) {
    const int64_t *rows = st->rows + (size_t)l * G, *send = st->send + (size_t)l * G,
                  *recv = st->recv + (size_t)l * G;
    const int *se = st->slot_expert + (size_t)l * GS, *rep = st->replicas + (size_t)l * E;
    double r_max = 0, x_max = 0, sync_max = 0, n_all = 0;
    for (int gs = 0; gs < GS; gs++) n_all += se[gs] >= 0;
    for (int g = 0; g < G; g++) {
      if (rows[g] > r_max) r_max = (double)rows[g];
      double v = (double)(send[g] > recv[g] ? send[g] : recv[g]) * row_b;
      if (v > x_max) x_max = v;
      double n_g = 0, rep_b = 0;
      for (int s = 0; s < S; s++) {
        int e = se[g * S + s];
        if (e < 0) continue;
        n_g++;
        rep_b += 2.0 * (rep[e] - 1) / rep[e] * P * sc->elem;
      }
      double b = sync == SMOE_SYNC_SHARDED
                     ? (n_g > n_all / G ? n_g : n_all / G) * P * sc->elem * (G - 1) / G
                 : sync == SMOE_SYNC_REPLICATED ? rep_b
                                                : 0;
      if (b > sync_max) sync_max = b;
      if (n_g > most_slots) most_slots = n_g;
    }
    out->expert += r_max * 3 * f_row / sc->flops;
    out->a2a += 4 * smoe_cost_exchange(sc, x_max);
    out->expert_sync += (sync == SMOE_SYNC_SHARDED ? 2 : 1) * smoe_cost_exchange(sc, sync_max);
    out->fastermoe += 3 * (f_row / sc->flops) * r_max + 4 * (row_b / sc->out_bw) * r_max;
    if (r_max > most_rows) most_rows = r_max;
  }
  /* FasterMoE's "model sends": the expert weights moved to other GPUs */
  out->fastermoe += out->expert_sync;
  out->dense = N * (6 * sc->dense_layer * L + 12.0 * L * sc->seq * sc->D +
                    6.0 * sc->vocab * sc->D) / sc->flops;
  out->dense_comm = 2 * smoe_cost_ring(sc, Pd * sc->elem);
  /* the parameters whose optimizer state this GPU keeps */
  double W = sync == SMOE_SYNC_SHARDED ? (L * (double)E * P + Pd) / G
             : sync == SMOE_SYNC_LOCAL ? L * ((double)E / G) * P + Pd / G
                                       : L * most_slots * P + Pd / G;
  out->optimizer = adamw(sc, W);
  int64_t in_max = 0;
  for (int g = 0; st->incoming && g < G; g++) in_max = st->incoming[g] > in_max ? st->incoming[g] : in_max;
  if (in_max > 0) {
    double b = (double)in_max * P * (sc->elem + 12);
    out->migration = smoe_cost_exchange(sc, b) + (sc->optimizer_on_host ? 2 * b / sc->pcie_bw : 0);
  }
  double t = out->expert + out->a2a + out->dense + out->dense_comm + out->expert_sync +
             out->optimizer + out->migration;
  const double shard = 12 * (L * (double)E * P + Pd) / G;
  const double stage = shard / (sc->optimizer_on_host ? sc->host_bw : sc->pcie_bw);
  const double write = shard / sc->disk_bw, late = write - sc->interval * t;
  out->ckpt = sc->interval > 0 ? (stage + (late > 0 ? late : 0)) / sc->interval : 0;
  out->total = t + out->ckpt;
  /* memory on the busiest GPU: its slots' weights and gradients, the dense
   * weights and gradients, the state it keeps when it is on the GPU, the
   * expert rows of every layer kept for backward (in, hidden, out), the
   * dense activations (about 16 D values per token and layer) */
  double slots = sync == SMOE_SYNC_LOCAL ? (double)E / G : most_slots;
  out->memory = 2 * sc->elem * (L * slots * P + Pd) + (sc->optimizer_on_host ? 0 : 12 * W) +
                L * most_rows * (2.0 * sc->D + sc->mats * sc->F) * sc->elem +
                16.0 * N * L * sc->D * sc->elem + (double)in_max * P * (sc->elem + 12);
}

/* ---------------------------------------------------------- synthetic loads */

int smoe_synth_parse(const char *spec, double *s, double *d, smoe_err_t *err) {
  *s = 1.0, *d = 0.0;
  char buf[128];
  if (strlen(spec) >= sizeof buf) return smoe_fail(err, "--synthetic %s: too long", spec);
  strcpy(buf, spec);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    char *c = strchr(tok, ':'), *end;
    if (!c) goto bad;
    *c++ = '\0';
    double v = strtod(c, &end);
    if (end == c || *end || !isfinite(v)) goto bad;
    if (strcmp(tok, "zipf") == 0 && v >= 0)
      *s = v;
    else if (strcmp(tok, "drift") == 0 && v >= 0 && v <= 1)
      *d = v;
    else
      goto bad;
  }
  return 0;
bad:
  return smoe_fail(err,
                   "--synthetic %s: expected zipf:S,drift:D with S >= 0 (the Zipf exponent) and "
                   "D in [0, 1] (each step, the chance that an expert swaps popularity with a "
                   "random one), e.g. zipf:1.2,drift:0.05",
                   spec);
}

/* splitmix64's next draw: smoe_mix64 of a Weyl sequence */
static uint64_t next_u64(uint64_t *x) {
  const uint64_t z = *x;
  *x += 0x9e3779b97f4a7c15ull;
  return smoe_mix64(z);
}

void smoe_synth_init(smoe_synth_t *y, double s, double d, int L, int E, uint64_t seed) {
  y->s = s, y->d = d, y->L = L, y->E = E, y->rng = seed;
  y->perm = xcalloc((size_t)L * E, sizeof(int));
  y->p = xcalloc((size_t)E, sizeof(double));
  double sum = 0;
  for (int i = 0; i < E; i++) sum += y->p[i] = pow(i + 1.0, -s);
  for (int i = 0; i < E; i++) y->p[i] /= sum;
  for (int l = 0; l < L; l++) { /* a random ranking per layer */
    int *pm = y->perm + (size_t)l * E;
    for (int i = 0; i < E; i++) pm[i] = i;
    for (int i = E - 1; i > 0; i--) {
      int j = (int)(next_u64(&y->rng) % (uint64_t)(i + 1)), t = pm[i];
      pm[i] = pm[j], pm[j] = t;
    }
  }
}

void smoe_synth_next(smoe_synth_t *y, int64_t rows, int64_t *counts) {
  const int E = y->E;
  for (int l = 0; l < y->L; l++) {
    int *pm = y->perm + (size_t)l * E;
    if (y->d > 0)
      for (int i = 0; i < E; i++)
        if ((double)(next_u64(&y->rng) >> 11) * 0x1.0p-53 < y->d) { /* uniform in [0, 1) */
          int j = (int)(next_u64(&y->rng) % (uint64_t)E), t = pm[i];
          pm[i] = pm[j], pm[j] = t;
        }
    int64_t *c = counts + (size_t)l * E, given = 0;
    for (int i = 0; i < E; i++) given += c[pm[i]] = (int64_t)floor(y->p[i] * (double)rows);
    for (int i = 0; given < rows; i = (i + 1) % E) c[pm[i]]++, given++; /* the hottest first */
  }
}

void smoe_synth_free(smoe_synth_t *y) {
  free(y->perm), free(y->p);
  y->perm = NULL, y->p = NULL;
}

double smoe_steps_to_target(const int64_t *steps, const double *values, int n, double target) {
  for (int i = 0; i < n; i++) {
    if (!(values[i] <= target)) continue;
    if (i == 0 || values[i - 1] == values[i]) return (double)steps[i];
    double f = (values[i - 1] - target) / (values[i - 1] - values[i]);
    return (double)steps[i - 1] + f * (double)(steps[i] - steps[i - 1]);
  }
  return -1;
}
