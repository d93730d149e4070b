/* swiftmoe: the command-line front end. It parses arguments and calls the
 * engine; nothing else. One table per command drives parsing and --help.
 *
 * Exit codes: 0 success; 1 the run failed (data, I/O, divergence);
 * 2 bad usage: unknown command or option, bad --set, bad config file. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "config.h"
#include "data.h"
#include "eval.h"
#include "ckpt_cmd.h"
#include "compare.h"
#include "sim.h"
#include "hf.h"
#include "sample.h"
#include "weights.h"
#include "step.h"
#include "supervisor.h"
#include "train.h"

#define SMOE_VERSION "0.1.0"

typedef struct {
  const char *name; /* "--config" */
  const char *arg;  /* metavariable, NULL for a flag */
  const char *help;
} option_t;

typedef struct {
  const char *name, *summary;
  int (*run)(int argc, char **argv, char *self);
} command_t;

static int usage_error(const char *cmd, const char *fmt, const char *what) {
  fprintf(stderr, "swiftmoe%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see 'swiftmoe%s%s --help')\n", cmd ? " " : "", cmd ? cmd : "");
  return 2;
}

static void print_options(const option_t *o, int n) {
  for (int i = 0; i < n; i++) {
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", o[i].name, o[i].arg ? " " : "", o[i].arg ? o[i].arg : "");
    printf("  %-28s %s\n", left, o[i].help);
  }
}

/* Matches argv[*i] against the table; returns the option index, -1 if none.
 * Sets *value for options with an argument ("--x V" or "--x=V"). An argument
 * not starting with "--" is a positional one: returns n with *value = it. */
static int match_option(const option_t *o, int n, int argc, char **argv, int *i,
                        const char **value, const char *cmd, int *rc) {
  const char *a = argv[*i];
  if (strncmp(a, "--", 2) != 0) {
    *value = a;
    return n;
  }
  for (int k = 0; k < n; k++) {
    size_t len = strlen(o[k].name);
    if (strncmp(a, o[k].name, len) != 0 || (a[len] != '\0' && a[len] != '=')) continue;
    if (!o[k].arg) {
      if (a[len] == '=') *rc = usage_error(cmd, "option %s takes no value", o[k].name);
      return k;
    }
    if (a[len] == '=') {
      *value = a + len + 1;
    } else if (*i + 1 < argc) {
      *value = argv[++*i];
    } else {
      *rc = usage_error(cmd, "option %s needs a value", o[k].name);
    }
    return k;
  }
  *rc = usage_error(cmd, "unknown option '%s'", a);
  return -1;
}

static int positive(const char *cmd, const char *name, const char *v, int *out);

/* c <- the defaults, then the --config file (NULL: none), then each --set
 * in order. Returns 0, or 2 (bad usage) with err. */
static int resolve_config(smoe_config_t *c, const char *config_path, const char **sets,
                          int n_sets, smoe_err_t *err) {
  smoe_config_defaults(c);
  if (config_path && smoe_config_load(c, config_path, err) != 0) return 2;
  for (int i = 0; i < n_sets; i++)
    if (smoe_config_set(c, sets[i], err) != 0) return 2;
  return 0;
}

/* ------------------------------------------------------------------ train */

static const option_t train_options[] = {
    {"--config", "FILE", "INI config (default: the built-in defaults = configs/tiny.ini)"},
    {"--set", "SECTION.KEY=VALUE", "override one key; repeatable; applied after --config"},
    {"--out", "DIR", "run folder (default: runs/<UTC date-time>)"},
    {"--init-hf", "DIR", "start from HF Mixtral weights (config.json + safetensors); its "
                         "config.json sets [model] and [moe]"},
    {"--init-placement", "DIR[:STEP]", "plan step 0's placement from a recorded run's placement "
                                       "log (its mean loads up to STEP) with this run's policy: a "
                                       "load-aware static placement (= --set placement.init_from)"},
    {"--nproc", "N", "run on N local processes: re-runs this command under mpirun -np N"},
    {"--resume", "auto|STEP", "continue the run in --out from its newest checkpoint that every "
                              "rank completed (auto; none yet: from step 0), or from STEP"},
    {"--overwrite", NULL, "start over in an --out that holds an earlier run, deleting its "
                          "checkpoints, metrics and final weights (without it, such a folder is "
                          "refused)"},
    {"--help", NULL, "show this help"},
};
enum { TRAIN_CONFIG, TRAIN_SET, TRAIN_OUT, TRAIN_INIT_HF, TRAIN_INIT_PLACEMENT, TRAIN_NPROC, TRAIN_RESUME,
       TRAIN_OVERWRITE, TRAIN_HELP };
#define N_TRAIN_OPTIONS ((int)(sizeof train_options / sizeof train_options[0]))

/* --nproc N: exec mpirun -np N on this same command line without --nproc.
 * As root Open MPI needs --allow-run-as-root; above the core count,
 * --oversubscribe. Returns only on failure. */
