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
  char path[4300];
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
  const char **argv = xcalloc(2 * (size_t)nsets + 20, sizeof *argv);
  int n = 0;
  char np[16], pol[64], fac[64];
  snprintf(np, sizeof np, "%d", G);
  argv[n++] = self, argv[n++] = "train", argv[n++] = "--nproc", argv[n++] = np;
  if (config) argv[n++] = "--config", argv[n++] = config;
  for (int i = 0; i < nsets; i++) argv[n++] = "--set", argv[n++] = sets[i];
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
  if (pid != 0) free(argv); /* the child execs from its own copy */
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

/* One comparison: the options, then what each stage adds. */
typedef struct {
  const char *preset, *out, *config, *cal;
  const char *scen_names[MAX_SCEN];
  int nscen;
  const char **sets; /* the preset's (unless --config), then the user's --set */
  int nsets;
  int G, reuse;
  double target; /* NaN: the lowest validation loss every contender reaches */
  int auto_target;
  smoe_config_t cfg;
  curve_t curves[NTRAINED];
  double steps_to[NC];
  smoe_scenario_t scs[MAX_SCEN];
  projection_t proj[MAX_SCEN][NC];
  char said[512]; /* the rates used */
} compare_t;

static const char *compare_usage =
    "usage: swiftmoe compare [--preset quick|full | --config FILE] [--scenario NAME]...\n"
    "                        [--out DIR] [--set SECTION.KEY=VALUE]... [--nproc G]\n"
    "                        [--target LOSS] [--calibration FILE] [--reuse]\n\n"
    "Trains swiftmoe, static, capacity (factor 1.0 and 1.25) and symi (1.0) on the same\n"
    "config, data and seed (each `swiftmoe train --nproc G`, in OUT/runs/NAME), projects each\n"
    "one's step time on each scenario from its own placement log (`swiftmoe sim`), adds\n"
    "flexmoe K = 10, 50, 100 and eplb on swiftmoe's loads and dropless loss curve, and\n"
    "reports steps and projected minutes to the target validation loss.\n"
    "  --preset quick|full  quick (default): D 128, 2 layers, E 16, top-1, 1000 steps (about\n"
    "                       10 minutes on 2 cores); full: the default model (D 128, 4 layers)\n"
    "                       with E 16, top-1, 1000 steps\n"
    "  --config FILE        train this config instead of a preset (--set changes either)\n"
    "  --scenario NAME      repeatable (default paper-a100x16 and h200x8)\n"
    "  --out DIR            where (default compare-out); must be new or empty unless --reuse\n"
    "  --nproc G            ranks of each training (default 4)\n"
    "  --target LOSS        default: the lowest validation loss every contender reaches\n"
    "  --calibration FILE   measured GPU rates (see 'swiftmoe sim --help')\n"
    "  --reuse              keep the runs already finished in OUT/runs, train the rest, and\n"
    "                       write the table, summary and plots again\n"
    "Writes OUT/table.md, OUT/summary.json and OUT/*.png|svg (loss vs step, loss vs projected\n"
    "time per scenario, dropped fraction, imbalance).\n";

#define FAIL(...) (fprintf(stderr, "swiftmoe compare: " __VA_ARGS__), fputc('\n', stderr), 2)

