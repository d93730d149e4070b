/* compare.c: `swiftmoe compare` (compare.h). */
#define _POSIX_C_SOURCE 200809L
#include "compare.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "lines_plot.h"
#include "sim.h"

/* The contenders: the first five are trained; the others replay the
 * swiftmoe run's loads and share its (dropless) loss curve. */
typedef struct {
  const char *name;   /* in the table and the run folder */
  const char *policy; /* placement.policy, for the trained */
  const char *factor; /* placement.capacity_factor, or NULL */
  const char *whatif; /* the policy the projection replays (whatif.h's form) */
} contender_t;

static const contender_t CONTENDERS[] = {
    {"swiftmoe", "swiftmoe", NULL, "swiftmoe"},
    {"static", "static", NULL, "static"},
    {"capacity-1.0", "capacity", "1.0", "capacity:1.0"},
    {"capacity-1.25", "capacity", "1.25", "capacity:1.25"},
    {"symi-1.0", "symi", "1.0", "symi:1.0"},
    {"flexmoe-10", NULL, NULL, "flexmoe:10"},
    {"flexmoe-50", NULL, NULL, "flexmoe:50"},
    {"flexmoe-100", NULL, NULL, "flexmoe:100"},
    {"eplb", NULL, NULL, "eplb:100"},
};
enum { NC = sizeof CONTENDERS / sizeof CONTENDERS[0], NTRAINED = 5, MAX_SCEN = 8 };

/* The presets: a model shaped like the seed paper's (E 16, top-1, so that
 * static places E/G experts per rank), small enough for a CPU. quick: the
 * five trainings in under 20 minutes on 2 cores. */
static const char *QUICK[] = {
    "model.dim=128",          "model.n_layers=2",         "model.n_heads=4",
    "model.n_kv_heads=2",     "model.seq_len=64",         "moe.num_experts=16",
    "moe.top_k=1",            "moe.expert_dim=256",       "training.global_batch_size=16",
    "training.steps=1000",    "training.eval_every=50",   "training.eval_windows=64",
    "checkpoint.interval=1000", NULL};
static const char *FULL[] = {"moe.num_experts=16",      "moe.top_k=1",
                             "training.steps=1000",     "training.eval_every=50",
                             "checkpoint.interval=500", NULL};

/* One trained run's curves (metrics.jsonl). */
typedef struct {
  int n;              /* steps logged */
  double *step, *loss, *drop, *imb;
  int nv;             /* evaluations */
  int64_t *vstep;
  double *val, *vstep_d;
  double train_s;
} curve_t;

static void curve_free(curve_t *c) {
  free(c->step), free(c->loss), free(c->drop), free(c->imb), free(c->vstep), free(c->val);
  free(c->vstep_d);
  memset(c, 0, sizeof *c);
}

static double num(const cJSON *o, const char *k) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* Reads dir/metrics.jsonl; rows_per_token: K L (a step's routed rows per
 * token). Returns 0, or -1 with err. */