static int exec_mpirun(int nproc, int argc, char **argv, char *self) {
  char np[16];
  snprintf(np, sizeof np, "%d", nproc);
  char **args = xcalloc((size_t)argc + 12, sizeof(char *));
  int n = 0;
  args[n++] = "mpirun";
  args[n++] = "-np";
  args[n++] = np;
  if (geteuid() == 0) args[n++] = "--allow-run-as-root";
  if (nproc > sysconf(_SC_NPROCESSORS_ONLN)) args[n++] = "--oversubscribe";
  args[n++] = "--bind-to";
  args[n++] = "none";
  args[n++] = self;
  args[n++] = "train";
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--nproc") == 0) {
      i++;
      continue;
    }
    if (strncmp(argv[i], "--nproc=", 8) == 0) continue;
    args[n++] = argv[i];
  }
  args[n] = NULL;
  execvp("mpirun", args);
  fprintf(stderr, "swiftmoe train: cannot run mpirun for --nproc %d: %s (install openmpi-bin, or "
          "launch with mpirun/srun yourself)\n", nproc, strerror(errno));
  free(args);
  return 1;
}

static int cmd_train(int argc, char **argv, char *self) {
  const char *config_path = NULL, *out = NULL, *init_hf = NULL, *resume_arg = NULL,
             *init_placement = NULL;
  int nproc = 0, overwrite = 0;
  const char **sets = xcalloc((size_t)argc, sizeof(char *));
  int n_sets = 0, rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *value = NULL;
    int k = match_option(train_options, N_TRAIN_OPTIONS, argc, argv, &i, &value, "train", &rc);
    if (rc) break;
    if (k == TRAIN_CONFIG) config_path = value;
    if (k == TRAIN_SET) sets[n_sets++] = value;
    if (k == TRAIN_OUT) out = value;
    if (k == TRAIN_INIT_HF) init_hf = value;
    if (k == TRAIN_INIT_PLACEMENT) init_placement = value;
    if (k == TRAIN_NPROC) rc = positive("train", "--nproc", value, &nproc);
    if (k == TRAIN_RESUME) resume_arg = value;
    if (k == TRAIN_OVERWRITE) overwrite = 1;
    if (k == N_TRAIN_OPTIONS) rc = usage_error("train", "unexpected argument '%s'", value);
    if (k == TRAIN_HELP) {
      printf("usage: swiftmoe train [--config FILE] [--set SECTION.KEY=VALUE ...] [--out DIR]\n"
             "                      [--resume auto|STEP | --overwrite]\n\n"
             "Trains a Mixtral-architecture MoE on this machine. The run folder gets\n"
             "config.ini (the resolved config), metrics.jsonl (one line per step),\n"
             "model.safetensors (the final weights, HF names) and summary.json.\n\noptions:\n");
      print_options(train_options, N_TRAIN_OPTIONS);
      free(sets);
      return 0;
    }
  }
  smoe_config_t c;
  smoe_err_t err = {{0}};
  if (rc == 0) rc = resolve_config(&c, config_path, sets, n_sets, &err);
  char changed[4096] = "";
  if (rc == 0 && init_hf && smoe_hf_read_config(&c, init_hf, changed, sizeof changed, &err) != 0)
    rc = 2;
  if (rc == 0 && changed[0])
    fprintf(stderr, "swiftmoe train: warning: %s/config.json overrides:\n%s", init_hf, changed);
  if (rc == 0 && init_placement) {
    char set[SMOE_PATHLEN + 32];
    snprintf(set, sizeof set, "placement.init_from=%s", init_placement);
    if (smoe_config_set(&c, set, &err) != 0) rc = 2;
  }
  if (rc == 0 && smoe_config_validate(&c, &err) != 0) rc = 2;
  free(sets);
  if (rc) {
    if (err.msg[0] && smoe_comm_launch_rank() == 0) fprintf(stderr, "swiftmoe train: %s\n", err.msg);
    return rc;
  }
  int64_t resume = SMOE_RESUME_NONE;
  if (resume_arg) {
    char *end = NULL;
    long long v = strtoll(resume_arg, &end, 10);
    if (strcmp(resume_arg, "auto") == 0)
      resume = SMOE_RESUME_AUTO;
    else if (end != resume_arg && *end == '\0' && v > 0)
      resume = v;
    else
      return usage_error("train", "--resume takes 'auto' or a step number > 0, not '%s'", resume_arg);
    if (!out) return usage_error("train", "%s needs --out, the run folder to continue", "--resume");
    if (overwrite)
      return usage_error("train", "%s", "--resume continues the run in --out and --overwrite "
                         "deletes it: give one of them");
  }
  if (overwrite) resume = SMOE_RESUME_OVERWRITE;
  if (nproc > 0) return exec_mpirun(nproc, argc, argv, self);
  char default_out[64];
  if (!out) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(default_out, sizeof default_out, "runs/%Y%m%d-%H%M%S", &tm);
    out = default_out;
  }
  smoe_comm_t *comm = smoe_comm_init(NULL, NULL);
  smoe_train_result_t res;
  if (smoe_train(&c, out, init_hf, resume, comm, &res, &err) != 0) {
    if (res.refused) { /* every rank refused alike: nothing to abort */
      if (smoe_comm_rank(comm) == 0) fprintf(stderr, "swiftmoe train: %s\n", err.msg);
      smoe_comm_finalize(comm);
      return res.refused;
    }
    if (smoe_comm_size(comm) > 1) {
      fprintf(stderr, "swiftmoe train: [rank %d] %s\n", smoe_comm_rank(comm), err.msg);
      smoe_comm_abort(comm, 1); /* the other ranks must not wait for this one */
    }
    fprintf(stderr, "swiftmoe train: %s\n", err.msg);
    smoe_comm_finalize(comm);
    return 1;
  }
  smoe_comm_finalize(comm);
  return 0;
}

