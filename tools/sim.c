/* sim.c: `swiftmoe sim` (sim.h). */
#define _POSIX_C_SOURCE 200809L
#include "sim.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plans.h"

/* ------------------------------------------------------------ loads */

typedef struct {
  double rem;
  int e;
} rank_t;

/* larger remainder first, then the lower expert */
static int by_remainder(const void *a, const void *b) {
  const rank_t *x = a, *y = b;
  return x->rem != y->rem ? (x->rem < y->rem ? 1 : -1) : x->e - y->e;
}

int smoe_sim_trace(const char *dir, smoe_scenario_t *sc, int max_steps, smoe_sim_loads_t *out,
                   smoe_err_t *err) {
  memset(out, 0, sizeof *out);
  smoe_stores_t st;
  smoe_plans_t p;
  if (smoe_stores_open(dir, &st, err) != 0) return -1;
  int rc = smoe_plans_load(&st, 0, -1, 0, &p, err);
  smoe_stores_close(&st);
  if (rc != 0) return -1;
  const int n = max_steps > 0 && max_steps < p.n ? max_steps : p.n, L = sc->L, E = sc->E,
            Et = p.E;
  const int64_t rows = (int64_t)sc->G * smoe_cost_tokens(sc) * sc->K;
  out->n = n, out->L = L, out->E = E, out->K = sc->K;
  out->counts = xcalloc((size_t)n * L * E, sizeof(int64_t));
  double *rem = xcalloc((size_t)E, sizeof(double)), *share = xcalloc((size_t)E, sizeof(double));
  rank_t *order = xcalloc((size_t)E, sizeof *order);
  for (int t = 0; t < n; t++)
    for (int l = 0; l < L; l++) {
      const int64_t *in = p.loads + ((size_t)t * p.L + l % p.L) * Et;
      int64_t *o = out->counts + ((size_t)t * L + l) * E, all = 0, given = 0;
      for (int e = 0; e < Et; e++) all += in[e];
      /* scenario expert e takes trace expert e mod Et's share, split evenly
       * among the scenario experts that take it (E >= Et), or the sum of
       * the trace experts e + k E (E < Et) */
      for (int e = 0; e < E; e++) share[e] = 0;
      for (int e = 0; e < (E > Et ? E : Et); e++) {
        const int te = e % Et, se = e % E;
        const int copies = E > Et ? E / Et + (te < E % Et) : 1;
        share[se] += all ? (double)in[te] / (double)all / copies : 1.0 / (E > Et ? E : Et);
      }
      for (int e = 0; e < E; e++) { /* the shares of rows, largest remainders */
        double x = share[e] * (double)rows;
        given += o[e] = (int64_t)floor(x);
        rem[e] = x - floor(x);
      }
      if (given < rows) { /* fewer than E rows left: one each, largest remainder first */
        for (int e = 0; e < E; e++) order[e] = (rank_t){rem[e], e};
        qsort(order, (size_t)E, sizeof *order, by_remainder);
        for (int i = 0; given < rows; i++) o[order[i].e]++, given++;
      }
      while (given > rows) { /* rounding of the shares' sum above 1 */
        int best = 0;
        for (int e = 1; e < E; e++) best = o[e] > o[best] ? e : best;
        o[best]--, given--;
      }
    }
  free(share), free(order);
  free(rem);
  smoe_plans_free(&p);
  return 0;
}

void smoe_sim_loads_free(smoe_sim_loads_t *l) {
  free(l->counts);
  l->counts = NULL;
}

int smoe_sim_calibrate(smoe_scenario_t *sc, const char *path, char *said, size_t n,
                       smoe_err_t *err) {
  smoe_err_t why;
  char *text = smoe_read_text(path, "a calibration file", &why);
  if (!text) return smoe_fail(err, "--calibration: %s", why.msg);
  int rc = smoe_scenario_calibrate(sc, text, path, said, n, err);
  free(text);
  return rc;
}

/* ------------------------------------------------------------ the replay */

