/* plans_plot_dump.c: draws a synthetic placement log with smoe_plans_plot,
 * for plans_plot_check.py.
 *
 *   plans_plot_dump n L E out.svg out.png [noise]
 *
 * n records (steps 100, 110, ...), L layers, E experts, every layer drawn.
 * Loads are deterministic: a base of 100..149 tokens per expert, a hot
 * expert (+2000) that drifts across half the experts over the run, starting
 * 7 experts further in each layer, and its two neighbours (+600). Replicas
 * are 1..4, growing with the expert's share. With `noise`, every load is
 * drawn from 0..999 instead: the worst case for the files' sizes. n = 0 is
 * accepted, to check that the plot refuses an empty log. Exits 0, or prints
 * the error and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "plans_plot.h"

static int arg_int(const char *s, const char *name, int lo, int hi, int *out) {
  char *end;
  long x = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || x < lo || x > hi) {
    fprintf(stderr, "plans_plot_dump: %s = '%s': want an integer in %d..%d\n", name, s, lo, hi);
    return -1;
  }
  *out = (int)x;
  return 0;
}

int main(int argc, char **argv) {
  int noise = argc == 7 && strcmp(argv[6], "noise") == 0;
  if (argc != 6 && !noise) {
    fprintf(stderr, "usage: plans_plot_dump n L E out.svg out.png [noise]\n");
    return 2;
  }
  int n, L, E;
  if (arg_int(argv[1], "n", 0, 100000, &n) || arg_int(argv[2], "L", 1, 1024, &L) ||
      arg_int(argv[3], "E", 1, 4096, &E))
    return 2;

  size_t cells = smoe_mul(smoe_mul((size_t)n, (size_t)L), (size_t)E);
  int64_t *steps = xmalloc(smoe_mul((size_t)n, sizeof *steps));
  int64_t *loads = xmalloc(smoe_mul(cells, sizeof *loads));
  int *replicas = xmalloc(smoe_mul(cells, sizeof *replicas));
  int *layers = xmalloc(smoe_mul((size_t)L, sizeof *layers));
  for (int l = 0; l < L; l++) layers[l] = l;
  for (int t = 0; t < n; t++) {
    steps[t] = 100 + 10 * (int64_t)t;
    for (int l = 0; l < L; l++) {
      size_t at = ((size_t)t * (size_t)L + (size_t)l) * (size_t)E;
      int hot = (int)((7 * (int64_t)l + (int64_t)t * E / (2 * n)) % E);
      int64_t total = 0;
      for (int e = 0; e < E; e++) {
        uint64_t h = smoe_mix64((uint64_t)at + (uint64_t)e);
        int64_t x = 100 + (int64_t)(h % 50);
        int d = (e - hot + E) % E;
        if (d == 0) x += 2000;
        if (d == 1 || d == E - 1) x += 600;
        if (noise) x = (int64_t)(h % 1000);
        loads[at + e] = x;
        total += x;
      }
      for (int e = 0; e < E; e++) {
        int64_t r = total > 0 ? 1 + loads[at + e] * E / (2 * total) : 1;
        replicas[at + e] = (int)(r < 4 ? r : 4);
      }
    }
  }

  char title[128];
  snprintf(title, sizeof title, "synthetic%s: expert load share, n = %d, L = %d, E = %d",
           noise ? " (noise)" : "", n, L, E);
  smoe_plans_view_t v = {.n = n,
                         .L = L,
                         .E = E,
                         .steps = steps,
                         .loads = loads,
                         .replicas = replicas,
                         .layers = layers,
                         .n_layers = L,
                         .title = title};
  smoe_err_t err;
  int rc = 0;
  if (smoe_plans_plot(&v, argv[4], 0, &err) || smoe_plans_plot(&v, argv[5], 1, &err)) {
    fprintf(stderr, "plans_plot_dump: %s\n", err.msg);
    rc = 1;
  }
  free(steps);
  free(loads);
  free(replicas);
  free(layers);
  return rc;
}