/* ------------------------------------------------------------------- eval */

static const option_t eval_options[] = {
    {"--data", "FILE", "text file (bytes) or llm.c .bin tokens to score, whole and in order"},
    {"--init-hf", "DIR", "score HF Mixtral weights instead of a run folder"},
    {"--seq-len", "N", "window length (default: the model's model.seq_len)"},
    {"--batch", "N", "windows per forward pass (default 16; changes speed, not the result)"},
    {"--threads", "N", "threads (default: all cores)"},
    {"--help", NULL, "show this help"},
};
enum { EVAL_DATA, EVAL_INIT_HF, EVAL_SEQ_LEN, EVAL_BATCH, EVAL_THREADS, EVAL_HELP };
#define N_EVAL_OPTIONS ((int)(sizeof eval_options / sizeof eval_options[0]))

/* A positive int option value, or a usage error. */
static int positive(const char *cmd, const char *name, const char *v, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < 1 || x > 1 << 24) {
    fprintf(stderr, "swiftmoe %s: %s %s: expected an integer in 1..16777216\n", cmd, name, v);
    return 2;
  }
  *out = (int)x;
  return 0;
}

static int cmd_eval(int argc, char **argv, char *self) {
  (void)self;
  const char *data = NULL, *hf = NULL, *run = NULL;
  int seq_len = 0, batch = 16, threads = 0, rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *v = NULL;
    int k = match_option(eval_options, N_EVAL_OPTIONS, argc, argv, &i, &v, "eval", &rc);
    if (rc) break;
    if (k == EVAL_DATA) data = v;
    if (k == EVAL_INIT_HF) hf = v;
    if (k == EVAL_SEQ_LEN) rc = positive("eval", "--seq-len", v, &seq_len);
    if (k == EVAL_BATCH) rc = positive("eval", "--batch", v, &batch);
    if (k == EVAL_THREADS) rc = positive("eval", "--threads", v, &threads);
    if (k == N_EVAL_OPTIONS) {
      if (run) rc = usage_error("eval", "unexpected argument '%s'", v);
      run = v;
    }
    if (k == EVAL_HELP) {
      printf("usage: swiftmoe eval (RUN_DIR | --init-hf DIR) --data FILE [--seq-len N]\n\n"
             "Mean cross-entropy (nats per token) of the model over every consecutive\n"
             "non-overlapping window of seq_len + 1 tokens of FILE, in order; printed on\n"
             "stderr and as one JSON line on stdout.\n\noptions:\n");
      print_options(eval_options, N_EVAL_OPTIONS);
      return 0;
    }
  }
  if (rc) return rc;
  if (!data) return usage_error("eval", "%s", "--data FILE is required");
  if (!run == !hf) return usage_error("eval", "%s", "give either RUN_DIR or --init-hf DIR");
  const char *dir = run ? run : hf;
  smoe_set_threads(threads);
  smoe_err_t err = {{0}};
  int32_t *tokens;
  size_t n;
  int vocab;
  if (smoe_data_load_file(&tokens, &n, &vocab, data, &err) != 0) {
    fprintf(stderr, "swiftmoe eval: %s\n", err.msg);
    return 1;
  }
  smoe_config_t c;
  smoe_model_t m;
  if (smoe_model_open(&m, &c, dir, seq_len, batch, NULL, &err) != 0) {
    fprintf(stderr, "swiftmoe eval: %s\n", err.msg);
    free(tokens);
    return 1;
  }
  rc = 0;
  if (vocab > c.vocab_size) {
    fprintf(stderr, "swiftmoe eval: %s holds token ids up to %d; the model's vocabulary is %d\n",
            data, vocab - 1, c.vocab_size);
    rc = 1;
  } else if (n < (size_t)c.seq_len + 1) {
    fprintf(stderr, "swiftmoe eval: %s holds %zu tokens, fewer than one window of %d; use a "
            "smaller --seq-len\n", data, n, c.seq_len + 1);
    rc = 1;
  } else {
    smoe_eval_result_t r;
    double t0 = smoe_now();
    smoe_eval_tokens(&m, tokens, n, &r);
    double dt = smoe_now() - t0;
    fprintf(stderr, "eval: %.6f nats/token over %lld tokens (%lld windows of %d) in %.1f s\n",
            r.loss, (long long)r.tokens, (long long)r.windows, c.seq_len + 1, dt);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "loss", r.loss);
    cJSON_AddNumberToObject(o, "tokens", (double)r.tokens);
    cJSON_AddNumberToObject(o, "windows", (double)r.windows);
    cJSON_AddNumberToObject(o, "seq_len", c.seq_len);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddStringToObject(o, "model", dir);
    cJSON_AddStringToObject(o, "precision", SMOE_REAL_NAME);
    char *line = cJSON_PrintUnformatted(o);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(o);
  }
  smoe_model_free(&m);
  free(tokens);
  return rc;
}

/* ----------------------------------------------------------------- export */

static const option_t export_options[] = {
    {"--hf", "OUT_DIR", "write config.json + model.safetensors with HF Mixtral names here"},
    {"--dtype", "f32|bf16", "tensor type of the export (default f32)"},
    {"--step", "N|latest", "from the run's checkpoint of step N (latest: the newest complete on "
                           "every rank) instead of its final model.safetensors"},
    {"--help", NULL, "show this help"},
};
enum { EXPORT_HF, EXPORT_DTYPE, EXPORT_STEP, EXPORT_HELP };
#define N_EXPORT_OPTIONS ((int)(sizeof export_options / sizeof export_options[0]))