smoe_cost_sync_t smoe_sim_sync(const smoe_whatif_policy_t *p) {
  switch (p->kind) {
    case SMOE_WHATIF_STATIC:
    case SMOE_WHATIF_CAPACITY:
      return SMOE_SYNC_LOCAL;
    case SMOE_WHATIF_EPLB:
    case SMOE_WHATIF_FLEXMOE:
      return SMOE_SYNC_REPLICATED;
    default:
      return SMOE_SYNC_SHARDED;
  }
}

typedef struct {
  const smoe_scenario_t *sc;
  const smoe_sim_loads_t *loads;
  smoe_synth_t synth;
  smoe_cost_sync_t sync;
  smoe_sim_result_t *out;
  double sum_replan, sum_normal;
  int64_t n_normal;
} run_t;

static void counts_of(void *ctx, int64_t t, int64_t *out) {
  run_t *r = ctx;
  const smoe_sim_loads_t *l = r->loads;
  if (l->counts)
    memcpy(out, l->counts + (size_t)t * l->L * l->E, sizeof(int64_t) * (size_t)l->L * l->E);
  else
    smoe_synth_next(&r->synth, (int64_t)r->sc->G * smoe_cost_tokens(r->sc) * r->sc->K, out);
}

static void observe(void *ctx, const smoe_cost_step_t *st) {
  run_t *r = ctx;
  smoe_cost_parts_t c;
  smoe_cost_step(r->sc, r->sync, st, &c);
  smoe_cost_parts_t *m = &r->out->mean;
  m->expert += c.expert, m->a2a += c.a2a, m->dense += c.dense, m->dense_comm += c.dense_comm;
  m->expert_sync += c.expert_sync, m->optimizer += c.optimizer, m->migration += c.migration;
  m->ckpt += c.ckpt, m->total += c.total, m->fastermoe += c.fastermoe, m->memory += c.memory;
  if (c.total > r->out->step_max) r->out->step_max = c.total;
  if (c.memory > r->out->memory) r->out->memory = c.memory;
  if (st->moves > 0)
    r->sum_replan += c.total, r->out->replan_steps++;
  else
    r->sum_normal += c.total, r->n_normal++;
}

int smoe_sim_run(const smoe_scenario_t *sc, const smoe_sim_loads_t *loads,
                 const smoe_whatif_policy_t *p, smoe_sim_result_t *out, smoe_err_t *err) {
  memset(out, 0, sizeof *out);
  run_t r;
  memset(&r, 0, sizeof r);
  r.sc = sc, r.loads = loads, r.sync = smoe_sim_sync(p), r.out = out;
  if (!loads->counts) smoe_synth_init(&r.synth, loads->zipf, loads->drift, loads->L, loads->E, loads->seed);
  const double P = smoe_cost_expert_params(sc);
  const smoe_whatif_fluid_t f = {loads->n,  loads->L,    loads->E,        sc->G,
                                 loads->K,  smoe_cost_tokens(sc), counts_of, observe,
                                 &r,        sc->D * sc->elem, P * sc->elem, P * 12.0};
  smoe_whatif_policy_t q = *p; /* the scenario's slots where the policy chooses them */
  if (!q.S && sc->S && q.kind != SMOE_WHATIF_STATIC && q.kind != SMOE_WHATIF_CAPACITY) q.S = sc->S;
  const double t0 = smoe_now();
  int rc = smoe_whatif_fluid(&f, &q, &out->r, err);
  out->seconds = smoe_now() - t0;
  if (!loads->counts) smoe_synth_free(&r.synth);
  if (rc != 0) return -1;
  smoe_cost_parts_t *m = &out->mean;
  const double n = (double)loads->n;
  m->expert /= n, m->a2a /= n, m->dense /= n, m->dense_comm /= n, m->expert_sync /= n;
  m->optimizer /= n, m->migration /= n, m->ckpt /= n, m->total /= n, m->fastermoe /= n;
  m->memory /= n;
  out->replan_mean = out->replan_steps ? r.sum_replan / (double)out->replan_steps : 0;
  out->normal_mean = r.n_normal ? r.sum_normal / (double)r.n_normal : 0;
  out->migration_bytes = out->r.state_bytes + (double)out->r.moves * P * sc->elem / n;
  return 0;
}