/* Parses the options into c. Returns 0, -1 for --help (printed), or 2. */
static int parse_args(compare_t *c, int argc, char **argv) {
  c->preset = NULL, c->out = "compare-out", c->G = 4, c->target = NAN;
  c->sets = xcalloc((size_t)argc + 32, sizeof *c->sets);
  const char **user = xcalloc((size_t)argc + 1, sizeof *user);
  int nuser = 0;
  char *end;
  smoe_err_t err;
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      printf("%s", compare_usage);
      free(user);
      return -1;
    }
    if (!strcmp(o, "--reuse")) {
      c->reuse = 1;
      continue;
    }
    int rc = 0;
    if (strncmp(o, "--", 2) || !v)
      rc = FAIL("%s: %s (see 'swiftmoe compare --help')", o,
                strncmp(o, "--", 2) ? "unexpected argument" : "needs a value");
    else if (i++, !strcmp(o, "--preset"))
      rc = strcmp(v, "quick") && strcmp(v, "full")
               ? FAIL("--preset %s: expected quick or full", v)
               : (c->preset = v, 0);
    else if (!strcmp(o, "--scenario"))
      rc = smoe_scenario_find(v, &c->scs[0], &err) != 0 ? FAIL("--scenario: %s", err.msg)
           : c->nscen == MAX_SCEN ? FAIL("at most %d --scenario", MAX_SCEN)
                                  : (c->scen_names[c->nscen++] = v, 0);
    else if (!strcmp(o, "--out"))
      c->out = v;
    else if (!strcmp(o, "--config"))
      c->config = v;
    else if (!strcmp(o, "--calibration"))
      c->cal = v;
    else if (!strcmp(o, "--set"))
      user[nuser++] = v;
    else if (!strcmp(o, "--nproc")) {
      long x = strtol(v, &end, 10);
      rc = end == v || *end || x < 1 || x > 1024
               ? FAIL("--nproc %s: expected an integer in 1..1024", v)
               : (c->G = (int)x, 0);
    } else if (!strcmp(o, "--target")) {
      c->target = strtod(v, &end);
      if (end == v || *end || !(c->target > 0) || !isfinite(c->target))
        rc = FAIL("--target %s: expected a loss > 0", v);
    } else {
      rc = FAIL("unknown option %s (see 'swiftmoe compare --help')", o);
    }
    if (rc) {
      free(user);
      return rc;
    }
  }
  if (c->preset && c->config) {
    free(user);
    return FAIL("give --preset or --config, not both (--set changes either)");
  }
  if (c->nscen == 0) c->scen_names[c->nscen++] = "paper-a100x16", c->scen_names[c->nscen++] = "h200x8";
  if (!c->config && !c->preset) c->preset = "quick";
  for (const char **p = !c->preset ? NULL : strcmp(c->preset, "quick") ? FULL : QUICK; p && *p; p++)
    c->sets[c->nsets++] = *p;
  c->sets[c->nsets++] = "training.threads=1";
  for (int i = 0; i < nuser; i++) c->sets[c->nsets++] = user[i];
  free(user);
  c->auto_target = !isfinite(c->target);
  return 0;
}

/* The config every contender trains with, checked before any training,
 * and the output folder. Returns 0, or 1/2 with the message said. */
static int prepare(compare_t *c) {
  smoe_err_t err;
  smoe_config_defaults(&c->cfg);
  if (c->config && smoe_config_load(&c->cfg, c->config, &err) != 0)
    return FAIL("--config %s: %s", c->config, err.msg);
  for (int i = 0; i < c->nsets; i++)
    if (smoe_config_set(&c->cfg, c->sets[i], &err) != 0)
      return FAIL("--set %s: %s", c->sets[i], err.msg);
  if (smoe_config_validate(&c->cfg, &err) != 0)
    return FAIL("the config (%s%s, --set): %s", c->preset ? "preset " : "--config ",
                c->preset ? c->preset : c->config, err.msg);
  if (c->cfg.num_experts % c->G)
    return FAIL("moe.num_experts = %d on --nproc %d ranks: static and capacity place E/G "
                "experts per rank, so G must divide E",
                c->cfg.num_experts, c->G);
  if (!c->reuse && !empty_dir(c->out))
    return FAIL("--out %s exists and is not empty: give a new folder, or --reuse to keep its "
                "finished runs and write the reports again",
                c->out);
  char path[4200];
  snprintf(path, sizeof path, "%s/runs", c->out);
  if ((mkdir(c->out, 0777) && errno != EEXIST) || (mkdir(path, 0777) && errno != EEXIST)) {
    fprintf(stderr, "swiftmoe compare: cannot create %s: %s\n", path, strerror(errno));
    return 1;
  }
  return 0;
}

/* 1. Trains the contenders (or keeps finished runs with --reuse) and reads
 * their curves. Returns 0 or 1. */
