/* plans.c: `swiftmoe ckpt plans`: the placement log as a summary, a table,
 * CSV, JSON lines or a heatmap (see plans.h). */
#define _POSIX_C_SOURCE 200809L
#include "plans.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "ckpt.h"
#include "plans_plot.h"
#include "policy.h"
#include "split.h"

/* ------------------------------------------------------------ the stores */

/* The highest N of a folder's rank-N entries, or -1. */
static int max_rank(const char *dir) {
  DIR *d = opendir(dir);
  int max = -1;
  for (struct dirent *e; d && (e = readdir(d));) {
    int r;
    char extra;
    if (sscanf(e->d_name, "rank-%d%c", &r, &extra) == 1 && r >= 0 && r < 1 << 20 && r > max)
      max = r;
  }
  if (d) closedir(d);
  return max;
}

int smoe_stores_open(const char *arg, smoe_stores_t *st, smoe_err_t *err) {
  memset(st, 0, sizeof *st);
  struct stat sb;
  snprintf(st->dir, sizeof st->dir, "%s/state", arg);
  if (stat(st->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) snprintf(st->dir, sizeof st->dir, "%s", arg);
  if (stat(st->dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return smoe_fail(err, "cannot open %s: no such folder", st->dir);
  char copies[SMOE_PATHLEN + 32];
  smoe_ckpt_copy_dir(st->dir, copies, sizeof copies);
  int max = max_rank(st->dir), cmax = max_rank(copies);
  if (max < 0)
    return smoe_fail(err,
                     "%s is not a state folder: it holds no state store (no rank-N folders; "
                     "give a run folder or its checkpoint.dir)",
                     st->dir);
  st->n = (cmax > max ? cmax : max) + 1;
  st->s = xcalloc((size_t)st->n, sizeof *st->s);
  st->copy = xcalloc((size_t)st->n, sizeof *st->copy);
  st->from_copy = xcalloc((size_t)st->n, sizeof *st->from_copy);
  for (int r = 0; r < st->n; r++) {
    if (smoe_store_exists(copies, r) && !(st->copy[r] = smoe_store_open_readonly(copies, r, err))) {
      smoe_stores_close(st);
      return -1;
    }
    if (!smoe_store_exists(st->dir, r) && st->copy[r]) {
      fprintf(stderr, "swiftmoe: rank %d's state store is missing from %s: reading the copy the "
              "next rank kept (%s/rank-%d)\n", r, st->dir, copies, r);
      st->s[r] = st->copy[r], st->from_copy[r] = 1;
    } else if (!(st->s[r] = smoe_store_open_readonly(st->dir, r, err))) {
      smoe_stores_close(st);
      return -1;
    }
  }
  return 0;
}

void smoe_stores_close(smoe_stores_t *st) {
  for (int r = 0; r < st->n && st->s; r++) {
    if (st->copy && st->copy[r] != st->s[r]) smoe_store_close(st->copy[r]);
    smoe_store_close(st->s[r]);
  }
  free(st->s), free(st->copy), free(st->from_copy);
  st->s = st->copy = NULL, st->from_copy = NULL, st->n = 0;
}

/* ------------------------------------------------------------ the loader */

typedef struct {
  smoe_plans_t *p;
  int64_t lo, hi;
  int cap;
  smoe_err_t err;
  int failed;
} collect_t;

static int collect(void *ctx, const smoe_plog_t *r) {
  collect_t *c = ctx;
  smoe_plans_t *p = c->p;
  if (r->step < c->lo) return 0;
  if (c->hi >= 0 && r->step > c->hi) return 1; /* in step order: done */
  if (p->n == 0) {
    p->L = r->L, p->E = r->E, p->G = r->G, p->S = r->S;
  } else if (r->L != p->L || r->E != p->E || r->G != p->G || r->S != p->S) {
    smoe_fail(&c->err,
              "the record of step %lld has shapes L %d, E %d, G %d, S %d; the records "
              "before it L %d, E %d, G %d, S %d",
              (long long)r->step, r->L, r->E, r->G, r->S, p->L, p->E, p->G, p->S);
    c->failed = 1;
    return -1;
  }
  const size_t le = (size_t)p->L * p->E, lgs = (size_t)p->L * p->G * p->S;
  if (p->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    p->steps = xrealloc(p->steps, sizeof(int64_t) * (size_t)c->cap);
    p->loads = xrealloc(p->loads, sizeof(int64_t) * le * (size_t)c->cap);
    p->replicas = xrealloc(p->replicas, sizeof(int) * le * (size_t)c->cap);
    p->slot_expert = xrealloc(p->slot_expert, sizeof(int) * lgs * (size_t)c->cap);
  }
  p->steps[p->n] = r->step;
  memcpy(p->loads + le * p->n, r->loads, sizeof(int64_t) * le);
  memcpy(p->replicas + le * p->n, r->replicas, sizeof(int) * le);
  memcpy(p->slot_expert + lgs * p->n, r->slot_expert, sizeof(int) * lgs);
  p->n++;
  return 0;
}

/* One rank's own counts into p->src at the records' indices. */
typedef struct {
  smoe_plans_t *p;
  int rank, found, missing_own;
  int64_t first_missing;
  smoe_err_t err;
  int failed;
} own_t;

static int index_of(const smoe_plans_t *p, int64_t step) {
  int lo = 0, hi = p->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (p->steps[mid] == step) return mid;
    if (p->steps[mid] < step)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

static int collect_own(void *ctx, const smoe_plog_t *r) {
  own_t *o = ctx;
  smoe_plans_t *p = o->p;
  if (r->step > p->steps[p->n - 1]) return 1;
  int i = index_of(p, r->step);
  if (i < 0) return 0;
  if (r->L != p->L || r->E != p->E || r->G != p->G || r->S != p->S) {
    smoe_fail(&o->err, "rank %d's record of step %lld has other shapes than rank 0's", o->rank,
              (long long)r->step);
    o->failed = 1;
    return -1;
  }
  if (!r->own) {
    if (!o->missing_own++) o->first_missing = r->step;
    return 0;
  }
  o->found++;
  for (int l = 0; l < p->L; l++)
    memcpy(p->src + (((size_t)i * p->L + l) * p->G + o->rank) * p->E, r->own + (size_t)l * p->E,
           sizeof(int64_t) * p->E);
  return 0;
}

int smoe_plans_load(const smoe_stores_t *st, int64_t lo, int64_t hi, int sources, smoe_plans_t *p,
                    smoe_err_t *err) {
  memset(p, 0, sizeof *p);
  collect_t c = {p, lo, hi, 0, {{0}}, 0};
  smoe_err_t e;
  if (smoe_plog_scan(st->s[0], collect, &c, &e) != 0) {
    smoe_plans_free(p);
    return c.failed ? smoe_fail(err, "%s: %s", st->dir, c.err.msg) : smoe_fail(err, "%s", e.msg);
  }
  if (p->n == 0) {
    smoe_plans_free(p);
    if (lo > 0 || hi >= 0) {
      char upto[32] = "the end";
      if (hi >= 0) snprintf(upto, sizeof upto, "%lld", (long long)hi);
      return smoe_fail(err, "%s: the placement log has no record in steps %lld..%s", st->dir,
                       (long long)lo, upto);
    }
    return smoe_fail(err, "%s: the placement log is empty (no step has finished yet)", st->dir);
  }
  if (!sources) return 0;
  if (st->n != p->G) {
    int have = st->n;
    smoe_plans_free(p);
    if (sources == 1) return smoe_plans_load(st, lo, hi, 0, p, err);
    return smoe_fail(err,
                     "%s holds %d rank stores; the log's run had G = %d: every rank's store is "
                     "needed for its counts",
                     st->dir, have, p->G);
  }
  p->src = xcalloc((size_t)p->n * p->L * p->G * p->E, sizeof(int64_t));
  for (int q = 0; q < st->n; q++) {
    own_t o = {p, q, 0, 0, -1, {{0}}, 0};
    if (smoe_plog_scan(st->s[q], collect_own, &o, &e) != 0) {
      smoe_plans_free(p);
      return smoe_fail(err, "%s", o.failed ? o.err.msg : e.msg);
    }
    if (o.found < p->n) {
      free(p->src);
      p->src = NULL;
      if (sources == 1) return 0;
      int64_t step = o.first_missing;
      for (int i = 0; i < p->n && step < 0; i++) { /* the first step without a record there */
        smoe_plog_t r;
        if (smoe_plog_read(st->s[q], p->steps[i], &r, &e) != 1) step = p->steps[i];
        smoe_plog_free(&r);
      }
      smoe_plans_free(p);
      return smoe_fail(err, "rank %d has no per-rank counts for step %lld (%s)", q, (long long)step,
                       o.missing_own ? "its log was written before version 3 records"
                                     : "no record of that step in its store");
    }
  }
  return 0;
}

void smoe_plans_free(smoe_plans_t *p) {
  free(p->steps), free(p->loads), free(p->replicas), free(p->slot_expert), free(p->src);
  memset(p, 0, sizeof *p);
}

int smoe_plans_config(const char *arg, smoe_config_t *c, smoe_err_t *err) {
  smoe_config_defaults(c);
  char path[SMOE_PATHLEN + 32];
  const char *tries[] = {"%s/config.ini", "%s/../config.ini"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, tries[i], arg);
    if (access(path, R_OK) != 0) continue;
    if (smoe_config_load(c, path, err) != 0) return -1;
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ the views */

typedef struct {
  const char *dir;
  int layer;      /* -1: every layer (table: 0) */
  int64_t lo, hi; /* steps; hi -1: to the end */
  int every;
  const char *format; /* summary table csv json svg png */
  const char *out;
  int follow, overwrite;
} plans_args_t;

/* What the run was (config.ini when there is one). */
typedef struct {
  int have;
  char policy[32];
  int K, split_mode;
} run_info_t;

static void run_info(const char *dir, run_info_t *ri) {
  smoe_config_t c;
  smoe_err_t e;
  memset(ri, 0, sizeof *ri);
  ri->have = smoe_plans_config(dir, &c, &e) == 1;
  snprintf(ri->policy, sizeof ri->policy, "%s", ri->have ? c.policy : "?");
  ri->K = ri->have ? c.top_k : 1;
  smoe_policy_kind_t k;
  ri->split_mode =
      ri->have && smoe_policy_kind(c.policy, &k, &e) == 0 ? smoe_policy_split_mode(k) : 1;
}

/* The tokens each rank computed (G) of layer l's loads in record i under
 * record i-1's placement: the run's split (even for symi, else the
 * load-aware one, which is every token to the one replica where an expert
 * has one), from the ranks' own counts when loaded, else all as if from
 * rank 0 (the same maximum but for rounding). Drops are not applied. */
static void rank_loads(const smoe_plans_t *p, int i, int l, int split_mode, int64_t *load,
                       int64_t *counts, int64_t *take, smoe_arena_t *a) {
  const int G = p->G, E = p->E, S = p->S;
  const int *se = p->slot_expert + ((size_t)(i - 1) * p->L + l) * G * S;
  if (p->src) {
    memcpy(counts, p->src + ((size_t)i * p->L + l) * G * E, sizeof(int64_t) * G * E);
  } else {
    memset(counts, 0, sizeof(int64_t) * G * E);
    memcpy(counts, p->loads + ((size_t)i * p->L + l) * E, sizeof(int64_t) * E);
  }
  if (split_mode == 2)
    smoe_split_even(counts, se, E, G, S, take, a);
  else
    smoe_split(counts, se, E, G, S, take, a);
  smoe_split_rank_load(take, G, S, load);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(const double *sorted, int n, double q) { /* nearest rank */
  if (n == 0) return 0;
  int k = (int)ceil(q * n) - 1;
  return sorted[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void print_summary(FILE *f, const smoe_plans_t *p, const run_info_t *ri, const char *dir,
                          const plans_args_t *a) {
  const int L = p->L, E = p->E, G = p->G, S = p->S, n = p->n;
  fprintf(f,
          "%s: %d record%s, steps %lld..%lld; L %d, E %d, G %d ranks x S %d slots; policy %s%s\n",
          dir, n, n == 1 ? "" : "s", (long long)p->steps[0], (long long)p->steps[n - 1], L, E, G, S,
          ri->policy, ri->have ? "" : " (no config.ini: loads counted per assignment)");
  fprintf(f,
          "  min, max: an expert's tokens per step over the layer's mean; MaxVio: (max - mean) / "
          "mean per step\n");
  fprintf(f,
          "  p50 p95 p99: the busiest rank's tokens over the mean, under the plan it ran with; "
          "bal: mean / max\n");
  fprintf(f, "%5s %6s %6s  %6s %6s  %5s %5s %5s  %5s  %4s %5s  %6s  %s\n", "layer", "min", "max",
          "MaxVio", "max", "p50", "p95", "p99", "bal", "dead", "coll", "churn",
          "hottest: steps, longest run");
  smoe_arena_t ar = {0};
  int64_t *load = xmalloc(sizeof(int64_t) * G), *counts = xmalloc(sizeof(int64_t) * G * E);
  int64_t *take = xmalloc(sizeof(int64_t) * (size_t)G * G * S);
  double *busy = xmalloc(sizeof(double) * n), *tot = xmalloc(sizeof(double) * E);
  int *hot_count = xmalloc(sizeof(int) * E), *hot_run = xmalloc(sizeof(int) * E);
  for (int l = 0; l < L; l++) {
    if (a->layer >= 0 && l != a->layer) continue;
    memset(tot, 0, sizeof(double) * E);
    memset(hot_count, 0, sizeof(int) * E), memset(hot_run, 0, sizeof(int) * E);
    double vio_sum = 0, vio_max = 0, bal_sum = 0, churn = 0;
    int nb = 0, collapsed = 0, prev_hot = -1, run = 0, churn_n = 0;
    for (int i = 0; i < n; i++) {
      const int64_t *ld = p->loads + ((size_t)i * L + l) * E;
      int64_t sum = 0, mx = 0;
      int hot = 0;
      for (int e = 0; e < E; e++) {
        tot[e] += (double)ld[e], sum += ld[e];
        if (ld[e] > mx) mx = ld[e], hot = e;
      }
      double mean = (double)sum / E;
      double vio = mean > 0 ? ((double)mx - mean) / mean : 0;
      vio_sum += vio;
      if (vio > vio_max) vio_max = vio;
      if (sum > 0 && (double)mx > 0.5 * (double)sum / ri->K) collapsed++;
      hot_count[hot]++;
      run = hot == prev_hot ? run + 1 : 1;
      prev_hot = hot;
      if (run > hot_run[hot]) hot_run[hot] = run;
      if (i > 0 && p->steps[i - 1] == p->steps[i] - 1) { /* the plan that ran, and churn */
        rank_loads(p, i, l, ri->split_mode, load, counts, take, &ar);
        int64_t rmx = 0, rsum = 0;
        for (int g = 0; g < G; g++) rsum += load[g], rmx = load[g] > rmx ? load[g] : rmx;
        double b = rsum > 0 ? (double)rmx * G / (double)rsum : 1.0;
        busy[nb++] = b, bal_sum += 1 / b;
        const int *s0 = p->slot_expert + ((size_t)(i - 1) * L + l) * G * S,
                  *s1 = s0 + (size_t)L * G * S;
        int ch = 0;
        for (int s = 0; s < G * S; s++) ch += s0[s] != s1[s];
        churn += ch, churn_n++;
      }
    }
    double mean_tot = 0, mn = INFINITY, mxx = 0;
    int dead = 0, hottest = 0;
    for (int e = 0; e < E; e++) {
      mean_tot += tot[e] / E;
      if (tot[e] < mn) mn = tot[e];
      if (tot[e] > mxx) mxx = tot[e];
      if (tot[e] == 0) dead++;
      if (hot_count[e] > hot_count[hottest]) hottest = e;
    }
    qsort(busy, (size_t)nb, sizeof(double), cmp_double);
    char b50[8] = "-", b95[8] = "-", b99[8] = "-", bal[8] = "-", chs[12] = "-";
    if (nb) {
      snprintf(b50, sizeof b50, "%.2f", pct(busy, nb, 0.5));
      snprintf(b95, sizeof b95, "%.2f", pct(busy, nb, 0.95));
      snprintf(b99, sizeof b99, "%.2f", pct(busy, nb, 0.99));
      snprintf(bal, sizeof bal, "%.3f", bal_sum / nb);
      snprintf(chs, sizeof chs, "%.1f", churn / churn_n);
    }
    fprintf(f,
            "%5d %6.2f %6.2f  %6.2f %6.2f  %5s %5s %5s  %5s  %4d %5d  %6s  e%d: %d, %d\n",
            l, mean_tot > 0 ? mn / mean_tot : 0, mean_tot > 0 ? mxx / mean_tot : 0, vio_sum / n,
            vio_max, b50, b95, b99, bal, dead, collapsed, chs, hottest, hot_count[hottest],
            hot_run[hottest]);
  }
  fprintf(f,
          "dead: experts without a token in the window; coll: steps where one expert had over "
          "half the tokens;\nchurn: slots per step whose expert changed; hottest: the expert "
          "hottest in most steps\n");
  free(load), free(counts), free(take), free(busy), free(tot), free(hot_count), free(hot_run);
  smoe_arena_free(&ar);
}

/* One layer, step rows: share of the layer's tokens (and replicas) of the
 * top experts over the window, the rest as "others"; the hottest of each
 * row highlighted on a terminal. */
static void print_table(FILE *f, const smoe_plans_t *p, const plans_args_t *a, int tty) {
  const int L = p->L, E = p->E, l = a->layer < 0 ? 0 : a->layer;
  const int top = E <= 10 ? E : 8;
  double *tot = xcalloc((size_t)E, sizeof(double));
  int *order = xmalloc(sizeof(int) * E);
  for (int i = 0; i < p->n; i++)
    for (int e = 0; e < E; e++) tot[e] += (double)p->loads[((size_t)i * L + l) * E + e];
  for (int e = 0; e < E; e++) order[e] = e;
  for (int x = 1; x < E; x++) /* by total load, heaviest first (ties: lower index) */
    for (int y = x; y > 0 && tot[order[y]] > tot[order[y - 1]]; y--) {
      int t = order[y];
      order[y] = order[y - 1], order[y - 1] = t;
    }
  fprintf(f,
          "layer %d: each expert's share of the layer's tokens in the step before, x replicas "
          "planned for the step%s\n",
          l, top < E ? " (the top experts of the window, then the rest)" : "");
  fprintf(f, "%8s", "step");
  for (int j = 0; j < top; j++) fprintf(f, "  %9s%-3d", "e", order[j]);
  if (top < E) fprintf(f, "  %12s", "others");
  fprintf(f, "\n");
  for (int i = 0; i < p->n; i++) {
    if ((p->steps[i] - p->steps[0]) % a->every != 0 && i != p->n - 1) continue;
    const int64_t *ld = p->loads + ((size_t)i * L + l) * E;
    const int *rp = p->replicas + ((size_t)i * L + l) * E;
    int64_t sum = 0, mx = -1;
    int hot = 0;
    for (int e = 0; e < E; e++) {
      sum += ld[e];
      if (ld[e] > mx) mx = ld[e], hot = e;
    }
    fprintf(f, "%8lld", (long long)p->steps[i]);
    double rest = 0;
    int rest_r = 0;
    for (int j = 0; j < E; j++) {
      int e = order[j];
      double share = sum ? 100.0 * (double)ld[e] / (double)sum : 0;
      if (j >= top) {
        rest += share, rest_r += rp[e];
        continue;
      }
      char cell[24];
      snprintf(cell, sizeof cell, "%5.1f%% x%d", share, rp[e]);
      if (tty && e == hot)
        fprintf(f, "  \033[1;7m%12s\033[0m", cell);
      else
        fprintf(f, "  %12s", cell);
    }
    if (top < E) {
      char cell[24];
      snprintf(cell, sizeof cell, "%5.1f%% x%d", rest, rest_r);
      fprintf(f, "  %12s", cell);
    }
    fprintf(f, "\n");
  }
  free(tot), free(order);
}

static void print_csv(FILE *f, const smoe_plans_t *p, const plans_args_t *a) {
  const int L = p->L, E = p->E, G = p->G, S = p->S;
  fprintf(f, "step,layer,expert,load,replicas,ranks\n");
  for (int i = 0; i < p->n; i++) {
    if ((p->steps[i] - p->steps[0]) % a->every != 0) continue;
    for (int l = 0; l < L; l++) {
      if (a->layer >= 0 && l != a->layer) continue;
      const int *se = p->slot_expert + ((size_t)i * L + l) * G * S;
      for (int e = 0; e < E; e++) {
        fprintf(f, "%lld,%d,%d,%lld,%d,", (long long)p->steps[i], l, e,
                (long long)p->loads[((size_t)i * L + l) * E + e],
                p->replicas[((size_t)i * L + l) * E + e]);
        int first = 1;
        for (int g = 0; g < G; g++)
          for (int s = 0; s < S; s++)
            if (se[g * S + s] == e) fprintf(f, "%s%d", first ? "" : " ", g), first = 0;
        fprintf(f, "\n");
      }
    }
  }
}

static void print_json(FILE *f, const smoe_plans_t *p, const plans_args_t *a) {
  const int L = p->L, E = p->E, G = p->G, S = p->S;
  for (int i = 0; i < p->n; i++) {
    if ((p->steps[i] - p->steps[0]) % a->every != 0) continue;
    fprintf(f, "{\"step\":%lld,\"loads\":[", (long long)p->steps[i]);
    for (int l = 0, o = 0; l < L; l++) {
      if (a->layer >= 0 && l != a->layer) continue;
      fprintf(f, "%s[", o++ ? "," : "");
      for (int e = 0; e < E; e++)
        fprintf(f, "%s%lld", e ? "," : "", (long long)p->loads[((size_t)i * L + l) * E + e]);
      fprintf(f, "]");
    }
    fprintf(f, "],\"replicas\":[");
    for (int l = 0, o = 0; l < L; l++) {
      if (a->layer >= 0 && l != a->layer) continue;
      fprintf(f, "%s[", o++ ? "," : "");
      for (int e = 0; e < E; e++)
        fprintf(f, "%s%d", e ? "," : "", p->replicas[((size_t)i * L + l) * E + e]);
      fprintf(f, "]");
    }
    fprintf(f, "],\"slot_expert\":[");
    for (int l = 0, o = 0; l < L; l++) {
      if (a->layer >= 0 && l != a->layer) continue;
      fprintf(f, "%s[", o++ ? "," : "");
      const int *se = p->slot_expert + ((size_t)i * L + l) * G * S;
      for (int g = 0; g < G; g++) {
        fprintf(f, "%s[", g ? "," : "");
        for (int s = 0; s < S; s++) fprintf(f, "%s%d", s ? "," : "", se[g * S + s]);
        fprintf(f, "]");
      }
      fprintf(f, "]");
    }
    fprintf(f, "]}\n");
  }
}

static int draw(const smoe_plans_t *p, const plans_args_t *a, const run_info_t *ri,
                const char *path, smoe_err_t *err) {
  int *layers = xmalloc(sizeof(int) * p->L), nl = 0;
  for (int l = 0; l < p->L; l++)
    if (a->layer < 0 || l == a->layer) layers[nl++] = l;
  char title[SMOE_PATHLEN + 128];
  snprintf(title, sizeof title,
           "%s: expert load share per step, policy %s, G = %d ranks x %d slots", a->dir, ri->policy,
           p->G, p->S);
  smoe_plans_view_t v = {p->n, p->L, p->E, p->steps, p->loads, p->replicas, layers, nl, title};
  int rc = smoe_plans_plot(&v, path, strcmp(a->format, "png") == 0, err);
  free(layers);
  return rc;
}

/* Loads the window and writes one view to f (or, for the pictures, to the
 * file). Returns 0, or 1 with the error said. */
static int render(const plans_args_t *a, FILE *f, int tty, const char *picture) {
  smoe_stores_t st;
  smoe_plans_t p;
  smoe_err_t err;
  run_info_t ri;
  int summary = strcmp(a->format, "summary") == 0;
  if (smoe_stores_open(a->dir, &st, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt plans: %s\n", err.msg);
    return 1;
  }
  int rc = smoe_plans_load(&st, a->lo, a->hi, summary ? 1 : 0, &p, &err);
  smoe_stores_close(&st);
  if (rc != 0) {
    fprintf(stderr, "swiftmoe ckpt plans: %s\n", err.msg);
    return 1;
  }
  if (a->layer >= p.L) {
    fprintf(stderr, "swiftmoe ckpt plans: --layer %d: the log has layers 0..%d\n", a->layer,
            p.L - 1);
    smoe_plans_free(&p);
    return 1;
  }
  run_info(a->dir, &ri);
  if (summary)
    print_summary(f, &p, &ri, a->dir, a);
  else if (strcmp(a->format, "table") == 0)
    print_table(f, &p, a, tty);
  else if (strcmp(a->format, "csv") == 0)
    print_csv(f, &p, a);
  else if (strcmp(a->format, "json") == 0)
    print_json(f, &p, a);
  else if (draw(&p, a, &ri, picture, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt plans: %s\n", err.msg);
    rc = 1;
  }
  smoe_plans_free(&p);
  return rc;
}

static int parse_steps(const char *v, int64_t *lo, int64_t *hi) {
  char *end;
  long long a = 0, b = -1;
  if (*v != ':') {
    a = strtoll(v, &end, 10);
    if (end == v || *end != ':') return -1;
    v = end;
  }
  v++; /* past ':' */
  if (*v) {
    b = strtoll(v, &end, 10);
    if (end == v || *end) return -1;
  }
  if (a < 0 || (b >= 0 && b < a)) return -1;
  *lo = a, *hi = b;
  return 0;
}

static int plans_usage_error(const char *what, const char *v, const char *allowed) {
  fprintf(stderr, "swiftmoe ckpt plans: %s %s: %s (see 'swiftmoe ckpt plans --help')\n", what, v,
          allowed);
  return 2;
}

static const char *plans_usage =
    "usage: swiftmoe ckpt plans DIR [--layer L] [--steps A:B] [--every N]\n"
    "                           [--format summary|table|csv|json|svg|png] [--out FILE]\n"
    "                           [--overwrite] [--follow]\n\n"
    "The placement log of a run (DIR: its folder or its state folder), read-only: safe\n"
    "while the job runs. Record s holds the tokens each expert got in step s - 1 and\n"
    "the placement planned from them for step s.\n\n"
    "  --format summary  (default) per layer over the window: expert load min and max\n"
    "                    over the mean, MaxVio, the busiest rank over the mean (p50, p95,\n"
    "                    p99), balancedness, dead experts, collapsed routing, replica\n"
    "                    churn and the hottest expert; one line per layer\n"
    "  --format table    one layer (--layer, default 0), a row per step: each top\n"
    "                    expert's share of the tokens and its replicas, the rest as\n"
    "                    'others'; the hottest highlighted on a terminal\n"
    "  --format csv      step,layer,expert,load,replicas,ranks (ranks holding it, space-\n"
    "                    separated), one row per step x layer x expert\n"
    "  --format json     one line per step: loads, replicas and slots\n"
    "  --format svg|png  a heatmap of load share per expert over steps, replicas\n"
    "                    overlaid, a panel per layer (needs --out FILE)\n"
    "  --layer L         only layer L\n"
    "  --steps A:B       only steps A..B (either side may be left out: 100: or :500)\n"
    "  --every N         every N-th record (table, csv, json)\n"
    "  --out FILE        write to FILE (not replacing one that exists without --overwrite)\n"
    "  --follow          summary or table: redraw as the running job logs new steps\n"
    "                    (every 2 s; stop with Ctrl-C)\n";

int smoe_plans_command(int argc, char **argv) {
  plans_args_t a = {NULL, -1, 0, -1, 1, "summary", NULL, 0, 0};
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
      printf("%s", plans_usage);
      return 0;
    }
    if (strcmp(o, "--follow") == 0) {
      a.follow = 1;
      continue;
    }
    if (strcmp(o, "--overwrite") == 0) {
      a.overwrite = 1;
      continue;
    }
    if (strncmp(o, "--", 2) != 0) {
      if (a.dir) return plans_usage_error("extra argument", o, "expected one DIR");
      a.dir = o;
      continue;
    }
    if (!v) return plans_usage_error("option", o, "needs a value");
    i++;
    char *end;
    if (strcmp(o, "--layer") == 0) {
      long x = strtol(v, &end, 10);
      if (*end || end == v || x < 0)
        return plans_usage_error("--layer", v, "expected a layer number >= 0");
      a.layer = (int)x;
    } else if (strcmp(o, "--steps") == 0) {
      if (parse_steps(v, &a.lo, &a.hi) != 0)
        return plans_usage_error("--steps", v, "expected A:B with 0 <= A <= B (A: or :B too)");
    } else if (strcmp(o, "--every") == 0) {
      long x = strtol(v, &end, 10);
      if (*end || end == v || x < 1)
        return plans_usage_error("--every", v, "expected an integer >= 1");
      a.every = (int)x;
    } else if (strcmp(o, "--format") == 0) {
      const char *ok[] = {"summary", "table", "csv", "json", "svg", "png"};
      int found = 0;
      for (int k = 0; k < 6; k++) found |= strcmp(v, ok[k]) == 0;
      if (!found)
        return plans_usage_error("--format", v, "expected summary, table, csv, json, svg or png");
      a.format = v;
    } else if (strcmp(o, "--out") == 0) {
      a.out = v;
    } else {
      return plans_usage_error("unknown option", o, "see the options below --help");
    }
  }
  if (!a.dir) return plans_usage_error("missing", "DIR", "give a run folder or its state folder");
  int picture = strcmp(a.format, "svg") == 0 || strcmp(a.format, "png") == 0;
  if (picture && !a.out) return plans_usage_error("--format", a.format, "needs --out FILE");
  if (a.follow && strcmp(a.format, "summary") && strcmp(a.format, "table"))
    return plans_usage_error("--follow with --format", a.format, "only summary and table follow");
  if (a.out && !a.overwrite && access(a.out, F_OK) == 0) {
    fprintf(stderr, "swiftmoe ckpt plans: %s exists; choose another --out or add --overwrite\n",
            a.out);
    return 1;
  }
  if (a.follow) { /* redraw whenever a new record lands */
    int tty = isatty(1);
    for (;;) {
      if (tty) printf("\033[H\033[2J");
      time_t now = time(NULL);
      char when[32];
      strftime(when, sizeof when, "%H:%M:%S", localtime(&now));
      printf("%s (following; Ctrl-C to stop)\n", when);
      render(&a, stdout, tty, NULL);
      fflush(stdout);
      struct timespec ts = {2, 0};
      nanosleep(&ts, NULL);
    }
  }
  if (picture) return render(&a, NULL, 0, a.out);
  if (!a.out) return render(&a, stdout, isatty(1), NULL);
  char tmp[SMOE_PATHLEN + 16]; /* written whole, then renamed into place */
  snprintf(tmp, sizeof tmp, "%s.tmp", a.out);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    fprintf(stderr, "swiftmoe ckpt plans: cannot write %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  int rc = render(&a, f, 0, NULL);
  if (fclose(f) != 0 && rc == 0) {
    fprintf(stderr, "swiftmoe ckpt plans: cannot write %s: %s\n", tmp, strerror(errno));
    rc = 1;
  }
  if (rc == 0 && rename(tmp, a.out) != 0) {
    fprintf(stderr, "swiftmoe ckpt plans: cannot rename %s to %s: %s\n", tmp, a.out,
            strerror(errno));
    rc = 1;
  }
  if (rc != 0) unlink(tmp);
  return rc;
}