/* --step N|latest: -1 for latest, the step, or -2 (a usage error said). */
static int64_t parse_step(const char *cmd, const char *v) {
  if (strcmp(v, "latest") == 0) return -1;
  char *end;
  long long x = strtoll(v, &end, 10);
  if (*v == '\0' || *end || x < 1) {
    usage_error(cmd, "--step %s: expected a step number >= 1 or 'latest'", v);
    return -2;
  }
  return x;
}

/* A world-of-one model of the run in dir (its config.ini) with the weights
 * of its checkpoint of `step` (-1: the newest complete everywhere): the dense
 * ones, and with experts every expert into its slot. w stays open (its step,
 * its ranks, the experts one at a time); the caller closes it. */
static int open_checkpoint(smoe_model_t *m, smoe_config_t *c, const char *dir, int64_t step,
                           const char *device, int experts, smoe_ckpt_weights_t *w,
                           smoe_err_t *err) {
  char path[SMOE_PATHLEN + 16];
  memset(w, 0, sizeof *w);
  smoe_config_defaults(c);
  snprintf(path, sizeof path, "%s/config.ini", dir);
  if (smoe_config_load(c, path, err) != 0) return -1;
  if (device) {
    char assign[64];
    snprintf(assign, sizeof assign, "training.device=%s", device);
    if (smoe_config_set(c, assign, err) != 0) return -1;
  }
  c->init_from[0] = '\0'; /* the checkpoint's weights, placed one expert per slot */
  if (smoe_config_validate(c, err) != 0) return -1;
  if (smoe_ckpt_weights_open(w, c->ckpt_dir[0] ? c->ckpt_dir : dir, step, c, err) != 0) return -1;
  smoe_comm_t *local = smoe_comm_local();
  int rc = smoe_model_init_dist(m, c, 1, local, err);
  if (rc != 0) {
    smoe_comm_finalize(local);
  } else {
    m->own_comm = 1;
    rc = experts ? smoe_ckpt_weights_load(w, m, err) : smoe_ckpt_weights_dense(w, m, err);
    if (rc != 0) smoe_model_free(m);
  }
  if (rc != 0) smoe_ckpt_weights_close(w);
  return rc;
}

/* smoe_hf_save's source of experts: the checkpoint's, one at a time. */
typedef struct {
  smoe_ckpt_weights_t *w;
  smoe_err_t err;
  int failed;
} ckpt_src_t;
static const real *ckpt_expert(void *arg, int l, int e) {
  ckpt_src_t *cs = arg;
  const real *x = cs->failed ? NULL : smoe_ckpt_weights_expert(cs->w, l, e, &cs->err);
  if (!x && !cs->failed) cs->failed = 1;
  return x ? x : cs->w->expert; /* the writer goes on; the error is reported after */
}

static int cmd_export(int argc, char **argv, char *self) {
  (void)self;
  const char *run = NULL, *out = NULL;
  smoe_dtype_t dtype = SMOE_F32;
  int rc = 0;
  int64_t step = -3; /* -3: the final model.safetensors */
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *v = NULL;
    int k = match_option(export_options, N_EXPORT_OPTIONS, argc, argv, &i, &v, "export", &rc);
    if (rc) break;
    if (k == EXPORT_HF) out = v;
    if (k == EXPORT_STEP && (step = parse_step("export", v)) == -2) rc = 2;
    if (k == EXPORT_DTYPE) {
      if (strcmp(v, "f32") == 0) dtype = SMOE_F32;
      else if (strcmp(v, "bf16") == 0) dtype = SMOE_BF16;
      else rc = usage_error("export", "--dtype %s: expected f32 or bf16", v);
    }
    if (k == N_EXPORT_OPTIONS) {
      if (run) rc = usage_error("export", "unexpected argument '%s'", v);
      run = v;
    }
    if (k == EXPORT_HELP) {
      printf("usage: swiftmoe export RUN_DIR [--step N|latest] --hf OUT_DIR [--dtype f32|bf16]\n\n"
             "Writes a run's final weights, or with --step its checkpoint's (read from every\n"
             "rank's state store, one expert at a time, no training process), as an HF\n"
             "transformers Mixtral model folder (MixtralForCausalLM.from_pretrained(OUT_DIR)\n"
             "loads it).\n\noptions:\n");
      print_options(export_options, N_EXPORT_OPTIONS);
      return 0;
    }
  }
  if (rc) return rc;
  if (!run || !out) return usage_error("export", "%s", "needs RUN_DIR and --hf OUT_DIR");
  smoe_err_t err = {{0}};
  smoe_config_t c;
  smoe_model_t m;
  smoe_ckpt_weights_t w = {0};
  ckpt_src_t cs = {&w, {{0}}, 0};
  /* from a checkpoint: the dense weights into a model, the experts streamed to the writer */
  if (step == -3 ? smoe_model_open(&m, &c, run, 0, 1, NULL, &err) != 0
                 : open_checkpoint(&m, &c, run, step, NULL, 0, &w, &err) != 0) {
    fprintf(stderr, "swiftmoe export: %s\n", err.msg);
    return 1;
  }
  char path[SMOE_PATHLEN + 32];
  snprintf(path, sizeof path, "%s/model.safetensors", out);
  int made = mkdir(out, 0777) == 0;
  if (!made && errno != EEXIST) {
    smoe_fail(&err, "cannot create %s: %s", out, strerror(errno));
    rc = 1;
  }
  if (rc == 0 && smoe_hf_save(&m, path, dtype, step == -3 ? NULL : ckpt_expert, &cs, &err) != 0)
    rc = 1;
  if (cs.failed) { /* a checkpoint chunk that did not read: the file is not the model */
    err = cs.err;
    unlink(path);
    rc = 1;
  }
  if (rc == 0 && smoe_hf_write_config(&c, dtype, out, &err) != 0) rc = 1;
  if (rc != 0 && made) rmdir(out); /* a folder of its own: left as it was, absent */
  if (rc) fprintf(stderr, "swiftmoe export: %s\n", err.msg);
  else if (step != -3)
    fprintf(stderr, "swiftmoe export: wrote %s/config.json and %s (%s, %d tensors) from the "
            "checkpoint of step %lld (%d ranks)\n", out, path, smoe_dtype_name(dtype), m.n_tensors,
            (long long)w.step, w.G);
  else fprintf(stderr, "swiftmoe export: wrote %s/config.json and %s (%s, %d tensors)\n", out,
               path, smoe_dtype_name(dtype), m.n_tensors);
  smoe_ckpt_weights_close(&w);
  smoe_model_free(&m);
  return rc;
}

