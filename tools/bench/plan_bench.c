/* plan_bench: the planner and the load-aware split, one layer.
 *
 * (1) Time: replica counts (greedy) + slots (balanced, src = the previous
 *     step's counts) + split, per layer, at several (G, E, S), medians of
 *     repeats, one core; the split both as the whole (G, G*S) table and as
 *     one rank's row; the baseline is zero-filling the table once.
 * (2) Balance: synthetic traces of 200 steps (Zipf popularity, per-expert
 *     +-30% noise every step, the hottest expert moving every 20 steps),
 *     planned from the previous step's loads and split with the current
 *     step's counts; policies static, symi (with its drops), eplb, swiftmoe;
 *     imbalance = max rank tokens / mean rank tokens.
 * (3) With --trace metrics.jsonl: the same policies on the logged
 *     expert_counts of a swiftmoe run (each layer's global counts, split
 *     evenly over the sources).
 *
 * (4) With --hedge: swiftmoe as it is, with hedged loads, with same-step
 *     shadows, and with both (shadow.h), on the synthetic traces with and
 *     without the jumps, at S = 2E/G: imbalance, shadows per step and their
 *     bytes against the dispatch's (a cost model of a Qwen3-30B-A3B-sized
 *     expert: see hedge_table).
 *
 * usage: plan_bench [--quick] [--hedge] [--trace PATH [--ranks G]] [--json PATH]
 * (--ranks: the G to plan a trace file for; default the run's, else 4) */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <math.h>
#include <string.h>

#include "plan.h"
#include "shadow.h"
#include "split.h"

static smoe_arena_t scratch; /* the planner's, split's and dispatch's temporary arrays */

#define K_TOPK 2
#define TOKENS 4096 /* per rank per step */
#define STEPS 200

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double u01(uint64_t *r) {
  *r = smoe_mix64(*r);
  return (double)(*r >> 11) * 0x1.0p-53;
}

static double quantile(double *v, int n, double q) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  int i = (int)ceil(q * n) - 1;
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ------------------------------------------------------------------ traces */

/* A synthetic router: popularity Zipf(s) over popularity ranks, expert of
 * each rank shuffled; every 20 steps the hottest rank moves to a random
 * expert; every step each expert's share gets +-30% noise, then each source
 * rank its own +-10% (stochastic rounding to whole tokens). An expert takes
 * at most one of a token's K choices: shares are capped at 1/K. */
typedef struct {
  int E, G;
  double s;
  int jumps;      /* the hottest expert moves every 20 steps */
  int *expert_of; /* (E) expert of each popularity rank */
  double *share;  /* (E) scratch */
  uint64_t rng;
} trace_t;

static void trace_init(trace_t *t, int E, int G, double s, uint64_t seed) {
  t->E = E, t->G = G, t->s = s, t->rng = seed, t->jumps = 1;
  t->expert_of = xmalloc(sizeof(int) * E), t->share = xmalloc(sizeof(double) * E);
  for (int e = 0; e < E; e++) t->expert_of[e] = e;
  for (int e = E - 1; e > 0; e--) {
    int j = (int)(u01(&t->rng) * (e + 1)), x = t->expert_of[e];
    t->expert_of[e] = t->expert_of[j], t->expert_of[j] = x;
  }
}

static void trace_step(trace_t *t, int step, int64_t *counts) {
  const int E = t->E, G = t->G;
  if (t->jumps && step > 0 && step % 20 == 0) { /* the hot expert moves */
    int j = 1 + (int)(u01(&t->rng) * (E - 1)), x = t->expert_of[0];
    t->expert_of[0] = t->expert_of[j], t->expert_of[j] = x;
  }
  double sum = 0;
  for (int k = 0; k < E; k++) {
    double v = pow(k + 1, -t->s) * (0.7 + 0.6 * u01(&t->rng));
    t->share[t->expert_of[k]] = v, sum += v;
  }
  for (int pass = 0; pass < 8; pass++) { /* cap at 1/K, renormalise */
    double over = 0, under = 0;
    for (int e = 0; e < E; e++) {
      t->share[e] /= sum;
      if (t->share[e] > 1.0 / K_TOPK)
        over += t->share[e] - 1.0 / K_TOPK, t->share[e] = 1.0 / K_TOPK;
      else
        under += t->share[e];
    }
    if (over == 0) break;
    sum = 0;
    for (int e = 0; e < E; e++) {
      if (t->share[e] < 1.0 / K_TOPK) t->share[e] *= 1 + over / under;
      sum += t->share[e];
    }
  }
  for (int q = 0; q < G; q++)
    for (int e = 0; e < E; e++) {
      double x = (double)TOKENS * K_TOPK * t->share[e] * (0.9 + 0.2 * u01(&t->rng));
      int64_t n = (int64_t)floor(x + u01(&t->rng));
      counts[q * E + e] = n > TOKENS ? TOKENS : n;
    }
}