static int train_all(compare_t *c, char *self) {
  char run[4200], path[4300], log[4300];
  smoe_err_t err;
  for (int k = 0; k < NTRAINED; k++) {
    snprintf(run, sizeof run, "%s/runs/%s", c->out, CONTENDERS[k].name);
    snprintf(path, sizeof path, "%s/summary.json", run);
    snprintf(log, sizeof log, "%s.log", run);
    if (c->reuse && exists(path)) {
      printf("[%d/%d] %s: finished earlier in %s, kept\n", k + 1, NTRAINED, CONTENDERS[k].name,
             run);
    } else if (exists(run)) {
      fprintf(stderr,
              "swiftmoe compare: %s holds an unfinished run (no summary.json): move it away, or "
              "resume it with 'swiftmoe train --resume auto --out %s'\n",
              run, run);
      return 1;
    } else {
      printf("[%d/%d] training %s on %d ranks (%d steps; log %s) ...\n", k + 1, NTRAINED,
             CONTENDERS[k].name, c->G, c->cfg.steps, log);
      const double t1 = smoe_now();
      int st = train(self, c->G, c->config, c->sets, c->nsets, &CONTENDERS[k], run, log);
      if (st != 0) {
        fprintf(stderr, "swiftmoe compare: training %s failed (exit %d): see %s\n",
                CONTENDERS[k].name, st, log);
        return 1;
      }
      printf("      done in %.0f s\n", smoe_now() - t1);
    }
    if (read_curve(run, (double)c->cfg.top_k * c->cfg.n_layers, &c->curves[k], &err) != 0) {
      fprintf(stderr, "swiftmoe compare: %s\n", err.msg);
      return 1;
    }
  }
  return 0;
}

/* 2. The target and each contender's steps to it. */
static void steps_to_target(compare_t *c) {
  if (c->auto_target) { /* the lowest validation loss every contender reaches */
    c->target = -INFINITY;
    for (int k = 0; k < NTRAINED; k++) {
      double lo = INFINITY;
      for (int i = 0; i < c->curves[k].nv; i++) lo = fmin(lo, c->curves[k].val[i]);
      c->target = fmax(c->target, lo);
    }
  }
  for (int k = 0; k < NC; k++) {
    const curve_t *v = &c->curves[k < NTRAINED ? k : 0];
    c->steps_to[k] = smoe_steps_to_target(v->vstep, v->val, v->nv, c->target);
  }
}

/* 3. Each contender's step time on each scenario from its own run's
 * placement log. A contender that cannot be projected is said on stderr
 * and left out (ok = 0). Returns 0, or 1 for a calibration file. */
static int project(compare_t *c) {
  smoe_err_t err;
  snprintf(c->said, sizeof c->said, "datasheet rates (engine/cost.c)");
  for (int s = 0; s < c->nscen; s++) {
    smoe_scenario_find(c->scen_names[s], &c->scs[s], &err);
    if (c->cal && smoe_sim_calibrate(&c->scs[s], c->cal, c->said, sizeof c->said, &err) != 0) {
      fprintf(stderr, "swiftmoe compare: %s\n", err.msg);
      return 1;
    }
    for (int k = 0; k < NC; k++) {
      projection_t *p = &c->proj[s][k];
      memset(p, 0, sizeof *p);
      char run[4200];
      snprintf(run, sizeof run, "%s/runs/%s", c->out, CONTENDERS[k < NTRAINED ? k : 0].name);
      smoe_sim_loads_t loads;
      smoe_whatif_policy_t pol;
      smoe_whatif_parse(CONTENDERS[k].whatif, &pol, &err);
      if (smoe_sim_trace(run, &c->scs[s], 0, &loads, &err) != 0 ||
          smoe_sim_run(&c->scs[s], &loads, &pol, &p->r, &err) != 0) {
        fprintf(stderr, "swiftmoe compare: %s on %s: %s\n", CONTENDERS[k].name,
                c->scs[s].name, err.msg);
        smoe_sim_loads_free(&loads);
        continue;
      }
      smoe_sim_loads_free(&loads);
      p->ok = 1;
      p->steps_to = c->steps_to[k];
      p->minutes = p->steps_to >= 0 ? p->steps_to * p->r.mean.total / 60 : -1;
    }
  }
  return 0;
}

/* The goals on scenario s: swiftmoe's projected minutes over capacity-1.0's
 * and the best FlexMoE's, each split into steps x step time. */