/* ----------------------------------------------------------------- config */

static const option_t config_options[] = {
    {"--markdown", NULL, "print the key reference as a markdown table instead"},
    {"--help", NULL, "show this help"},
};

static int cmd_config(int argc, char **argv, char *self) {
  (void)self;
  int markdown = 0, rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *value = NULL;
    int k = match_option(config_options, 2, argc, argv, &i, &value, "config", &rc);
    if (k == 0) markdown = 1;
    if (k == 2) rc = usage_error("config", "unexpected argument '%s'", value);
    if (k == 1) {
      printf("usage: swiftmoe config [--markdown]\n\nPrints the built-in default config as INI "
             "(every key, documented).\n\noptions:\n");
      print_options(config_options, 2);
      return 0;
    }
  }
  if (rc) return rc;
  smoe_config_t c;
  smoe_config_defaults(&c);
  if (markdown)
    smoe_config_write_markdown(stdout);
  else
    smoe_config_write(&c, stdout);
  return 0;
}

/* -------------------------------------------------------------------- run */

static int cmd_run(int argc, char **argv, char *self) {
  return smoe_supervise(argc, argv, self);
}

static int cmd_ckpt(int argc, char **argv, char *self) {
  (void)self;
  return smoe_ckpt_command(argc, argv);
}

static int cmd_sim(int argc, char **argv, char *self) {
  (void)self;
  return smoe_sim_command(argc, argv);
}

static int cmd_compare(int argc, char **argv, char *self) {
  return smoe_compare_command(argc, argv, self);
}

/* ----------------------------------------------------------------- memory */

static const option_t memory_options[] = {
    {"--config", "FILE", "INI config (default: the built-in defaults = configs/tiny.ini)"},
    {"--set", "SECTION.KEY=VALUE", "override one key; repeatable; applied after --config"},
    {"--world", "G[,G...]", "numbers of ranks (default 1,2,4,8,16,32)"},
    {"--json", NULL, "print {\"G\": {\"kind\": bytes, ...}, ...} instead of the table"},
    {"--help", NULL, "show this help"},
};
enum { MEMORY_CONFIG, MEMORY_SET, MEMORY_WORLD, MEMORY_JSON, MEMORY_HELP };
#define N_MEMORY_OPTIONS ((int)(sizeof memory_options / sizeof memory_options[0]))
#define MEMORY_MAX_WORLDS 16