static int read_curve(const char *dir, double rows_per_token, curve_t *c, smoe_err_t *err) {
  memset(c, 0, sizeof *c);
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *f = fopen(path, "r");
  if (!f) return smoe_fail(err, "%s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0, room = 0, vroom = 0;
  double prev_tokens = 0;
  while (getline(&line, &cap, f) > 0) {
    cJSON *o = cJSON_Parse(line);
    if (!o) continue; /* a torn last line */
    double step = num(o, "step"), tokens = num(o, "tokens");
    if (isfinite(step) && isfinite(num(o, "loss"))) {
      if (c->n == (int)room) {
        room = room ? 2 * room : 1024;
        c->step = xrealloc(c->step, room * sizeof(double));
        c->loss = xrealloc(c->loss, room * sizeof(double));
        c->drop = xrealloc(c->drop, room * sizeof(double));
        c->imb = xrealloc(c->imb, room * sizeof(double));
      }
      double routed = (tokens - prev_tokens) * rows_per_token;
      c->step[c->n] = step, c->loss[c->n] = num(o, "loss"), c->imb[c->n] = num(o, "imbalance");
      c->drop[c->n] = routed > 0 ? num(o, "dropped_tokens") / routed : NAN;
      c->train_s += isfinite(num(o, "step_time_s")) ? num(o, "step_time_s") : 0;
      c->n++;
      prev_tokens = tokens;
    }
    if (isfinite(step) && isfinite(num(o, "val_loss"))) {
      if (c->nv == (int)vroom) {
        vroom = vroom ? 2 * vroom : 64;
        c->vstep = xrealloc(c->vstep, vroom * sizeof(int64_t));
        c->vstep_d = xrealloc(c->vstep_d, vroom * sizeof(double));
        c->val = xrealloc(c->val, vroom * sizeof(double));
      }
      c->vstep[c->nv] = (int64_t)step, c->vstep_d[c->nv] = step, c->val[c->nv++] = num(o, "val_loss");
    }
    cJSON_Delete(o);
  }
  free(line);
  fclose(f);
  if (c->n == 0 || c->nv == 0)
    return smoe_fail(err, "%s: %s", path,
                     c->n ? "no validation loss (training.eval_every)" : "no step logged");
  return 0;
}

static double mean_of(const double *x, int n) {
  double s = 0;
  int k = 0;
  for (int i = 0; i < n; i++)
    if (isfinite(x[i])) s += x[i], k++;
  return k ? s / k : NAN;
}

/* Runs `self train --nproc G --set ... --out run`, its output in run.log.
 * Returns the exit status (or -1 with errno). */
static int train(char *self, int G, const char *config, const char **sets, int nsets,
                 const contender_t *c, const char *run, const char *log) {
  const char *argv[128];
  int n = 0;
  char np[16], pol[64], fac[64];
  snprintf(np, sizeof np, "%d", G);
  argv[n++] = self, argv[n++] = "train", argv[n++] = "--nproc", argv[n++] = np;
  if (config) argv[n++] = "--config", argv[n++] = config;
  for (int i = 0; i < nsets && n < 110; i++) argv[n++] = "--set", argv[n++] = sets[i];
  snprintf(pol, sizeof pol, "placement.policy=%s", c->policy);
  argv[n++] = "--set", argv[n++] = pol;
  if (c->factor) {
    snprintf(fac, sizeof fac, "placement.capacity_factor=%s", c->factor);
    argv[n++] = "--set", argv[n++] = fac;
  }
  argv[n++] = "--set", argv[n++] = "metrics.progress=off";
  argv[n++] = "--out", argv[n++] = run, argv[n] = NULL;
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    FILE *f = freopen(log, "w", stdout);
    if (f) dup2(fileno(stdout), 2);
    setenv("OMP_NUM_THREADS", "1", 0);
    execvp(self, (char **)argv);
    fprintf(stderr, "cannot run %s: %s\n", self, strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* The folder is missing or empty. */
static int empty_dir(const char *path) {
  DIR *d = opendir(path);
  if (!d) return errno == ENOENT;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n == 0;
}

typedef struct {
  smoe_sim_result_t r;
  double steps_to, minutes; /* -1: never reached */
  int ok;
} projection_t;

static const char *compare_usage =
    "usage: swiftmoe compare [--preset quick|full] [--scenario NAME]... [--out DIR]\n"
    "                        [--config FILE] [--set SECTION.KEY=VALUE]... [--nproc G]\n"
    "                        [--target LOSS] [--calibration FILE] [--reuse]\n\n"
    "Trains swiftmoe, static, capacity (factor 1.0 and 1.25) and symi (1.0) on the same\n"
    "config, data and seed (each `swiftmoe train --nproc G`, in OUT/runs/NAME), projects each\n"
    "one's step time on each scenario from its own placement log (`swiftmoe sim`), adds\n"
    "flexmoe K = 10, 50, 100 and eplb on swiftmoe's loads and dropless loss curve, and\n"
    "reports steps and projected minutes to the target validation loss.\n"
    "  --preset quick|full  quick (default): D 128, 2 layers, E 16, top-1, 1000 steps (about\n"
    "                       12 minutes on 2 cores); full: the default model (D 128, 4 layers)\n"
    "                       with E 16, top-1, 1000 steps. --config/--set change it further.\n"
    "  --scenario NAME      repeatable (default paper-a100x16 and h200x8)\n"
    "  --out DIR            where (default compare-out); must be new or empty unless --reuse\n"
    "  --nproc G            ranks of each training (default 4)\n"
    "  --target LOSS        default: the lowest validation loss every contender reaches\n"
    "  --calibration FILE   measured GPU rates (see 'swiftmoe sim --help')\n"
    "  --reuse              keep the runs already finished in OUT/runs, train the rest, and\n"
    "                       write the table, summary and plots again\n"
    "Writes OUT/table.md, OUT/summary.json and OUT/*.png|svg (loss vs step, loss vs projected\n"
    "time per scenario, dropped fraction, imbalance).\n";

/* The plots: each as PNG and SVG. */
static int plot_both(const smoe_lines_view_t *v, const char *out, const char *name,
                     smoe_err_t *err) {
  char path[4200];
  for (int png = 0; png < 2; png++) {
    snprintf(path, sizeof path, "%s/%s.%s", out, name, png ? "png" : "svg");
    if (smoe_lines_plot(v, path, png, err) != 0) return -1;
  }
  return 0;
}

int smoe_compare_command(int argc, char **argv, char *self) {
  const char *preset = "quick", *out = "compare-out", *config = NULL, *cal = NULL;
  const char *scen_names[MAX_SCEN];
  const char **sets = xcalloc((size_t)argc + 32, sizeof *sets);
  int nscen = 0, nsets = 0, G = 4, reuse = 0, rc = 0;
  double target = NAN;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      printf("%s", compare_usage);
      free(sets);
      return 0;
    }
    if (!strcmp(o, "--reuse")) {
      reuse = 1;
      continue;
    }
    if (strncmp(o, "--", 2) || !v) {
      fprintf(stderr, "swiftmoe compare: %s: %s (see 'swiftmoe compare --help')\n", o,
              strncmp(o, "--", 2) ? "unexpected argument" : "needs a value");
      rc = 2;
      break;
    }
    i++;
    char *end;
    if (!strcmp(o, "--preset")) {
      preset = v;
      if (strcmp(v, "quick") && strcmp(v, "full")) {
        fprintf(stderr, "swiftmoe compare: --preset %s: expected quick or full\n", v);
        rc = 2;
      }
    } else if (!strcmp(o, "--scenario")) {
      smoe_scenario_t sc;
      smoe_err_t err;
      if (smoe_scenario_find(v, &sc, &err) != 0) {
        fprintf(stderr, "swiftmoe compare: --scenario: %s\n", err.msg);
        rc = 2;
      } else if (nscen == MAX_SCEN) {
        fprintf(stderr, "swiftmoe compare: at most %d --scenario\n", MAX_SCEN);
        rc = 2;
      } else {
        scen_names[nscen++] = v;
      }
    } else if (!strcmp(o, "--out")) {
      out = v;
    } else if (!strcmp(o, "--config")) {
      config = v;
    } else if (!strcmp(o, "--calibration")) {
      cal = v;
    } else if (!strcmp(o, "--set")) {
      sets[nsets++] = v;
    } else if (!strcmp(o, "--nproc")) {
      long x = strtol(v, &end, 10);
      if (end == v || *end || x < 1 || x > 1024) {
        fprintf(stderr, "swiftmoe compare: --nproc %s: expected an integer in 1..1024\n", v);
        rc = 2;
      }
      G = (int)x;
    } else if (!strcmp(o, "--target")) {
      target = strtod(v, &end);
      if (end == v || *end || !(target > 0) || !isfinite(target)) {
        fprintf(stderr, "swiftmoe compare: --target %s: expected a loss > 0\n", v);
        rc = 2;
      }
    } else {
      fprintf(stderr, "swiftmoe compare: unknown option %s (see 'swiftmoe compare --help')\n", o);
      rc = 2;
    }
  }
  if (rc) {
    free(sets);
    return rc;
  }
  if (nscen == 0) scen_names[nscen++] = "paper-a100x16", scen_names[nscen++] = "h200x8";
  /* the preset first, the user's --set after it */
  const char **all = xcalloc((size_t)nsets + 32, sizeof *all);
  int nall = 0;
  for (const char **p = strcmp(preset, "quick") ? FULL : QUICK; *p; p++) all[nall++] = *p;
  all[nall++] = "training.threads=1";
  for (int i = 0; i < nsets; i++) all[nall++] = sets[i];
  free(sets);
  /* the config every contender trains with, checked before any training */
  smoe_config_t cfg;
  smoe_err_t err;
  smoe_config_defaults(&cfg);
  if (config && smoe_config_load(&cfg, config, &err) != 0) {
    fprintf(stderr, "swiftmoe compare: --config %s: %s\n", config, err.msg);
    free(all);
    return 2;
  }
  for (int i = 0; i < nall; i++)
    if (smoe_config_set(&cfg, all[i], &err) != 0) {
      fprintf(stderr, "swiftmoe compare: --set %s: %s\n", all[i], err.msg);
      free(all);
      return 2;
    }
  if (smoe_config_validate(&cfg, &err) != 0) {
    fprintf(stderr, "swiftmoe compare: the config (preset %s, --config, --set): %s\n", preset,
            err.msg);
    free(all);
    return 2;
  }
  if (cfg.num_experts % G) {
    fprintf(stderr,
            "swiftmoe compare: moe.num_experts = %d on --nproc %d ranks: static and capacity "
            "place E/G experts per rank, so G must divide E\n",
            cfg.num_experts, G);
    free(all);
    return 2;
  }
  if (!reuse && !empty_dir(out)) {
    fprintf(stderr,
            "swiftmoe compare: --out %s exists and is not empty: give a new folder, or --reuse "
            "to keep its finished runs and write the reports again\n",
            out);
    free(all);
    return 2;
  }
  char path[4200], log[4200];
  snprintf(path, sizeof path, "%s/runs", out);
  if ((mkdir(out, 0777) && errno != EEXIST) || (mkdir(path, 0777) && errno != EEXIST)) {
    fprintf(stderr, "swiftmoe compare: cannot create %s: %s\n", path, strerror(errno));
    free(all);
    return 1;
  }
  /* 1. train */
  const double t0 = smoe_now();
  curve_t curves[NTRAINED];
  memset(curves, 0, sizeof curves);
  for (int k = 0; k < NTRAINED && rc == 0; k++) {
    char run[4096];
    snprintf(run, sizeof run, "%s/runs/%s", out, CONTENDERS[k].name);
    snprintf(path, sizeof path, "%s/summary.json", run);
    snprintf(log, sizeof log, "%s/runs/%s.log", out, CONTENDERS[k].name);
    if (reuse && exists(path)) {
      printf("[%d/%d] %s: finished earlier in %s, kept\n", k + 1, NTRAINED, CONTENDERS[k].name,
             run);
    } else {
      if (exists(run)) {
        fprintf(stderr,
                "swiftmoe compare: %s holds an unfinished run (no summary.json): move it away, "
                "or resume it with 'swiftmoe train --resume auto --out %s'\n",
                run, run);
        rc = 1;
        break;
      }
      printf("[%d/%d] training %s on %d ranks (%d steps; log %s) ...\n", k + 1, NTRAINED,
             CONTENDERS[k].name, G, cfg.steps, log);
      const double t1 = smoe_now();
      int st = train(self, G, config, all, nall, &CONTENDERS[k], run, log);
      if (st != 0) {
        fprintf(stderr, "swiftmoe compare: training %s failed (exit %d): see %s\n",
                CONTENDERS[k].name, st, log);
        rc = 1;
        break;
      }
      printf("      done in %.0f s\n", smoe_now() - t1);
    }
    if (read_curve(run, (double)cfg.top_k * cfg.n_layers, &curves[k], &err) != 0) {
      fprintf(stderr, "swiftmoe compare: %s\n", err.msg);
      rc = 1;
    }
  }
  free(all);
  if (rc) {
    for (int k = 0; k < NTRAINED; k++) curve_free(&curves[k]);
    return rc;
  }
  /* 2. the target: the lowest validation loss every contender reaches */
  const int auto_target = !isfinite(target);
  if (auto_target) {
    target = -INFINITY;
    for (int k = 0; k < NTRAINED; k++) {
      double lo = INFINITY;
      for (int i = 0; i < curves[k].nv; i++) lo = fmin(lo, curves[k].val[i]);
      target = fmax(target, lo);
    }
  }
  double steps_to[NC];
  for (int k = 0; k < NC; k++) {
    const curve_t *c = &curves[k < NTRAINED ? k : 0];
    steps_to[k] = smoe_steps_to_target(c->vstep, c->val, c->nv, target);
  }
  /* 3. project */
  projection_t proj[MAX_SCEN][NC];
  smoe_scenario_t scs[MAX_SCEN];
  char said[512] = "datasheet rates (engine/cost.c)";
  for (int s = 0; s < nscen && rc == 0; s++) {
    smoe_scenario_find(scen_names[s], &scs[s], &err);
    if (cal && smoe_sim_calibrate(&scs[s], cal, said, sizeof said, &err) != 0) {
      fprintf(stderr, "swiftmoe compare: %s\n", err.msg);
      rc = 1;
      break;
    }
    for (int k = 0; k < NC; k++) {
      projection_t *p = &proj[s][k];
      memset(p, 0, sizeof *p);
      char run[4096];
      snprintf(run, sizeof run, "%s/runs/%s", out, CONTENDERS[k < NTRAINED ? k : 0].name);
      smoe_scenario_t sc = scs[s];
      smoe_sim_loads_t loads;
      smoe_whatif_policy_t pol;
      smoe_whatif_parse(CONTENDERS[k].whatif, &pol, &err);
      if (smoe_sim_trace(run, &sc, 0, &loads, &err) != 0 ||
          smoe_sim_run(&sc, &loads, &pol, &p->r, &err) != 0) {
        fprintf(stderr, "swiftmoe compare: %s on %s: %s\n", CONTENDERS[k].name, sc.name, err.msg);
        smoe_sim_loads_free(&loads);
        continue;
      }
      scs[s].E = sc.E, scs[s].K = sc.K; /* the trace's */
      smoe_sim_loads_free(&loads);
      p->ok = 1;
      p->steps_to = steps_to[k];
      p->minutes = steps_to[k] >= 0 ? steps_to[k] * p->r.mean.total / 60 : -1;
    }
  }
  if (rc) {
    for (int k = 0; k < NTRAINED; k++) curve_free(&curves[k]);
    return rc;
  }
  /* 4. table.md and summary.json */
  snprintf(path, sizeof path, "%s/table.md", out);
  FILE *md = fopen(path, "w");
  cJSON *js = cJSON_CreateObject();
  if (!md) {
    fprintf(stderr, "swiftmoe compare: cannot write %s: %s\n", path, strerror(errno));
    cJSON_Delete(js);
    for (int k = 0; k < NTRAINED; k++) curve_free(&curves[k]);
    return 1;
  }
  fprintf(md, "# swiftmoe compare: preset %s, %d ranks, %d steps, E %d, top-%d, L %d, D %d\n\n",
          preset, G, cfg.steps, cfg.num_experts, cfg.top_k, cfg.n_layers, cfg.dim);
  fprintf(md, "Target validation loss: **%.4f** (%s). Rates: %s.\n\n", target,
          auto_target ? "the lowest every contender reaches" : "--target", said);
  fprintf(md, "## Training (real, on this machine)\n\n| contender | steps to target | final val "
              "loss | dropped | imbalance (mean) | train s |\n|---|---|---|---|---|---|\n");
  cJSON_AddStringToObject(js, "preset", preset);
  cJSON_AddNumberToObject(js, "ranks", G);
  cJSON_AddNumberToObject(js, "steps", cfg.steps);
  cJSON_AddNumberToObject(js, "target", target);
  cJSON_AddBoolToObject(js, "target_auto", auto_target);
  cJSON_AddStringToObject(js, "rates", said);
  cJSON *jtr = cJSON_AddArrayToObject(js, "trained");
  for (int k = 0; k < NTRAINED; k++) {
    const curve_t *c = &curves[k];
    fprintf(md, "| %s | %.0f | %.4f | %.3f%% | %.3f | %.0f |\n", CONTENDERS[k].name, steps_to[k],
            c->val[c->nv - 1], 100 * mean_of(c->drop, c->n), mean_of(c->imb, c->n), c->train_s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", CONTENDERS[k].name);
    cJSON_AddNumberToObject(o, "steps_to_target", steps_to[k]);
    cJSON_AddNumberToObject(o, "final_val_loss", c->val[c->nv - 1]);
    cJSON_AddNumberToObject(o, "dropped_fraction", mean_of(c->drop, c->n));
    cJSON_AddNumberToObject(o, "imbalance_mean", mean_of(c->imb, c->n));
    cJSON_AddNumberToObject(o, "train_s", c->train_s);
    cJSON_AddItemToArray(jtr, o);
  }
  cJSON *jsc = cJSON_AddArrayToObject(js, "scenarios");
  for (int s = 0; s < nscen; s++) {
    const smoe_scenario_t *sc = &scs[s];
    fprintf(md, "\n## Projected on %s (G %d, E %d, top-%d, %lld tokens per GPU per step)\n\n%s\n\n",
            sc->name, sc->G, sc->E, sc->K, (long long)smoe_cost_tokens(sc), sc->about);
    fprintf(md, "| contender | loads of | steps to target | step ms | minutes to target | vs "
                "swiftmoe | expert ms | a2a ms | sync ms | optim ms | migr ms | imbalance | "
                "dropped (sim) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "name", sc->name);
    cJSON_AddItemToObject(o, "contenders", arr);
    cJSON_AddItemToArray(jsc, o);
    const projection_t *sw = &proj[s][0];
    int best_flex = -1;
    for (int k = 5; k <= 7; k++)
      if (proj[s][k].ok && proj[s][k].minutes >= 0 &&
          (best_flex < 0 || proj[s][k].minutes < proj[s][best_flex].minutes))
        best_flex = k;
    for (int k = 0; k < NC; k++) {
      const projection_t *p = &proj[s][k];
      if (!p->ok) {
        fprintf(md, "| %s | | | (not projected: see stderr) | | | | | | | | | |\n",
                CONTENDERS[k].name);
        continue;
      }
      const smoe_cost_parts_t *m = &p->r.mean;
      fprintf(md,
              "| %s | %s | %.0f | %.1f | %.2f | %.3f | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | "
              "%.2f%% |\n",
              CONTENDERS[k].name, CONTENDERS[k < NTRAINED ? k : 0].name, p->steps_to,
              m->total * 1e3, p->minutes, sw->ok && sw->minutes > 0 ? p->minutes / sw->minutes : NAN,
              m->expert * 1e3, m->a2a * 1e3, m->expert_sync * 1e3, m->optimizer * 1e3,
              m->migration * 1e3, p->r.r.imb_mean, 100 * p->r.r.dropped_frac);
      cJSON *c = cJSON_CreateObject();
      cJSON_AddStringToObject(c, "name", CONTENDERS[k].name);
      cJSON_AddStringToObject(c, "policy", CONTENDERS[k].whatif);
      cJSON_AddNumberToObject(c, "steps_to_target", p->steps_to);
      cJSON_AddNumberToObject(c, "step_s", m->total);
      cJSON_AddNumberToObject(c, "minutes_to_target", p->minutes);
      cJSON_AddNumberToObject(c, "expert_s", m->expert);
      cJSON_AddNumberToObject(c, "a2a_s", m->a2a);
      cJSON_AddNumberToObject(c, "dense_s", m->dense + m->dense_comm);
      cJSON_AddNumberToObject(c, "expert_sync_s", m->expert_sync);
      cJSON_AddNumberToObject(c, "optimizer_s", m->optimizer);
      cJSON_AddNumberToObject(c, "migration_s", m->migration);
      cJSON_AddNumberToObject(c, "ckpt_s", m->ckpt);
      cJSON_AddNumberToObject(c, "imbalance_mean", p->r.r.imb_mean);
      cJSON_AddNumberToObject(c, "dropped_fraction_sim", p->r.r.dropped_frac);
      cJSON_AddNumberToObject(c, "memory_peak_bytes", p->r.memory);
      cJSON_AddItemToArray(arr, c);
    }
    /* the goals, and what limits them: minutes = steps x step time */
    const projection_t *cap = &proj[s][2];
    fprintf(md, "\nGoals (projected minutes to target; the seed paper: 0.695 and 0.741):\n\n");
    const struct {
      const char *what;
      const projection_t *base;
      const char *base_name;
      double goal;
    } goals[2] = {{"swiftmoe / capacity-1.0", cap, "capacity-1.0", 0.65},
                  {"swiftmoe / best FlexMoE", best_flex >= 0 ? &proj[s][best_flex] : NULL,
                   best_flex >= 0 ? CONTENDERS[best_flex].name : "flexmoe", 0.70}};
    cJSON *jg = cJSON_AddArrayToObject(o, "goals");
    for (int g = 0; g < 2; g++) {
      const projection_t *b = goals[g].base;
      if (!b || !b->ok || !sw->ok || b->minutes <= 0 || sw->minutes < 0) {
        fprintf(md, "- %s: not computed (a contender did not reach the target)\n", goals[g].what);
        continue;
      }
      double ratio = sw->minutes / b->minutes, steps = sw->steps_to / b->steps_to,
             step = sw->r.mean.total / b->r.mean.total;
      fprintf(md,
              "- %s (%s): **%.3f** (goal <= %.2f: %s) = steps %.3f x step time %.3f; %s\n",
              goals[g].what, goals[g].base_name, ratio, goals[g].goal,
              ratio <= goals[g].goal ? "met" : "missed", steps, step,
              ratio <= goals[g].goal ? "" : steps > step ? "the steps limit it" : "the step time limits it");
      cJSON *x = cJSON_CreateObject();
      cJSON_AddStringToObject(x, "ratio_of", goals[g].what);
      cJSON_AddStringToObject(x, "baseline", goals[g].base_name);
      cJSON_AddNumberToObject(x, "ratio", ratio);
      cJSON_AddNumberToObject(x, "goal", goals[g].goal);
      cJSON_AddBoolToObject(x, "met", ratio <= goals[g].goal);
      cJSON_AddNumberToObject(x, "steps_ratio", steps);
      cJSON_AddNumberToObject(x, "step_time_ratio", step);
      cJSON_AddItemToArray(jg, x);
    }
    fprintf(md, "- swiftmoe dropped %.3f%% of its token rows in training\n",
            100 * mean_of(curves[0].drop, curves[0].n));
  }
  fprintf(md, "\nSteps to target: the first evaluation at or below the target, interpolated "
              "between evaluations; flexmoe and eplb are dropless and replay swiftmoe's loads, "
              "so they share its curve. Step times: `swiftmoe sim` on each run's own placement "
              "log (engine/cost.h: the parts add up, no overlap).\n");
  fclose(md);
  char *text = cJSON_Print(js);
  snprintf(path, sizeof path, "%s/summary.json", out);
  FILE *f = fopen(path, "w");
  if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
    fprintf(stderr, "swiftmoe compare: cannot write %s\n", path);
    rc = 1;
  }
  free(text);
  cJSON_Delete(js);
  /* 5. the plots */
  smoe_series_t ser[NC];
  double *minutes[NC];
  memset(minutes, 0, sizeof minutes);
  char title[256];
  for (int k = 0; k < NTRAINED; k++)
    ser[k] = (smoe_series_t){CONTENDERS[k].name, curves[k].nv, curves[k].vstep_d, curves[k].val, 0};
  snprintf(title, sizeof title, "validation loss vs step (%d ranks, preset %s)", G, preset);
  smoe_lines_view_t v = {title, "step", "validation loss", ser, NTRAINED, target, "target"};
  if (rc == 0 && plot_both(&v, out, "loss_vs_step", &err) != 0) rc = 1;
  for (int s = 0; s < nscen && rc == 0; s++) {
    int ns = 0;
    for (int k = 0; k < NC; k++) {
      if (!proj[s][k].ok) continue;
      const curve_t *c = &curves[k < NTRAINED ? k : 0];
      minutes[k] = xcalloc((size_t)c->nv, sizeof(double));
      for (int i = 0; i < c->nv; i++) minutes[k][i] = c->vstep_d[i] * proj[s][k].r.mean.total / 60;
      ser[ns++] = (smoe_series_t){CONTENDERS[k].name, c->nv, minutes[k], c->val, k >= NTRAINED};
    }
    snprintf(title, sizeof title, "validation loss vs projected minutes on %.24s", scs[s].name);
    smoe_lines_view_t t = {title, "projected minutes", "validation loss", ser, ns, target, "target"};
    char name[64];
    snprintf(name, sizeof name, "loss_vs_time_%.24s", scs[s].name);
    if (plot_both(&t, out, name, &err) != 0) rc = 1;
    for (int k = 0; k < NC; k++) free(minutes[k]), minutes[k] = NULL;
  }
  for (int k = 0; k < NTRAINED; k++)
    ser[k] = (smoe_series_t){CONTENDERS[k].name, curves[k].n, curves[k].step, curves[k].drop, 0};
  smoe_lines_view_t d = {"dropped fraction of token rows per step (training)", "step",
                         "dropped fraction", ser, NTRAINED, NAN, NULL};
  if (rc == 0 && plot_both(&d, out, "dropped", &err) != 0) rc = 1;
  for (int k = 0; k < NTRAINED; k++)
    ser[k] = (smoe_series_t){CONTENDERS[k].name, curves[k].n, curves[k].step, curves[k].imb, 0};
  smoe_lines_view_t im = {"imbalance per step (training: busiest rank's rows / mean)", "step",
                          "imbalance", ser, NTRAINED, NAN, NULL};
  if (rc == 0 && plot_both(&im, out, "imbalance", &err) != 0) rc = 1;
  if (rc) fprintf(stderr, "swiftmoe compare: %s\n", err.msg);
  for (int k = 0; k < NTRAINED; k++) curve_free(&curves[k]);
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/table.md", out);
    FILE *t = fopen(path, "r");
    int ch;
    while (t && (ch = fgetc(t)) != EOF) putchar(ch);
    if (t) fclose(t);
    printf("\nwrote %s/table.md, summary.json and the plots in %.0f s\n", out, smoe_now() - t0);
  }
  return rc;
}