/* ------------------------------------------------------------ the command */

static const char *DEFAULT_POLICIES[] = {"static",   "capacity:1.0", "capacity:1.25",
                                         "symi:1.0", "swiftmoe",     "eplb:100",
                                         "flexmoe:10", "flexmoe:50", "flexmoe:100"};
enum { NDEFAULT = sizeof DEFAULT_POLICIES / sizeof DEFAULT_POLICIES[0] };

static const char *sim_usage =
    "usage: swiftmoe sim [--scenario NAME] [--trace DIR | --synthetic zipf:S,drift:D]\n"
    "                    [--ranks G] [--layers L] [--steps N] [--calibration FILE]\n"
    "                    [--policy P]... [--seed N] [--format table|json] [--list-scenarios]\n\n"
    "Projects each placement policy's step time on a described cluster (engine/cost.h has\n"
    "every formula): the policy is replayed on the loads (each step planned from the steps\n"
    "before it, as training does) and each step costed part by part.\n"
    "  --scenario NAME     the cluster and model (default paper-a100x16; --list-scenarios)\n"
    "  --trace DIR         a run's placement log: its experts and top-k, its loads rescaled\n"
    "                      to the scenario's GPUs and tokens per step\n"
    "  --synthetic SPEC    Zipf(S) popularity over a ranking that drifts: each step every\n"
    "                      expert swaps rank with a random one with probability D\n"
    "                      (default zipf:1.0,drift:0.05)\n"
    "  --ranks G           GPUs (default the scenario's; more experts when E < G)\n"
    "  --layers L          MoE layers (default the scenario's)\n"
    "  --steps N           steps (default 1000 synthetic, every record of a trace)\n"
    "  --calibration FILE  measured rates (tests/gpu/calibration.py's JSON) instead of the\n"
    "                      datasheet ones\n"
    "  --policy P          repeatable (default: static, capacity:1.0, capacity:1.25,\n"
    "                      symi:1.0, swiftmoe, eplb:100, flexmoe:10, flexmoe:50, flexmoe:100;\n"
    "                      the forms of 'swiftmoe ckpt replay --help')\n";

static void list_scenarios(void) {
  const smoe_scenario_t *s;
  int n = smoe_scenarios(&s);
  for (int i = 0; i < n; i++)
    printf("%-14s G %d (%d per node), R %.0f TFLOP/s, NVLink %.0f GB/s, network %.1f GB/s, "
           "PCIe %.0f GB/s\n               %s\n",
           s[i].name, s[i].G, s[i].per_node, s[i].flops / 1e12, s[i].in_bw / 1e9,
           s[i].out_bw / 1e9, s[i].pcie_bw / 1e9, s[i].about);
}

static int int_arg(const char *o, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (end == v || *end || x < lo || x > hi) {
    fprintf(stderr, "swiftmoe sim: %s %s: expected an integer in %d..%d\n", o, v, lo, hi);
    return 2;
  }
  *out = (int)x;
  return 0;
}