static int cmd_memory(int argc, char **argv, char *self) {
  (void)self;
  const char *config_path = NULL, *world = "1,2,4,8,16,32";
  const char **sets = xcalloc((size_t)argc + 1, sizeof(char *));
  int n_sets = 0, rc = 0, json = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *v = NULL;
    int k = match_option(memory_options, N_MEMORY_OPTIONS, argc, argv, &i, &v, "memory", &rc);
    if (rc) break;
    if (k == MEMORY_CONFIG) config_path = v;
    if (k == MEMORY_SET) sets[n_sets++] = v;
    if (k == MEMORY_WORLD) world = v;
    if (k == MEMORY_JSON) json = 1;
    if (k == N_MEMORY_OPTIONS) rc = usage_error("memory", "unexpected argument '%s'", v);
    if (k == MEMORY_HELP) {
      printf("usage: swiftmoe memory [--config FILE] [--set SECTION.KEY=VALUE ...] [--world G,...]\n"
             "                       [--json]\n\n"
             "Prints the memory one rank (rank 0, the largest) allocates to train the\n"
             "config on G ranks, by kind, computed without allocating it: what `train`\n"
             "reports in its second log line and summary.json. The arenas' scratch grows\n"
             "in the first step and is not included.\n\noptions:\n");
      print_options(memory_options, N_MEMORY_OPTIONS);
      free(sets);
      return 0;
    }
  }
  smoe_config_t c;
  smoe_err_t err = {{0}};
  if (rc == 0) rc = resolve_config(&c, config_path, sets, n_sets, &err);
  if (rc == 0 && smoe_config_validate(&c, &err) != 0) rc = 2;
  free(sets);
  if (rc) {
    if (err.msg[0]) fprintf(stderr, "swiftmoe memory: %s\n", err.msg);
    return rc;
  }
  int G[MEMORY_MAX_WORLDS], n = 0;
  for (const char *p = world; *p && rc == 0;) {
    char *end;
    long g = strtol(p, &end, 10);
    if (end == p || g < 1 || g > 1 << 20 || (*end && *end != ',') || n == MEMORY_MAX_WORLDS)
      return usage_error("memory", "--world %s: expected up to 16 rank counts (1..1048576), "
                         "comma separated", world);
    G[n++] = (int)g;
    p = *end ? end + 1 : end;
  }
  smoe_mem_t mem[MEMORY_MAX_WORLDS];
  char why[MEMORY_MAX_WORLDS][SMOE_ERRLEN];
  for (int i = 0; i < n; i++) {
    why[i][0] = '\0';
    if (smoe_step_plan_memory(&c, G[i], 0, &mem[i], &err) != 0)
      snprintf(why[i], sizeof why[i], "%s", err.msg);
  }
  if (json) {
    printf("{");
    for (int i = 0; i < n; i++) {
      printf("%s\"%d\": {", i ? ", " : "", G[i]);
      if (why[i][0]) printf("\"error\": \"%s\"}", why[i]); /* messages hold no quotes */
      for (int k = 0; !why[i][0] && k < SMOE_MEM_KINDS; k++)
        printf("%s\"%s\": %zu%s", k ? ", " : "", smoe_mem_names[k], mem[i].bytes[k],
               k == SMOE_MEM_KINDS - 1 ? "}" : "");
    }
    printf("}\n");
    return 0;
  }
  double unit = 1e6, most = 0; /* MB, or GB for models that need more than 100 GB */
  for (int i = 0; i < n; i++)
    for (int k = 0; k < SMOE_MEM_KINDS; k++) most = fmax(most, (double)mem[i].bytes[k]);
  if (most > 1e11) unit = 1e9;
  printf("memory per rank (rank 0), %s: %d layers, dim %d, %d experts x %d (top %d), vocab %d; "
         "global batch %d x %d tokens; policy %s, %s\n", unit > 1e6 ? "GB" : "MB", c.n_layers, c.dim, c.num_experts,
         c.expert_dim, c.top_k, c.vocab_size, c.global_batch_size, c.seq_len, c.policy,
         SMOE_REAL_NAME);
  printf("%-16s", "kind");
  for (int i = 0; i < n; i++) {
    char label[32];
    snprintf(label, sizeof label, "G = %d", G[i]);
    printf(" %15s", label);
  }
  printf("\n");
  for (int k = 0; k <= SMOE_MEM_KINDS; k++) {
    if (k == SMOE_MEM_SCRATCH) continue; /* grows in the first step: not planned */
    printf("%-16s", k < SMOE_MEM_KINDS ? smoe_mem_names[k] : "total");
    for (int i = 0; i < n; i++) {
      size_t b = 0;
      for (int j = 0; j < SMOE_MEM_KINDS; j++) b += k == SMOE_MEM_KINDS || j == k ? mem[i].bytes[j] : 0;
      if (why[i][0]) printf(" %15s", "n/a");
      else printf(" %15.2f", (double)b / unit);
    }
    printf("\n");
  }
  for (int i = 0; i < n; i++)
    if (why[i][0]) printf("G = %d: %s\n", G[i], why[i]);
  return 0;
}

/* ------------------------------------------------------------------- main */

/* ----------------------------------------------------------------- sample */

static const option_t sample_options[] = {
    {"--init-hf", "DIR", "sample from HF Mixtral weights instead of a run folder"},
    {"--prompt", "TEXT", "the prompt (byte-level models; default: a new line)"},
    {"--prompt-file", "F", "the prompt from a file (its bytes)"},
    {"--prompt-ids", "\"ID ...\"", "the prompt as token ids (any vocabulary)"},
    {"--tokens", "N", "tokens to generate (default 256; prompt + N <= the model's seq_len)"},
    {"--temperature", "T", "0 = greedy (the most likely token); default 0.8"},
    {"--top-k", "K", "sample among the K most likely tokens; 0 = all (default 40)"},
    {"--seed", "S", "the sampler's seed (default 1337): the same seed, the same text"},
    {"--ids", NULL, "print the generated token ids (one line) instead of text"},
    {"--device", "cpu|cuda|guard", "where to run (default: the run's training.device)"},
    {"--threads", "N", "threads (default: all cores)"},
    {"--step", "N|latest", "the run's checkpoint of step N (latest: the newest complete on every "
                           "rank) instead of its final model.safetensors"},
    {"--help", NULL, "show this help"},
};
enum { SAMPLE_INIT_HF, SAMPLE_PROMPT, SAMPLE_PROMPT_FILE, SAMPLE_PROMPT_IDS, SAMPLE_TOKENS,
       SAMPLE_TEMPERATURE, SAMPLE_TOP_K, SAMPLE_SEED, SAMPLE_IDS, SAMPLE_DEVICE, SAMPLE_THREADS,
       SAMPLE_STEP, SAMPLE_HELP };