/* ---------------------------------------------------------------- policies */

enum { STATIC, SYMI, EPLB, SWIFTMOE, N_POLICIES };
static const char *policy_name[] = {"static", "symi", "eplb", "swiftmoe"};

typedef struct {
  int E, G, S, n;
  double *imb[N_POLICIES]; /* (steps) */
  char *moved;             /* (steps) the hot expert moved at this step */
  int64_t dropped, assigned;
  /* scratch */
  double *loads;
  int *r, *se;
  int64_t *take, *rank;
} sim_t;

static void sim_init(sim_t *m, int E, int G, int S, int steps) {
  memset(m, 0, sizeof *m);
  m->E = E, m->G = G, m->S = S;
  for (int p = 0; p < N_POLICIES; p++) m->imb[p] = xmalloc(sizeof(double) * steps);
  m->moved = xcalloc((size_t)steps, 1);
  m->loads = xmalloc(sizeof(double) * E), m->r = xmalloc(sizeof(int) * E);
  m->se = xmalloc(sizeof(int) * (size_t)G * (S > E ? S : E));
  m->take = xmalloc(smoe_mul(sizeof(int64_t), smoe_mul((size_t)G * G, S > E ? S : E)));
  m->rank = xmalloc(sizeof(int64_t) * G);
}

static void sim_free(sim_t *m) {
  for (int p = 0; p < N_POLICIES; p++) free(m->imb[p]);
  free(m->moved), free(m->loads), free(m->r), free(m->se), free(m->take), free(m->rank);
}

static double imbalance(const int64_t *rank, int G) {
  int64_t mx = 0, sum = 0;
  for (int g = 0; g < G; g++) mx = rank[g] > mx ? rank[g] : mx, sum += rank[g];
  return sum ? (double)mx * G / (double)sum : 1.0;
}

/* One step: plan from prev (G*E, the previous step's counts), split cur. */
static void sim_step(sim_t *m, const int64_t *prev, const int64_t *cur) {
  const int E = m->E, G = m->G, S = m->S, i = m->n++;
  int64_t total = 0;
  for (int e = 0; e < E; e++) m->loads[e] = 0;
  for (int q = 0; q < G; q++)
    for (int e = 0; e < E; e++) m->loads[e] += (double)prev[q * E + e], total += cur[q * E + e];
  /* static: expert e on rank e / (E/G) (E/G rounded up) */
  const int per = (E + G - 1) / G;
  for (int g = 0; g < G; g++) m->rank[g] = 0;
  for (int q = 0; q < G; q++)
    for (int e = 0; e < E; e++) m->rank[e / per] += cur[q * E + e];
  m->imb[STATIC][i] = imbalance(m->rank, G);
  /* symi: proportional + contiguous + even split, drops over capacity */
  smoe_plan_counts(SMOE_COUNTS_PROPORTIONAL, m->loads, E, G, S, m->r, &scratch);
  smoe_plan_slots(SMOE_SLOTS_CONTIGUOUS, m->loads, m->r, prev, E, G, S, m->se, &scratch);
  smoe_split_even(cur, m->se, E, G, S, m->take, &scratch);
  /* capacity factor 1.0 per replica: K x T_global = all assignments of the step */
  const int64_t cap = (total + (int64_t)G * S - 1) / ((int64_t)G * S);
  for (int g = 0; g < G; g++) m->rank[g] = 0;
  for (int gs = 0; gs < G * S; gs++) {
    int64_t n = 0;
    for (int q = 0; q < G; q++) n += m->take[(size_t)q * G * S + gs];
    m->dropped += n > cap ? n - cap : 0;
    m->rank[gs / S] += n > cap ? cap : n;
  }
  m->assigned += total;
  m->imb[SYMI][i] = imbalance(m->rank, G);
  /* eplb and swiftmoe: greedy counts, the load-aware split */
  smoe_plan_counts(SMOE_COUNTS_GREEDY, m->loads, E, G, S, m->r, &scratch);
  for (int p = EPLB; p <= SWIFTMOE; p++) {
    smoe_plan_slots(p == EPLB ? SMOE_SLOTS_EPLB : SMOE_SLOTS_BALANCED, m->loads, m->r, prev, E, G,
                    S, m->se, &scratch);
    smoe_split(cur, m->se, E, G, S, m->take, &scratch);
    smoe_split_rank_load(m->take, G, S, m->rank);
    m->imb[p][i] = imbalance(m->rank, G);
  }
}