static void goals(const compare_t *c, int s, FILE *md, cJSON *o) {
  const projection_t *sw = &c->proj[s][0];
  int best_flex = -1;
  for (int k = 5; k <= 7; k++)
    if (c->proj[s][k].ok && c->proj[s][k].minutes >= 0 &&
        (best_flex < 0 || c->proj[s][k].minutes < c->proj[s][best_flex].minutes))
      best_flex = k;
  const struct {
    const char *what;
    const projection_t *base;
    const char *base_name;
    double goal;
  } g[2] = {{"swiftmoe / capacity-1.0", &c->proj[s][2], "capacity-1.0", 0.65},
            {"swiftmoe / best FlexMoE", best_flex >= 0 ? &c->proj[s][best_flex] : NULL,
             best_flex >= 0 ? CONTENDERS[best_flex].name : "flexmoe", 0.70}};
  fprintf(md, "\nGoals (projected minutes to target; the seed paper: 0.695 and 0.741):\n\n");
  cJSON *jg = cJSON_AddArrayToObject(o, "goals");
  for (int i = 0; i < 2; i++) {
    const projection_t *b = g[i].base;
    if (!b || !b->ok || !sw->ok || b->minutes <= 0 || sw->minutes < 0) {
      fprintf(md, "- %s: not computed (a contender did not reach the target)\n", g[i].what);
      continue;
    }
    const double ratio = sw->minutes / b->minutes, steps = sw->steps_to / b->steps_to,
                 step = sw->r.mean.total / b->r.mean.total;
    const int met = ratio <= g[i].goal;
    fprintf(md, "- %s (%s): **%.3f** (goal <= %.2f: %s) = steps %.3f x step time %.3f%s\n",
            g[i].what, g[i].base_name, ratio, g[i].goal, met ? "met" : "missed", steps, step,
            met ? "" : steps > step ? "; the larger factor: steps" : "; the larger factor: step time");
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "ratio_of", g[i].what);
    cJSON_AddStringToObject(x, "baseline", g[i].base_name);
    cJSON_AddNumberToObject(x, "ratio", ratio);
    cJSON_AddNumberToObject(x, "goal", g[i].goal);
    cJSON_AddBoolToObject(x, "met", met);
    cJSON_AddNumberToObject(x, "steps_ratio", steps);
    cJSON_AddNumberToObject(x, "step_time_ratio", step);
    cJSON_AddItemToArray(jg, x);
  }
  fprintf(md, "- swiftmoe dropped %.3f%% of its token rows in training\n",
          100 * mean_of(c->curves[0].drop, c->curves[0].n));
}

/* One scenario's table and its summary.json entry. */
static void scenario_report(const compare_t *c, int s, FILE *md, cJSON *arr) {
  const smoe_scenario_t *sc = &c->scs[s];
  fprintf(md, "\n## Projected on %s (G %d, E %d, top-%d, %lld tokens per GPU per step)\n\n%s\n\n",
          sc->name, sc->G, sc->E, sc->K, (long long)smoe_cost_tokens(sc), sc->about);
  fprintf(md, "| contender | loads of | steps to target | step ms | minutes to target | vs "
              "swiftmoe | expert ms | a2a ms | sync ms | optim ms | migr ms | imbalance | "
              "dropped (sim) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  cJSON *o = cJSON_CreateObject(), *list = cJSON_CreateArray();
  cJSON_AddStringToObject(o, "name", sc->name);
  cJSON_AddItemToObject(o, "contenders", list);
  cJSON_AddItemToArray(arr, o);
  const projection_t *sw = &c->proj[s][0];
  for (int k = 0; k < NC; k++) {
    const projection_t *p = &c->proj[s][k];
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
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "name", CONTENDERS[k].name);
    cJSON_AddStringToObject(x, "policy", CONTENDERS[k].whatif);
    cJSON_AddNumberToObject(x, "steps_to_target", p->steps_to);
    cJSON_AddNumberToObject(x, "step_s", m->total);
    cJSON_AddNumberToObject(x, "minutes_to_target", p->minutes);
    cJSON_AddNumberToObject(x, "expert_s", m->expert);
    cJSON_AddNumberToObject(x, "a2a_s", m->a2a);
    cJSON_AddNumberToObject(x, "dense_s", m->dense + m->dense_comm);
    cJSON_AddNumberToObject(x, "expert_sync_s", m->expert_sync);
    cJSON_AddNumberToObject(x, "optimizer_s", m->optimizer);
    cJSON_AddNumberToObject(x, "migration_s", m->migration);
    cJSON_AddNumberToObject(x, "ckpt_s", m->ckpt);
    cJSON_AddNumberToObject(x, "imbalance_mean", p->r.r.imb_mean);
    cJSON_AddNumberToObject(x, "dropped_fraction_sim", p->r.r.dropped_frac);
    cJSON_AddNumberToObject(x, "memory_peak_bytes", p->r.memory);
    cJSON_AddItemToArray(list, x);
  }
  goals(c, s, md, o);
}