#define N_SAMPLE_OPTIONS ((int)(sizeof sample_options / sizeof sample_options[0]))

static int sample_error(const char *fmt, const char *what) {
  fprintf(stderr, "swiftmoe sample: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, "\n");
  return 1;
}

static int cmd_sample(int argc, char **argv, char *self) {
  (void)self;
  const char *hf = NULL, *run = NULL, *prompt = NULL, *prompt_file = NULL, *prompt_ids = NULL,
             *device = NULL, *temp_arg = "0.8";
  int tokens = 256, top_k = 40, threads = 0, ids = 0, rc = 0;
  unsigned long long seed = 1337;
  int64_t step = -3; /* -3: the final model.safetensors */
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *v = NULL;
    int k = match_option(sample_options, N_SAMPLE_OPTIONS, argc, argv, &i, &v, "sample", &rc);
    if (rc) break;
    char *end = NULL;
    if (k == SAMPLE_INIT_HF) hf = v;
    if (k == SAMPLE_PROMPT) prompt = v;
    if (k == SAMPLE_PROMPT_FILE) prompt_file = v;
    if (k == SAMPLE_PROMPT_IDS) prompt_ids = v;
    if (k == SAMPLE_TOKENS) rc = positive("sample", "--tokens", v, &tokens);
    if (k == SAMPLE_TEMPERATURE) temp_arg = v;
    if (k == SAMPLE_TOP_K) {
      long x = strtol(v, &end, 10);
      if (*v == '\0' || *end || x < 0 || x > 1 << 24)
        rc = usage_error("sample", "--top-k %s: expected an integer in 0..16777216 (0 = all)", v);
      top_k = (int)x;
    }
    if (k == SAMPLE_SEED) {
      seed = strtoull(v, &end, 10);
      if (*v == '\0' || *end) rc = usage_error("sample", "--seed %s: expected a whole number", v);
    }
    if (k == SAMPLE_IDS) ids = 1;
    if (k == SAMPLE_DEVICE) device = v;
    if (k == SAMPLE_THREADS) rc = positive("sample", "--threads", v, &threads);
    if (k == SAMPLE_STEP && (step = parse_step("sample", v)) == -2) rc = 2;
    if (k == N_SAMPLE_OPTIONS) {
      if (run) rc = usage_error("sample", "unexpected argument '%s'", v);
      run = v;
    }
    if (k == SAMPLE_HELP) {
      printf("usage: swiftmoe sample (RUN_DIR [--step N|latest] | --init-hf DIR) [--prompt TEXT |\n"
             "                       --prompt-file F | --prompt-ids \"ID ...\"] [--tokens N]\n"
             "                       [--temperature T]"
             " [--top-k K] [--seed S] [--ids] [--device cpu|cuda]\n\n"
             "Generates text from a trained model (RUN_DIR: its config.ini and\n"
             "model.safetensors), one token at a time with a KV cache, routing as in\n"
             "training (top-k experts, weights renormalised, nothing dropped), and streams\n"
             "it to stdout: the prompt, then the new text. Byte-level models (vocabulary\n"
             "256) print bytes as text, bytes that are not valid UTF-8 as \\xNN; models\n"
             "with a larger vocabulary print token ids (no tokenizer is supported). The\n"
             "speed goes to stderr.\n\noptions:\n");
      print_options(sample_options, N_SAMPLE_OPTIONS);
      return 0;
    }
  }
  if (rc) return rc;
  if (!run == !hf) return usage_error("sample", "%s", "give either RUN_DIR or --init-hf DIR");
  if ((prompt != NULL) + (prompt_file != NULL) + (prompt_ids != NULL) > 1)
    return usage_error("sample", "%s", "give one of --prompt, --prompt-file, --prompt-ids");
  char *end = NULL;
  double temperature = strtod(temp_arg, &end);
  if (*temp_arg == '\0' || *end || !(temperature >= 0) || temperature > 1e6)
    return usage_error("sample", "--temperature %s: expected a number >= 0 (0 = greedy; sampling "
                       "needs a temperature above 0)", temp_arg);
  if (device && strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "guard"))
    return usage_error("sample", "--device %s: expected cpu, cuda or guard", device);
  smoe_set_threads(threads);
  const char *dir = run ? run : hf;
  smoe_err_t err = {{0}};
  smoe_config_t c;
  smoe_model_t m;
  if (step != -3 && hf) return usage_error("sample", "%s", "--step reads a run folder's checkpoints, "
                                            "not an HF folder");
  smoe_ckpt_weights_t w;
  if (step == -3 ? smoe_model_open(&m, &c, dir, 0, 1, device, &err) != 0
                 : open_checkpoint(&m, &c, dir, step, device, 1, &w, &err) != 0)
    return sample_error("%s", err.msg);
  if (step != -3) {
    fprintf(stderr, "sample: the weights of the checkpoint of step %lld\n", (long long)w.step);
    smoe_ckpt_weights_close(&w);
  }
  /* the prompt as tokens */
  const int T = c.seq_len, V = c.vocab_size;
  int32_t *toks = xmalloc(sizeof(int32_t) * ((size_t)T + 1));
  int n = 0;
  rc = 0;
  if (prompt_ids) {
    for (const char *p = prompt_ids; *p && rc == 0;) {
      long x = strtol(p, &end, 10);
      if (end == p) {
        rc = sample_error("--prompt-ids: '%s' is not a list of token ids", prompt_ids);
        break;
      }
      if (x < 0 || x >= V) {
        fprintf(stderr, "swiftmoe sample: --prompt-ids: %ld is not a token of this model (0..%d)\n",
                x, V - 1);
        rc = 1;
      } else if (n <= T) {
        toks[n++] = (int32_t)x;
      } else {
        n++;
      }
      for (p = end; *p == ' ' || *p == ',' || *p == '\n'; p++) {}
    }
  } else {
    if (V != 256) {
      fprintf(stderr, "swiftmoe sample: this model's vocabulary is %d tokens, not bytes: give the "
              "prompt as --prompt-ids (no tokenizer is supported)\n", V);
      rc = 1;
    }
    char *text = NULL;
    size_t len = 0;
    if (rc == 0 && prompt_file) {
      FILE *f = fopen(prompt_file, "rb");
      if (!f) {
        rc = sample_error("--prompt-file %s: cannot open it", prompt_file);
      } else {
        text = xmalloc((size_t)T + 2);
        len = fread(text, 1, (size_t)T + 1, f);
        fclose(f);
      }
    } else if (rc == 0) {
      text = strdup(prompt ? prompt : "\n");
      len = strlen(text);
    }
    for (size_t i = 0; rc == 0 && i < len && i <= (size_t)T; i++) toks[n++] = (unsigned char)text[i];
    free(text);
  }
  if (rc == 0 && n == 0) rc = sample_error("%s", "the prompt is empty: give at least one token");
  if (rc == 0 && n + tokens > T) {
    fprintf(stderr, "swiftmoe sample: the prompt (%d tokens) and --tokens %d make more than the "
            "model's context of %d (model.seq_len); at most %d can follow this prompt\n", n,
            tokens, T, T - n > 0 ? T - n : 0);
    rc = 1;
  }
  smoe_decoder_t d;
  if (rc == 0 && smoe_decoder_init(&d, &m, &err) != 0) rc = sample_error("%s", err.msg);
  if (rc != 0) {
    free(toks);
    smoe_model_free(&m);
    return rc;
  }
  const int bytes = V == 256 && !ids;
  smoe_utf8_t u = {{0}, 0, 0};
  char piece[24];
  double t0 = smoe_now();
  const real *logits = NULL;
  for (int i = 0; i < n; i++) { /* the prompt: its keys and values cached */
    logits = smoe_decoder_step(&d, toks[i]);
    if (bytes) fputs(smoe_utf8_put(&u, (unsigned)toks[i], piece) ? piece : "", stdout);
  }
  if (bytes) fflush(stdout);
  double t1 = smoe_now();
  uint64_t rng = seed;
  for (int i = 0; i < tokens; i++) {
    int32_t next = smoe_sample_pick(logits, V, temperature, top_k, &rng, d.order);
    if (bytes)
      fputs(smoe_utf8_put(&u, (unsigned)next, piece) ? piece : "", stdout);
    else
      printf("%s%d", i ? " " : "", next);
    fflush(stdout);
    if (i + 1 < tokens) logits = smoe_decoder_step(&d, next);
  }
  if (bytes) fputs(smoe_utf8_flush(&u, piece) ? piece : "", stdout);
  printf("\n");
  fflush(stdout);
  double t2 = smoe_now();
  fprintf(stderr, "sample: %d tokens in %.3f s, %.1f tokens/s (prompt %d tokens in %.3f s; %s, %s)\n",
          tokens, t2 - t1, tokens / (t2 - t1 > 0 ? t2 - t1 : 1e-9), n, t1 - t0, m.ops->name,
          SMOE_REAL_NAME);
  smoe_decoder_free(&d);
  smoe_model_free(&m);
  free(toks);
  return 0;
}