static FILE *json_out;
static int json_rows; /* rows written to the current JSON array */

static void print_row(const char *trace, sim_t *m) {
  printf("| %s | %d | %d | %d |", trace, m->G, m->E, m->S);
  if (json_out)
    fprintf(json_out, "%s{\"trace\": \"%s\", \"G\": %d, \"E\": %d, \"S\": %d",
            json_rows++ ? ",\n" : "", trace, m->G, m->E, m->S);
  for (int p = 0; p < N_POLICIES; p++) {
    double mean = 0, steady = 0;
    int n_steady = 0;
    for (int i = 0; i < m->n; i++) {
      mean += m->imb[p][i] / m->n;
      if (!m->moved[i]) steady += m->imb[p][i], n_steady++;
    }
    steady /= n_steady ? n_steady : 1;
    double p95 = quantile(m->imb[p], m->n, 0.95), worst = m->imb[p][m->n - 1]; /* sorted */
    printf(" %.3f (%.3f) / %.3f / %.3f |", mean, steady, p95, worst);
    if (json_out)
      fprintf(json_out,
              ", \"%s\": {\"mean\": %.5f, \"mean_steady\": %.5f, \"p95\": %.5f, \"worst\": %.5f}",
              policy_name[p], mean, steady, p95, worst);
  }
  double drop = m->assigned ? (double)m->dropped / (double)m->assigned : 0;
  printf(" %.2f%% |\n", 100 * drop);
  if (json_out) fprintf(json_out, ", \"symi_dropped\": %.6f}", drop);
}