/* 4. OUT/table.md and OUT/summary.json. Returns 0 or 1. */
static int write_reports(const compare_t *c) {
  char path[4200];
  snprintf(path, sizeof path, "%s/table.md", c->out);
  FILE *md = fopen(path, "w");
  if (!md) {
    fprintf(stderr, "swiftmoe compare: cannot write %s: %s\n", path, strerror(errno));
    return 1;
  }
  const smoe_config_t *g = &c->cfg;
  fprintf(md, "# swiftmoe compare: %s%s, %d ranks, %d steps, E %d, top-%d, L %d, D %d\n\n",
          c->preset ? "preset " : "config ", c->preset ? c->preset : c->config, c->G, g->steps,
          g->num_experts, g->top_k, g->n_layers, g->dim);
  fprintf(md, "Target validation loss: **%.4f** (%s). Rates: %s.\n\n", c->target,
          c->auto_target ? "the lowest every contender reaches" : "--target", c->said);
  fprintf(md, "## Training (real, on this machine)\n\n| contender | steps to target | final val "
              "loss | dropped | imbalance (mean) | train s |\n|---|---|---|---|---|---|\n");
  cJSON *js = cJSON_CreateObject();
  cJSON_AddStringToObject(js, "preset", c->preset ? c->preset : "");
  cJSON_AddStringToObject(js, "config", c->config ? c->config : "");
  cJSON_AddNumberToObject(js, "ranks", c->G);
  cJSON_AddNumberToObject(js, "steps", g->steps);
  cJSON_AddNumberToObject(js, "target", c->target);
  cJSON_AddBoolToObject(js, "target_auto", c->auto_target);
  cJSON_AddStringToObject(js, "rates", c->said);
  cJSON *jtr = cJSON_AddArrayToObject(js, "trained");
  for (int k = 0; k < NTRAINED; k++) {
    const curve_t *v = &c->curves[k];
    const double drop = mean_of(v->drop, v->n), imb = mean_of(v->imb, v->n);
    fprintf(md, "| %s | %.0f | %.4f | %.3f%% | %.3f | %.0f |\n", CONTENDERS[k].name,
            c->steps_to[k], v->val[v->nv - 1], 100 * drop, imb, v->train_s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", CONTENDERS[k].name);
    cJSON_AddNumberToObject(o, "steps_to_target", c->steps_to[k]);
    cJSON_AddNumberToObject(o, "final_val_loss", v->val[v->nv - 1]);
    cJSON_AddNumberToObject(o, "dropped_fraction", drop);
    cJSON_AddNumberToObject(o, "imbalance_mean", imb);
    cJSON_AddNumberToObject(o, "train_s", v->train_s);
    cJSON_AddItemToArray(jtr, o);
  }
  cJSON *jsc = cJSON_AddArrayToObject(js, "scenarios");
  for (int s = 0; s < c->nscen; s++) scenario_report(c, s, md, jsc);
  fprintf(md, "\nSteps to target: the first evaluation at or below the target, interpolated "
              "between evaluations; flexmoe and eplb are dropless and replay swiftmoe's loads, "
              "so they share its curve. Step times: `swiftmoe sim` on each run's own placement "
              "log (engine/cost.h: the parts add up, no overlap).\n");
  int rc = fclose(md) != 0;
  char *text = cJSON_Print(js);
  snprintf(path, sizeof path, "%s/summary.json", c->out);
  FILE *f = fopen(path, "w");
  if (!f || fprintf(f, "%s\n", text) < 0) rc = 1;
  if (f && fclose(f) != 0) rc = 1;
  if (rc) fprintf(stderr, "swiftmoe compare: cannot write %s or table.md\n", path);
  free(text);
  cJSON_Delete(js);
  return rc;
}

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

/* 5. The plots. Returns 0 or 1. */
static int write_plots(const compare_t *c) {
  smoe_series_t ser[NC];
  smoe_err_t err;
  char title[256];
  const curve_t *v = c->curves;
  for (int k = 0; k < NTRAINED; k++)
    ser[k] = (smoe_series_t){CONTENDERS[k].name, v[k].nv, v[k].vstep_d, v[k].val, 0};
  snprintf(title, sizeof title, "validation loss vs step (%d ranks)", c->G);
  smoe_lines_view_t lv = {title, "step", "validation loss", ser, NTRAINED, c->target, "target"};
  int rc = plot_both(&lv, c->out, "loss_vs_step", &err);
  for (int s = 0; s < c->nscen && rc == 0; s++) {
    double *minutes[NC] = {0};
    int ns = 0;
    for (int k = 0; k < NC; k++) {
      if (!c->proj[s][k].ok) continue;
      const curve_t *u = &v[k < NTRAINED ? k : 0];
      minutes[k] = xcalloc((size_t)u->nv, sizeof(double));
      for (int i = 0; i < u->nv; i++) minutes[k][i] = u->vstep_d[i] * c->proj[s][k].r.mean.total / 60;
      ser[ns++] = (smoe_series_t){CONTENDERS[k].name, u->nv, minutes[k], u->val, k >= NTRAINED};
    }
    snprintf(title, sizeof title, "validation loss vs projected minutes on %.24s",
             c->scs[s].name);
    smoe_lines_view_t t = {title, "projected minutes", "validation loss", ser, ns, c->target,
                           "target"};
    char name[64];
    snprintf(name, sizeof name, "loss_vs_time_%.24s", c->scs[s].name);
    rc = plot_both(&t, c->out, name, &err);
    for (int k = 0; k < NC; k++) free(minutes[k]);
  }
  for (int k = 0; k < NTRAINED; k++)
    ser[k] = (smoe_series_t){CONTENDERS[k].name, v[k].n, v[k].step, v[k].drop, 0};
  smoe_lines_view_t d = {"dropped fraction of token rows per step (training)", "step",
                         "dropped fraction", ser, NTRAINED, NAN, NULL};
  if (rc == 0) rc = plot_both(&d, c->out, "dropped", &err);
  for (int k = 0; k < NTRAINED; k++)
    ser[k] = (smoe_series_t){CONTENDERS[k].name, v[k].n, v[k].step, v[k].imb, 0};
  smoe_lines_view_t im = {"imbalance per step (training: busiest rank's rows / mean)", "step",
                          "imbalance", ser, NTRAINED, NAN, NULL};
  if (rc == 0) rc = plot_both(&im, c->out, "imbalance", &err);
  if (rc) fprintf(stderr, "swiftmoe compare: %s\n", err.msg);
  return rc ? 1 : 0;
}

int smoe_compare_command(int argc, char **argv, char *self) {
  compare_t *c = xcalloc(1, sizeof *c);
  const double t0 = smoe_now();
  int rc = parse_args(c, argc, argv);
  if (rc == -1) rc = 0; /* --help */
  else if (rc == 0 && (rc = prepare(c)) == 0 && (rc = train_all(c, self)) == 0) {
    steps_to_target(c);
    rc = project(c);
    if (rc == 0) rc = write_reports(c);
    if (rc == 0) rc = write_plots(c);
    if (rc == 0) {
      char path[4200];
      snprintf(path, sizeof path, "%s/table.md", c->out);
      FILE *t = fopen(path, "r");
      for (int ch; t && (ch = fgetc(t)) != EOF;) putchar(ch);
      if (t) fclose(t);
      printf("\nwrote %s/table.md, summary.json and the plots in %.0f s\n", c->out,
             smoe_now() - t0);
    }
  }
  for (int k = 0; k < NTRAINED; k++) curve_free(&c->curves[k]);
  free(c->sets);
  free(c);
  return rc;
}
