/* plans_synth: a synthetic placement log at a scale this machine cannot
 * train, for `swiftmoe ckpt plans` and `swiftmoe ckpt replay` to read: G
 * rank stores, each with one record per step (the global loads, its own
 * counts, the placement the engine's swiftmoe policy plans from them), and a
 * config.ini, as a run folder holds them.
 *
 * Loads drift: per layer, a mildly skewed base popularity (log-normal,
 * sigma 0.5) times `swing` for `hot` experts that jump to other experts
 * every `jump` steps (SYMI reports per-expert loads swinging more than 16x
 * within 3 iterations); each rank's counts are its share of the N K
 * assignments, +-10% noise. With --uniform, every expert is equally popular
 * (the same noise): rebalancing then buys nothing.
 *
 * usage: plans_synth OUT_DIR [--G 64] [--E 256] [--L 8] [--K 8] [--steps 1000]
 *                    [--tokens 4096] [--hot 4] [--swing 16] [--jump 3] [--seed 1]
 *                    [--uniform]
 * OUT_DIR must not exist; "-" writes nothing and reports the records' sizes
 * (rank 0's, encoded as training would). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "config.h"
#include "policy.h"

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double unit(uint64_t *s) {
  return (double)(next_u64(s) >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv) {
  if (argc < 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
    fprintf(stderr,
            "usage: plans_synth OUT_DIR [--G N] [--E N] [--L N] [--K N] [--steps N] "
            "[--tokens N] [--hot N] [--swing X] [--jump N] [--seed N] [--uniform]\n");
    return 2;
  }
  const char *out = argv[1];
  int G = 64, E = 256, L = 8, K = 8, steps = 1000, tokens = 4096, hot = 4, jump = 3, uniform = 0;
  double swing = 16;
  uint64_t seed = 1;
  for (int i = 2; i < argc; i++) {
    const char *o = argv[i];
    if (strcmp(o, "--uniform") == 0) {
      uniform = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "plans_synth: %s needs a value\n", o);
      return 2;
    }
    const char *v = argv[++i];
    if (strcmp(o, "--G") == 0)
      G = atoi(v);
    else if (strcmp(o, "--E") == 0)
      E = atoi(v);
    else if (strcmp(o, "--L") == 0)
      L = atoi(v);
    else if (strcmp(o, "--K") == 0)
      K = atoi(v);
    else if (strcmp(o, "--steps") == 0)
      steps = atoi(v);
    else if (strcmp(o, "--tokens") == 0)
      tokens = atoi(v);
    else if (strcmp(o, "--hot") == 0)
      hot = atoi(v);
    else if (strcmp(o, "--swing") == 0)
      swing = atof(v);
    else if (strcmp(o, "--jump") == 0)
      jump = atoi(v);
    else if (strcmp(o, "--seed") == 0)
      seed = strtoull(v, NULL, 10);
    else {
      fprintf(stderr, "plans_synth: unknown option %s\n", o);
      return 2;
    }
  }
  if (G < 2 || E < 1 || L < 1 || K < 1 || K > E || steps < 1 || tokens < 1 || hot < 0 || hot > E ||
      jump < 1 || swing < 1) {
    fprintf(stderr,
            "plans_synth: need G >= 2, E, L >= 1, 1 <= K <= E, steps, tokens, jump "
            ">= 1, 0 <= hot <= E, swing >= 1\n");
    return 2;
  }
  const int dry = strcmp(out, "-") == 0;
  struct stat sb;
  if (!dry && stat(out, &sb) == 0) {
    fprintf(stderr, "plans_synth: %s exists; give a new folder\n", out);
    return 1;
  }
  char path[SMOE_PATHLEN + 32];
  snprintf(path, sizeof path, "%s/state", out);
  if (!dry && (mkdir(out, 0777) != 0 || mkdir(path, 0777) != 0)) {
    perror(out);
    return 1;
  }
  /* the run's config: the shapes, the policy and what the replay needs */
  smoe_config_t c;
  smoe_err_t err;
  smoe_config_defaults(&c);
  c.n_layers = L, c.num_experts = E, c.top_k = K, c.global_batch_size = G, c.seq_len = tokens;
  c.dim = 2048, c.expert_dim = 1408, c.steps = steps, c.seed = seed;
  snprintf(c.policy, sizeof c.policy, "swiftmoe");
  int S = smoe_slots_per_rank(c.policy, 0, E, G, &err);
  if (S < 0 || smoe_config_validate(&c, &err) != 0) {
    fprintf(stderr, "plans_synth: %s\n", err.msg);
    return 1;
  }
  char cfg[SMOE_PATHLEN + 32];
  snprintf(cfg, sizeof cfg, "%s/config.ini", out);
  FILE *f = dry ? NULL : fopen(cfg, "w");
  if (!dry && (!f || smoe_config_write(&c, f) != 0 || fclose(f) != 0)) {
    perror(cfg);
    return 1;
  }
  smoe_store_t **st = xcalloc((size_t)G, sizeof *st);
  smoe_batch_t **bt = xcalloc((size_t)G, sizeof *bt);
  for (int g = 0; g < G && !dry; g++) {
    if (!(st[g] = smoe_store_open(path, g, &err))) {
      fprintf(stderr, "plans_synth: %s\n", err.msg);
      return 1;
    }
    bt[g] = smoe_batch_new(st[g]);
  }
  smoe_policy_t pol;
  smoe_placement_t now, next;
  smoe_placement_init(&now, L, E, G, S);
  smoe_placement_init(&next, L, E, G, S);
  if (smoe_policy_init(&pol, c.policy, L, E, G, S, c.seed, c.load_ema, &err) != 0 ||
      smoe_policy_first(&pol, &now, &err) != 0) {
    fprintf(stderr, "plans_synth: %s\n", err.msg);
    return 1;
  }
  const size_t le = (size_t)L * E;
  double *base = xmalloc(sizeof(double) * le), *w = xmalloc(sizeof(double) * E);
  int *hot_e = xmalloc(sizeof(int) * ((size_t)L * hot + 1));
  int64_t *src = xmalloc(sizeof(int64_t) * le * G), *loads = xmalloc(sizeof(int64_t) * le);
  int64_t *own = xmalloc(sizeof(int64_t) * le);
  uint8_t *rec = xmalloc(smoe_plog_bound(L, E, G, S));
  uint64_t rng = seed * 0x2545f4914f6cdd1dULL + 1;
  for (size_t i = 0; i < le; i++) { /* log-normal, sigma 0.5 (Box-Muller) */
    double u1 = unit(&rng) + 1e-12, u2 = unit(&rng);
    base[i] = uniform ? 1.0 : exp(0.5 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
  }
  for (int i = 0; i < L * hot; i++) hot_e[i] = (int)(next_u64(&rng) % (uint64_t)E);
  size_t bytes = 0;
  const double assignments = (double)tokens * K;
  for (int t = 0; t < steps; t++) {
    if (t % jump == 0 && !uniform) /* the hot experts jump */
      for (int i = 0; i < L * hot; i++) hot_e[i] = (int)(next_u64(&rng) % (uint64_t)E);
    memset(loads, 0, sizeof(int64_t) * le);
    for (int l = 0; l < L; l++) {
      double sum = 0;
      for (int e = 0; e < E; e++) w[e] = base[(size_t)l * E + e];
      for (int i = 0; i < hot && !uniform; i++) w[hot_e[l * hot + i]] *= swing;
      for (int e = 0; e < E; e++) sum += w[e];
      for (int q = 0; q < G; q++)
        for (int e = 0; e < E; e++) {
          double v = assignments * w[e] / sum * (1 + 0.1 * (2 * unit(&rng) - 1));
          int64_t n = (int64_t)floor(v + unit(&rng)); /* unbiased rounding */
          if (n > tokens) n = tokens;                 /* an expert gets a token at most once */
          src[((size_t)l * G + q) * E + e] = n;
          loads[(size_t)l * E + e] += n;
        }
    }
    smoe_policy_next(&pol, loads, src, t + 1, &now, &next);
    for (int q = 0; q < (dry ? 1 : G); q++) {
      for (int l = 0; l < L; l++)
        memcpy(own + (size_t)l * E, src + ((size_t)l * G + q) * E, sizeof(int64_t) * E);
      smoe_plog_t r = {L, E, G, S, t + 1, loads, next.replicas, next.slot_expert, q, own};
      size_t n = smoe_plog_encode(&r, rec, smoe_plog_bound(L, E, G, S), &err);
      if (n == 0) {
        fprintf(stderr, "plans_synth: %s\n", err.msg);
        return 1;
      }
      bytes += n;
      if (dry) continue;
      uint8_t k[8];
      for (int i = 0; i < 8; i++) k[i] = (uint8_t)((uint64_t)(t + 1) >> (56 - 8 * i));
      smoe_batch_put(bt[q], SMOE_CF_PLACEMENT, k, 8, rec, n);
      if (smoe_batch_count(bt[q]) >= 64 || t == steps - 1) {
        if (smoe_store_write(st[q], bt[q], SMOE_WRITE_NO_WAL, &err) != 0) {
          fprintf(stderr, "plans_synth: %s\n", err.msg);
          return 1;
        }
        smoe_batch_clear(bt[q]);
      }
    }
    smoe_placement_copy(&now, &next);
    if ((t + 1) % 100 == 0) fprintf(stderr, "plans_synth: %d/%d steps\n", t + 1, steps);
  }
  for (int g = 0; g < G && !dry; g++) {
    if (smoe_store_persist(st[g], &err) != 0) {
      fprintf(stderr, "plans_synth: %s\n", err.msg);
      return 1;
    }
    smoe_batch_free(bt[g]);
    smoe_store_close(st[g]);
  }
  printf(
      "%s: %d steps, L %d, E %d, G %d, S %d, K %d, %d tokens per rank; records %.1f KiB per "
      "rank per step (raw arrays %.1f KiB), %.1f MiB in all\n",
      out, steps, L, E, G, S, K, tokens, (double)bytes / steps / (dry ? 1 : G) / 1024,
      (double)(3 * le + (size_t)L * G * S) * 4 / 1024, (double)bytes / (1 << 20));
  smoe_policy_free(&pol);
  smoe_placement_free(&now), smoe_placement_free(&next);
  free(st), free(bt), free(base), free(w), free(hot_e), free(src), free(loads), free(own),
      free(rec);
  return 0;
}