static void balance_table(int quick) {
  const int cfg[][2] = {{4, 64}, {16, 64}, {64, 256}};
  const double zipf[] = {1.0, 1.5};
  const int steps = quick ? 40 : STEPS;
  printf("\n| trace | G | E | S | static | symi | eplb | swiftmoe | symi dropped |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int z = 0; z < 2; z++)
    for (int c = 0; c < 3; c++)
      for (int v = 0; v < 2; v++) {
        const int G = cfg[c][0], E = cfg[c][1], S = v == 0 ? 2 * E / G : E / G + 1;
        trace_t t;
        trace_init(&t, E, G, zipf[z], smoe_mix64(1000 + z * 10 + c)); /* same trace for both S */
        int64_t *prev = xmalloc(sizeof(int64_t) * G * E), *cur = xmalloc(sizeof(int64_t) * G * E);
        sim_t m;
        sim_init(&m, E, G, S, steps);
        trace_step(&t, 0, prev);
        for (int s = 1; s <= steps; s++) {
          trace_step(&t, s, cur);
          m.moved[m.n] = s % 20 == 0;
          sim_step(&m, prev, cur);
          memcpy(prev, cur, sizeof(int64_t) * G * E);
        }
        char name[32];
        snprintf(name, sizeof name, "zipf %.1f", zipf[z]);
        print_row(name, &m);
        sim_free(&m);
        free(prev), free(cur), free(t.expert_of), free(t.share);
      }
}


/* ------------------------------------------------ hedged plans and shadows */

/* The cost model (shadow.h): an expert of Qwen3-30B-A3B's shape (dim 2048,
 * expert_dim 768), fp32 token rows and weights as the engine sends them,
 * 200 TFLOP/s of expert compute per rank and 50 GB/s into and out of each
 * rank. A shadow's rank receives the expert's weights (G slices from the G
 * shard owners) and sends its gradient back: 2 x 4 x 3 x 2048 x 768 bytes;
 * each other rank sends and receives a 1/G slice of that. */
#define DIM 2048.0
#define EXPERT_DIM 768.0
#define ROW_BYTES (4.0 * DIM)
#define SHADOW_BYTES (2.0 * 4.0 * 3.0 * DIM * EXPERT_DIM)
#define HEDGE_Z 1.0
#define HEDGE_EMA 0.9
enum { H_PLAIN, H_HEDGE, H_SHADOW, H_BOTH, H_N };
static const char *hedge_name[H_N] = {"swiftmoe", "+ hedge", "+ shadow", "+ both"};

/* Token rows the split sends off their rank (forward activations and
 * backward gradients each cross once): take (G * G*SH). */
static int64_t off_rank_rows(const int64_t *take, int G, int SH) {
  int64_t off = 0;
  for (int q = 0; q < G; q++)
    for (int gs = 0; gs < G * SH; gs++)
      if (gs / SH != q) off += take[(size_t)q * G * SH + gs];
  return off;
}

static void hedge_row(const char *trace, int G, int E, int jumps, int steps, double z) {
  const int S = 2 * E / G, H = 1, SH = S + H;
  const smoe_shadow_cost_t cost = {6.0 * 3.0 * DIM * EXPERT_DIM / 200e12, SHADOW_BYTES / 50e9,
                                   SHADOW_BYTES / G / 50e9};
  trace_t t;
  trace_init(&t, E, G, z, smoe_mix64(2000 + G + (int)(10 * z)));
  t.jumps = jumps;
  int64_t *prev = xmalloc(sizeof(int64_t) * G * E), *cur = xmalloc(sizeof(int64_t) * G * E);
  int64_t *take = xmalloc(sizeof(int64_t) * (size_t)G * G * SH), *rank = xmalloc(sizeof(int64_t) * G);
  double *loads = xmalloc(sizeof(double) * E), *hedged = xmalloc(sizeof(double) * E);
  double *mean = xmalloc(sizeof(double) * E), *var = xmalloc(sizeof(double) * E);
  int *r = xmalloc(sizeof(int) * E), *se = xmalloc(sizeof(int) * G * S), *all = xmalloc(sizeof(int) * G * SH);
  double *imb[H_N], shadows[H_N] = {0}, extra[H_N] = {0}, dispatch = 0;
  for (int v = 0; v < H_N; v++) imb[v] = xmalloc(sizeof(double) * steps);
  trace_step(&t, 0, prev);
  for (int s = 1; s <= steps; s++) {
    trace_step(&t, s, cur);
    for (int e = 0; e < E; e++) loads[e] = 0;
    for (int q = 0; q < G; q++)
      for (int e = 0; e < E; e++) loads[e] += (double)prev[q * E + e];
    smoe_hedge_update(mean, var, loads, E, HEDGE_EMA, s == 1);
    smoe_hedge_loads(loads, var, E, HEDGE_Z, hedged);
    for (int v = 0; v < H_N; v++) {
      const double *l = v == H_HEDGE || v == H_BOTH ? hedged : loads;
      smoe_plan_counts(SMOE_COUNTS_GREEDY, l, E, G, S, r, &scratch);
      smoe_plan_slots(SMOE_SLOTS_BALANCED, l, r, prev, E, G, S, se, &scratch);
      int n = 0;
      if (v == H_SHADOW || v == H_BOTH) {
        n = smoe_shadow_plan(cur, se, E, G, S, H, &cost, all, &scratch);
        smoe_split(cur, all, E, G, SH, take, &scratch);
        smoe_split_rank_load(take, G, SH, rank);
      } else {
        smoe_split(cur, se, E, G, S, take, &scratch);
        smoe_split_rank_load(take, G, S, rank);
        if (v == H_PLAIN) dispatch += 2.0 * ROW_BYTES * (double)off_rank_rows(take, G, S);
      }
      imb[v][s - 1] = imbalance(rank, G);
      shadows[v] += n;
      extra[v] += n * SHADOW_BYTES;
    }
    memcpy(prev, cur, sizeof(int64_t) * G * E);
  }
  printf("| %s%s | %d | %d | %d |", trace, jumps ? ", jumps" : "", G, E, S);
  for (int v = 0; v < H_N; v++) {
    double m = 0;
    for (int i = 0; i < steps; i++) m += imb[v][i] / steps;
    double p95 = quantile(imb[v], steps, 0.95), worst = imb[v][steps - 1];
    printf(" %.3f / %.3f / %.3f |", m, p95, worst);
  }
  for (int v = H_SHADOW; v <= H_BOTH; v++)
    printf(" %.2f, +%.1f%% |", shadows[v] / steps, 100 * extra[v] / dispatch);
  printf("\n");
  for (int v = 0; v < H_N; v++) free(imb[v]);
  free(prev), free(cur), free(take), free(rank), free(loads), free(hedged), free(mean), free(var);
  free(r), free(se), free(all), free(t.expert_of), free(t.share);
}

static void hedge_table(int quick) {
  const int steps = quick ? 40 : STEPS;
  printf("\n| trace | G | E | S | %s | %s | %s | %s | shadows / step, bytes (+shadow) | shadows / "
         "step, bytes (+both) |\n", hedge_name[0], hedge_name[1], hedge_name[2], hedge_name[3]);
  printf("|---|---|---|---|---|---|---|---|---|---|\n");
  const int cfg[][2] = {{16, 64}, {64, 256}};
  const double zipf[] = {1.0, 1.5};
  for (int z = 0; z < 2; z++)
    for (int c = 0; c < 2; c++)
      for (int jumps = 1; jumps >= 0; jumps--) {
        char name[32];
        snprintf(name, sizeof name, "zipf %.1f", zipf[z]);
        hedge_row(name, cfg[c][0], cfg[c][1], jumps, steps, zipf[z]);
      }
}

/* ------------------------------------------------------------------ timing */

static double median(double *v, int n) {
  return quantile(v, n, 0.5);
}

static void time_table(int quick) {
  const int cfg[][3] = {{8, 64, 9}, {64, 256, 5}, {1024, 256, 1}, {2048, 512, 1}};
  printf(
      "| G | E | S | counts ms | slots ms | split ms (table) | split ms (one row) | "
      "total ms (table) | total ms (one row) | zero-fill of the table ms | table / zero-fill |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int c = 0; c < 4; c++) {
    const int G = cfg[c][0], E = cfg[c][1], S = cfg[c][2], reps = quick ? 5 : G >= 1024 ? 31 : 101;
    trace_t t;
    trace_init(&t, E, G, 1.0, smoe_mix64(77 + c));
    int64_t *prev = xmalloc(sizeof(int64_t) * G * E), *cur = xmalloc(sizeof(int64_t) * G * E);
    int64_t *take = xmalloc(smoe_mul(sizeof(int64_t), (size_t)G * G * S));
    int64_t *row = xmalloc(sizeof(int64_t) * G * S);
    double *loads = xmalloc(sizeof(double) * E), tm[5][101];
    int *r = xmalloc(sizeof(int) * E), *se = xmalloc(sizeof(int) * G * S);
    trace_step(&t, 0, prev);
    for (int i = 0; i < reps; i++) {
      trace_step(&t, i + 1, cur);
      for (int e = 0; e < E; e++) loads[e] = 0;
      for (int q = 0; q < G; q++)
        for (int e = 0; e < E; e++) loads[e] += (double)prev[q * E + e];
      double t0 = smoe_now();
      smoe_plan_counts(SMOE_COUNTS_GREEDY, loads, E, G, S, r, &scratch);
      double t1 = smoe_now();
      smoe_plan_slots(SMOE_SLOTS_BALANCED, loads, r, prev, E, G, S, se, &scratch);
      double t2 = smoe_now();
      smoe_split(cur, se, E, G, S, take, &scratch);
      double t3 = smoe_now();
      smoe_split_row(cur, se, E, G, S, i % G, row, &scratch);
      double t4 = smoe_now();
      memset(take, 0, sizeof(int64_t) * (size_t)G * G * S);
      double t5 = smoe_now();
      tm[0][i] = t1 - t0, tm[1][i] = t2 - t1, tm[2][i] = t3 - t2, tm[3][i] = t4 - t3;
      tm[4][i] = t5 - t4;
      memcpy(prev, cur, sizeof(int64_t) * G * E);
    }
    double md[5];
    for (int k = 0; k < 5; k++) md[k] = 1e3 * median(tm[k], reps);
    printf("| %d | %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f |\n", G, E, S,
           md[0], md[1], md[2], md[3], md[0] + md[1] + md[2], md[0] + md[1] + md[3], md[4],
           (md[0] + md[1] + md[2]) / md[4]);
    if (json_out)
      fprintf(json_out,
              "%s{\"G\": %d, \"E\": %d, \"S\": %d, \"counts_ms\": %.4f, \"slots_ms\": %.4f, "
              "\"split_table_ms\": %.4f, \"split_row_ms\": %.4f, \"zero_fill_ms\": %.4f}",
              json_rows++ ? ",\n" : "", G, E, S, md[0], md[1], md[2], md[3], md[4]);
    free(prev), free(cur), free(take), free(row), free(loads), free(r), free(se);
    free(t.expert_of), free(t.share);
  }
}

/* ------------------------------------------------------------- trace file */

/* Parses the JSON array of arrays of numbers after key in line into v (grown
 * as needed, n values so far); returns the number of rows, *cols the length
 * of each (all equal, else an error), or 0 when the key is absent. */
static int parse_rows(const char *path, const char *line, const char *key, double **v, size_t *n,
                      size_t *cap, int *cols) {
  const char *p = strstr(line, key);
  if (!p || !(p = strchr(p, '['))) return 0;
  int depth = 0, rows = 0, c = 0;
  for (; *p; p++) {
    if (*p == '[') {
      depth++, c = 0;
    } else if (*p == ']') {
      if (--depth == 0) break;
      if (*cols == 0) *cols = c;
      if (c != *cols) {
        fprintf(stderr, "plan_bench: %s: %s rows of %d and %d numbers\n", path, key, *cols, c);
        exit(1);
      }
      rows++;
    } else if (depth == 2 && (*p == '-' || (*p >= '0' && *p <= '9'))) {
      char *end;
      double x = strtod(p, &end);
      if (*n == *cap && !(*v = realloc(*v, sizeof(double) * (*cap *= 2)))) exit(1);
      (*v)[(*n)++] = x < 0 ? 0 : x, c++, p = end - 1;
    }
  }
  return rows;
}

/* Reads each line's "expert_counts" (per layer, E global counts) into counts
 * (steps, L, E), allocated here; *run_imb: the mean over steps and layers of
 * the logged "rank_tokens" max / mean (0 if absent), *run_G their ranks.
 * Returns the number of steps. */
static int read_trace(const char *path, int *L, int *E, double **counts, double *run_imb,
                      int *run_G) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "plan_bench: cannot open %s\n", path);
    exit(1);
  }
  size_t cap = 1 << 16, n = 0, rcap = 1 << 10;
  double *v = xmalloc(sizeof(double) * cap), *rt = xmalloc(sizeof(double) * rcap), imb = 0;
  char *line = NULL;
  size_t len = 0;
  int steps = 0, n_imb = 0;
  *L = *E = *run_G = 0;
  while (getline(&line, &len, f) > 0) {
    int l = parse_rows(path, line, "\"expert_counts\"", &v, &n, &cap, E);
    if (l == 0) continue;
    if (*L == 0) *L = l;
    if (l != *L) {
      fprintf(stderr, "plan_bench: %s: a line with %d layers (expected %d)\n", path, l, *L);
      exit(1);
    }
    size_t rn = 0;
    int rl = parse_rows(path, line, "\"rank_tokens\"", &rt, &rn, &rcap, run_G);
    for (int k = 0; k < rl; k++) {
      double mx = 0, sum = 0;
      for (int g = 0; g < *run_G; g++) mx = fmax(mx, rt[k * *run_G + g]), sum += rt[k * *run_G + g];
      if (sum > 0) imb += mx * *run_G / sum, n_imb++;
    }
    steps++;
  }
  free(line), free(rt);
  fclose(f);
  *counts = v;
  *run_imb = n_imb ? imb / n_imb : 0;
  return steps;
}