int smoe_sim_command(int argc, char **argv) {
  const char *scen = "paper-a100x16", *trace = NULL, *synth = NULL, *cal = NULL;
  int G = 0, L = 0, steps = 0, json = 0, np = 0, seed = 1, rc = 0;
  smoe_whatif_policy_t *pols = xcalloc((size_t)argc + NDEFAULT, sizeof *pols);
  smoe_err_t err;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      printf("%s", sim_usage);
      free(pols);
      return 0;
    }
    if (!strcmp(o, "--list-scenarios")) {
      list_scenarios();
      free(pols);
      return 0;
    }
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strncmp(o, "--", 2) || !v) {
      fprintf(stderr, "swiftmoe sim: %s: %s (see 'swiftmoe sim --help')\n", o,
              strncmp(o, "--", 2) ? "unexpected argument" : "needs a value");
      rc = 2;
      break;
    }
    i++;
    if (!strcmp(o, "--scenario")) scen = v;
    else if (!strcmp(o, "--trace")) trace = v;
    else if (!strcmp(o, "--synthetic")) synth = v;
    else if (!strcmp(o, "--calibration")) cal = v;
    else if (!strcmp(o, "--ranks")) rc = int_arg(o, v, 1, 1 << 16, &G);
    else if (!strcmp(o, "--layers")) rc = int_arg(o, v, 1, 1024, &L);
    else if (!strcmp(o, "--steps")) rc = int_arg(o, v, 1, 1 << 24, &steps);
    else if (!strcmp(o, "--seed")) rc = int_arg(o, v, 0, 1 << 30, &seed);
    else if (!strcmp(o, "--format")) {
      if (strcmp(v, "table") && strcmp(v, "json")) {
        fprintf(stderr, "swiftmoe sim: --format %s: expected table or json\n", v);
        rc = 2;
      }
      json = !strcmp(v, "json");
    } else if (!strcmp(o, "--policy")) {
      if (smoe_whatif_parse(v, &pols[np++], &err) != 0) {
        fprintf(stderr, "swiftmoe sim: --policy: %s\n", err.msg);
        rc = 2;
      }
    } else {
      fprintf(stderr, "swiftmoe sim: unknown option %s (see 'swiftmoe sim --help')\n", o);
      rc = 2;
    }
  }
  if (rc == 0 && trace && synth) {
    fprintf(stderr, "swiftmoe sim: give --trace DIR or --synthetic SPEC, not both\n");
    rc = 2;
  }
  smoe_scenario_t sc;
  if (rc == 0 && smoe_scenario_find(scen, &sc, &err) != 0) {
    fprintf(stderr, "swiftmoe sim: --scenario: %s\n", err.msg);
    rc = 2;
  }
  for (int k = 0; rc == 0 && np == 0 && k < NDEFAULT; k++)
    smoe_whatif_parse(DEFAULT_POLICIES[k], &pols[k], &err);
  if (rc == 0 && np == 0) np = NDEFAULT;
  char said[512] = "datasheet rates (engine/cost.c)";
  if (rc == 0 && cal && smoe_sim_calibrate(&sc, cal, said, sizeof said, &err) != 0) {
    fprintf(stderr, "swiftmoe sim: %s\n", err.msg);
    rc = 1;
  }
  if (rc == 0 && G) smoe_scenario_resize(&sc, G);
  if (rc == 0 && L) sc.L = L;
  smoe_sim_loads_t loads = {0};
  if (rc == 0 && trace) {
    if (smoe_sim_trace(trace, &sc, steps, &loads, &err) != 0) {
      fprintf(stderr, "swiftmoe sim: --trace: %s\n", err.msg);
      rc = 1;
    }
  } else if (rc == 0) {
    double s, d;
    if (smoe_synth_parse(synth ? synth : "zipf:1.0,drift:0.05", &s, &d, &err) != 0) {
      fprintf(stderr, "swiftmoe sim: %s\n", err.msg);
      rc = 2;
    }
    loads = (smoe_sim_loads_t){steps ? steps : 1000, sc.L, sc.E, sc.K, NULL, s, d,
                               (uint64_t)seed};
  }
  if (rc != 0) {
    free(pols);
    return rc;
  }
  const double ms = 1e3;
  if (json) {
    /* the strings a user gave (a path, the calibration's name) through cJSON's escaping */
    cJSON *head = cJSON_CreateObject();
    cJSON_AddStringToObject(head, "loads", trace ? trace : synth ? synth : "zipf:1.0,drift:0.05");
    cJSON_AddStringToObject(head, "rates", said);
    char *text = cJSON_PrintUnformatted(head);
    text[strlen(text) - 1] = '\0'; /* the closing brace: the object goes on */
    printf("{\"scenario\":\"%s\",\"G\":%d,\"L\":%d,\"E\":%d,\"K\":%d,\"tokens_per_gpu\":%lld,"
           "\"steps\":%d,%s,\"policies\":[",
           sc.name, sc.G, sc.L, sc.E, sc.K, (long long)smoe_cost_tokens(&sc), loads.n, text + 1);
    free(text);
    cJSON_Delete(head);
  } else {
    printf("%s: G %d (%d per node), L %d, E %d, top-%d, %lld tokens per GPU per step, %d steps "
           "of %s; %s\n",
           sc.name, sc.G, sc.per_node < sc.G ? sc.per_node : sc.G, sc.L, sc.E, sc.K,
           (long long)smoe_cost_tokens(&sc), loads.n,
           trace ? trace : synth ? synth : "zipf:1.0,drift:0.05", said);
    printf("%-14s %8s %7s %7s %7s %7s %7s %7s %7s %6s %8s %6s %7s %8s %7s %6s\n", "policy", "step",
           "expert", "a2a", "dense", "dn.comm", "ex.sync", "optim", "migr", "ckpt", "FasterMoE",
           "imb", "drop%", "migr", "memory", "sim");
    printf("%-14s %8s %7s %7s %7s %7s %7s %7s %7s %6s %8s %6s %7s %8s %7s %6s\n", "", "ms", "ms",
           "ms", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "mean", "", "MB/step", "GB", "s");
  }
  int printed = 0;
  for (int k = 0; k < np; k++) {
    smoe_sim_result_t r;
    if (smoe_sim_run(&sc, &loads, &pols[k], &r, &err) != 0) {
      fprintf(stderr, "swiftmoe sim: %s: %s\n", pols[k].label, err.msg);
      rc = 1;
      continue;
    }
    const smoe_cost_parts_t *m = &r.mean;
    if (json) {
      printf("%s{\"policy\":\"%s\",\"step_s\":%.6g,\"parts_s\":{\"expert\":%.6g,\"a2a\":%.6g,"
             "\"dense\":%.6g,\"dense_comm\":%.6g,\"expert_sync\":%.6g,\"optimizer\":%.6g,"
             "\"migration\":%.6g,\"ckpt\":%.6g},\"fastermoe_s\":%.6g,\"step_max_s\":%.6g,"
             "\"imbalance_mean\":%.6g,\"imbalance_p95\":%.6g,\"dropped_fraction\":%.6g,"
             "\"migration_bytes_per_step\":%.6g,\"memory_peak_bytes\":%.6g,\"moves\":%lld,"
             "\"replan_steps\":%lld,\"replan_step_s\":%.6g,\"normal_step_s\":%.6g,"
             "\"sim_seconds\":%.3f}",
             printed++ ? "," : "", pols[k].label, m->total, m->expert, m->a2a, m->dense,
             m->dense_comm, m->expert_sync, m->optimizer, m->migration, m->ckpt, m->fastermoe,
             r.step_max, r.r.imb_mean, r.r.imb_p95, r.r.dropped_frac, r.migration_bytes,
             r.memory, (long long)r.r.moves, (long long)r.replan_steps, r.replan_mean,
             r.normal_mean, r.seconds);
    } else {
      printf("%-14s %8.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %6.2f %8.2f %6.3f %6.2f%% "
             "%8.1f %7.2f %6.2f\n",
             pols[k].label, m->total * ms, m->expert * ms, m->a2a * ms, m->dense * ms,
             m->dense_comm * ms, m->expert_sync * ms, m->optimizer * ms, m->migration * ms,
             m->ckpt * ms, m->fastermoe * ms, r.r.imb_mean, 100 * r.r.dropped_frac,
             r.migration_bytes / 1e6, r.memory / 1e9, r.seconds);
      if (r.replan_steps)
        printf("%-14s   %lld steps moved replicas: %.2f ms each, %.2fx the others' %.2f ms\n", "",
               (long long)r.replan_steps, r.replan_mean * ms,
               r.normal_mean > 0 ? r.replan_mean / r.normal_mean : 0, r.normal_mean * ms);
    }
  }
  if (json)
    printf("]}\n");
  else
    printf("step: mean modelled step time, the sum of the parts (no overlap); FasterMoE: "
           "its published model on the same rows\n(expert compute, exchange and weight "
           "sends only); memory: the busiest GPU's peak; engine/cost.h has the formulas\n");
  smoe_sim_loads_free(&loads);
  free(pols);
  return rc;
}