static const command_t commands[] = {
    {"train", "train a model (one process, or several under mpirun/srun or --nproc)", cmd_train},
    {"eval", "mean cross-entropy of a trained or HF model on a file", cmd_eval},
    {"sample", "generate text from a trained or HF model", cmd_sample},
    {"export", "write a run's weights as an HF Mixtral model folder", cmd_export},
    {"config", "print the default config with every key documented", cmd_config},
    {"memory", "memory per rank by kind for a config on G ranks, without running it", cmd_memory},
    {"ckpt", "list or verify a run's checkpoints, or print its placement log", cmd_ckpt},
    {"run", "supervise a training job: restart it with --resume auto after a failure", cmd_run},
    {"sim", "project each placement policy's step time on a described cluster", cmd_sim},
    {"compare", "train the contenders, project minutes to a target loss on clusters", cmd_compare},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void main_help(void) {
  printf("swiftmoe %s: a training engine for Mixture-of-Experts transformers\n\n"
         "usage: swiftmoe COMMAND [options]\n\ncommands:\n",
         SMOE_VERSION);
  for (int i = 0; i < N_COMMANDS; i++) printf("  %-10s %s\n", commands[i].name, commands[i].summary);
  printf("\n  --help     show this help\n  --version  print the version\n\n"
         "'swiftmoe COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    main_help();
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    main_help();
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("swiftmoe %s (%s)\n", SMOE_VERSION, SMOE_REAL_NAME);
    return 0;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2, argv[0]);
  return usage_error(NULL, "unknown command '%s'", argv[1]);
}