static void trace_table(const char *path, int G) {
  int L, E, run_G;
  double *v, run_imb;
  int steps = read_trace(path, &L, &E, &v, &run_imb, &run_G);
  if (steps < 2) {
    fprintf(stderr, "plan_bench: %s has %d steps with expert_counts (need 2)\n", path, steps);
    exit(1);
  }
  if (G <= 0) G = run_G > 0 ? run_G : 4;
  printf(
      "\n`%s`: %d steps, %d layers, %d experts; planned for G = %d from the previous step's "
      "counts, each expert's tokens split evenly over the sources.",
      path, steps, L, E, G);
  if (run_imb > 0)
    printf(" The run itself logged a mean imbalance of %.3f on %d ranks (rank_tokens).", run_imb,
           run_G);
  printf("\n\n");
  printf("| trace | G | E | S | static | symi | eplb | swiftmoe | symi dropped |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  const int per = (E + G - 1) / G;
  for (int w = 0; w < 2; w++) {
    const int S = w == 0 ? (2 * E / G > per ? 2 * E / G : per) : per + 1;
    if (w == 1 && S == (2 * E / G > per ? 2 * E / G : per)) break;
    sim_t m;
    sim_init(&m, E, G, S, (steps - 1) * L);
    int64_t *prev = xmalloc(sizeof(int64_t) * G * E), *cur = xmalloc(sizeof(int64_t) * G * E);
    for (int l = 0; l < L; l++)
      for (int s = 1; s < steps; s++) {
        for (int k = 0; k < 2; k++) {
          const double *c = v + ((size_t)(s - 1 + k) * L + l) * E;
          int64_t *out = k ? cur : prev;
          for (int e = 0; e < E; e++) {
            int64_t n = (int64_t)llround(c[e]);
            for (int q = 0; q < G; q++) out[q * E + e] = n / G + (q < n % G);
          }
        }
        sim_step(&m, prev, cur);
      }
    print_row("file", &m);
    sim_free(&m);
    free(prev), free(cur);
  }
  free(v);
}

int main(int argc, char **argv) {
  int quick = 0, hedge = 0, G = 0; /* trace file ranks: --ranks, else the run's, else 4 */
  const char *trace = NULL, *json = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--hedge"))
      hedge = 1;
    else if (!strcmp(argv[i], "--trace") && i + 1 < argc)
      trace = argv[++i];
    else if (!strcmp(argv[i], "--ranks") && i + 1 < argc)
      G = atoi(argv[++i]) > 0 ? atoi(argv[i]) : -1;
    else if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json = argv[++i];
    else {
      fprintf(stderr,
              "usage: plan_bench [--quick] [--hedge] [--trace metrics.jsonl [--ranks G]] [--json "
              "PATH]\n");
      return 2;
    }
  }
  if (G < 0) {
    fprintf(stderr, "plan_bench: --ranks must be >= 1\n");
    return 2;
  }
  if (json && !(json_out = fopen(json, "w"))) {
    fprintf(stderr, "plan_bench: cannot write %s\n", json);
    return 1;
  }
  if (hedge) {
    hedge_table(quick);
    return 0;
  }
  if (json_out) fprintf(json_out, "{\"timing\": [\n");
  time_table(quick);
  if (json_out) fprintf(json_out, "],\n\"balance\": [\n");
  json_rows = 0;
  balance_table(quick);
  if (trace) trace_table(trace, G);
  if (json_out) fprintf(json_out, "]}\n"), fclose(json_out);
  return 0;
}
