/* config.c: the key table and everything derived from it (see config.h).
 *
 * Every setting is one row of `keys` below: INI section and name, type, where
 * it lives in smoe_config_t, its default (as text, read by the same code as a
 * file), what is allowed and a line of help. Defaults, loading a file, --set,
 * smoe_config_validate, the resolved config.ini and the README table all walk
 * this table; a new setting is a field in config.h and a row here.
 *
 * The INI dialect is inih's: `[section]`, `key = value` (or `key: value`),
 * comments on their own line after ';' or '#', or after a value following
 * whitespace and ';'. A key given twice in one file: the last one wins.
 * inih reads an indented line as a continuation of the previous value; we
 * reject that rather than guess. A line holds at most INI_MAX_LINE - 3
 * characters, which bounds string values, in files and (so that the written
 * config reads back) in --set too. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

typedef enum { K_INT, K_U64, K_DOUBLE, K_BOOL, K_STRING } ktype_t;

typedef struct {
  const char *section, *name;
  ktype_t type;
  bool lo_open, hi_open; /* K_DOUBLE: range ends excluded */
  size_t off, size;      /* the field in smoe_config_t */
  const char *def;       /* default, as written in a file */
  long long lo, hi;      /* K_INT: inclusive range (hi == INT_MAX: no upper bound) */
  bool auto_ok;          /* K_INT: also the word "auto" (stored as -1; see its help) */
  double dlo, dhi;       /* K_DOUBLE: range (dhi == INFINITY: no upper bound) */
  const char *choices;   /* K_STRING: allowed values, space-separated; NULL = a path */
  const char *note;      /* said after the range: a cross-field rule, or why so narrow */
  const char *help;
} cfg_key_t;

/* Offset and size of a field. The comparison inside sizeof is never
 * evaluated; it makes the compiler warn when a row's type is not the
 * field's C type. */
// clang-format off
#define AT(f, ctype) \
  .off = offsetof(smoe_config_t, f) + 0 * sizeof((ctype *)0 == &((smoe_config_t *)0)->f), \
  .size = sizeof(((smoe_config_t *)0)->f)
#define AT_STR(f) \
  .off = offsetof(smoe_config_t, f) + 0 * sizeof((char *)0 == ((smoe_config_t *)0)->f), \
  .size = sizeof(((smoe_config_t *)0)->f)

/* One row per type. DBL(..., '[', 0, 1, ')', ...) is [0, 1); INFINITY as the
 * upper end means no upper bound. */
#define INT(s, k, f, d, a, b, n, h) \
  {s, k, K_INT, AT(f, int), .def = d, .lo = a, .hi = b, .note = n, .help = h}
#define INT_AUTO(s, k, f, d, a, b, n, h) \
  {s, k, K_INT, AT(f, int), .def = d, .lo = a, .hi = b, .auto_ok = true, .note = n, .help = h}
#define U64(s, k, f, d, h) \
  {s, k, K_U64, AT(f, uint64_t), .def = d, .help = h}
#define DBL(s, k, f, d, lb, a, b, rb, n, h) \
  {s, k, K_DOUBLE, AT(f, double), .def = d, .dlo = a, .dhi = b, \
   .lo_open = (lb) == '(', .hi_open = (rb) == ')', .note = n, .help = h}
#define BOOL(s, k, f, d, h) \
  {s, k, K_BOOL, AT(f, int), .def = d, .help = h}
#define STR(s, k, f, d, c, n, h) \
  {s, k, K_STRING, AT_STR(f), .def = d, .choices = c, .note = n, .help = h}
// clang-format on

static const cfg_key_t keys[] = {
    INT("model", "vocab_size", vocab_size, "256", 2, 1 << 24, NULL,
        "V, vocabulary size; 256 for byte-level text"),
    INT("model", "dim", dim, "128", 1, 65536, NULL, "D, hidden size"),
    INT("model", "n_layers", n_layers, "4", 1, 1024, NULL, "L, transformer blocks"),
    INT("model", "n_heads", n_heads, "4", 1, 1024, "must divide model.dim into an even head dim",
        "H, attention heads"),
    INT("model", "n_kv_heads", n_kv_heads, "2", 1, 1024, "must divide model.n_heads",
        "Hkv, key/value heads (grouped-query attention)"),
    INT("model", "seq_len", seq_len, "128", 1, 1 << 20, NULL, "T, tokens per training window"),
    DBL("model", "rope_theta", rope_theta, "10000", '(', 0, INFINITY, ')', NULL, "RoPE base"),
    DBL("model", "rms_norm_eps", rms_norm_eps, "1e-5", '(', 0, 1, ')', NULL, "RMSNorm epsilon"),
    BOOL("model", "tie_word_embeddings", tie_word_embeddings, "false",
         "the output layer shares the embedding matrix"),
    DBL("model", "init_std", init_std, "0.02", '(', 0, INFINITY, ')', NULL,
        "standard deviation of the normal init of every matrix"),

    INT("moe", "num_experts", num_experts, "8", 1, 4096, NULL, "E, experts per MoE layer"),
    INT("moe", "top_k", top_k, "2", 1, 4096, "at most moe.num_experts",
        "K, experts each token is routed to"),
    INT("moe", "expert_dim", expert_dim, "256", 1, 1 << 20, NULL,
        "F, hidden size of each expert's MLP"),
    DBL("moe", "aux_loss_coef", aux_loss_coef, "0.01", '[', 0, INFINITY, ')', NULL,
        "load-balancing loss coefficient"),
    DBL("moe", "z_loss_coef", z_loss_coef, "0.001", '[', 0, INFINITY, ')', NULL,
        "router z-loss coefficient"),
    DBL("moe", "bias_update_rate", bias_update_rate, "0", '[', 0, INFINITY, ')', NULL,
        "aux-loss-free balancing: router bias step per update; 0 = off"),

    STR("data", "path", data_path, "", NULL, NULL,
        "text file or folder, or llm.c .bin tokens; empty = the built-in corpus"),
    DBL("data", "val_fraction", val_fraction, "0.05", '(', 0, 0.5, ']', NULL,
        "share of the data held out for validation"),

    INT("training", "global_batch_size", global_batch_size, "16", 1, 1 << 20, NULL,
        "sequences per optimizer step, over all ranks"),
    INT("training", "steps", steps, "1000", 1, INT_MAX, NULL, "optimizer steps"),
    DBL("training", "lr", lr, "3e-3", '(', 0, INFINITY, ')', NULL, "peak learning rate"),
    DBL("training", "min_lr", min_lr, "3e-4", '[', 0, INFINITY, ')', "at most training.lr",
        "learning rate at the end of the cosine decay"),
    INT_AUTO("training", "warmup_steps", warmup_steps, "auto", 0, INT_MAX, "at most training.steps",
             "steps of linear warmup; auto = training.steps / 20, at most 50 (50 for the 1000-step "
             "demo, 1 for a 20-step run, 0 below 20 steps)"),
    DBL("training", "weight_decay", weight_decay, "0.1", '[', 0, INFINITY, ')', NULL,
        "AdamW decoupled weight decay"),
    DBL("training", "beta1", beta1, "0.9", '[', 0, 1, ')', NULL, "AdamW beta1"),
    DBL("training", "beta2", beta2, "0.95", '[', 0, 1, ')', NULL, "AdamW beta2"),
    DBL("training", "adam_eps", adam_eps, "1e-8", '(', 0, INFINITY, ')', NULL, "AdamW epsilon"),
    DBL("training", "grad_clip", grad_clip, "1.0", '[', 0, INFINITY, ')', NULL,
        "max global gradient norm; 0 = off"),
    INT("training", "eval_every", eval_every, "100", 0, INT_MAX, NULL,
        "validation every N steps and at the end; 0 = only at the end"),
    INT("training", "sample_every", sample_every, "0", 0, INT_MAX, NULL,
        "every N steps rank 0 writes a short sample (64 tokens from a new line, temperature 0.8, "
        "top-k 40, seeded by training.seed) to the log and metrics.jsonl; it keeps a whole copy "
        "of the model for it; 0 = off"),
    INT("training", "eval_windows", eval_windows, "128", 1, 1 << 20, NULL,
        "validation windows per evaluation"),
    STR("training", "expert_optimizer", expert_optimizer, "sharded", "sharded replicated", NULL,
        "sharded = each rank keeps a 1/G slice of every expert's AdamW state (swiftmoe); "
        "replicated = every rank keeps all of it and all-reduces expert gradients (baseline)"),
    STR("training", "dense_optimizer", dense_optimizer, "sharded", "sharded replicated", NULL,
        "sharded = each rank keeps the AdamW state of a 1/G slice of the dense parameters: "
        "gradients reduce-scattered, the slice updated, weights all-gathered (ZeRO-1); "
        "replicated = every rank keeps all of it and all-reduces dense gradients (baseline)"),
    STR("training", "device", device, "cpu", "cpu cuda guard", NULL,
        "where the step runs: cpu = OpenBLAS and OpenMP; cuda = one GPU per rank (by local rank; "
        "a build with CUDA); guard = the CPU's ops with the backend's memory unreadable from the "
        "host between ops (a test that the engine touches device memory only through the op "
        "table; slow)"),
    STR("training", "dtype", dtype, "fp32", "fp32 bf16", "bf16 needs training.device = cuda",
        "GEMM operands: fp32, or bf16 (rounded to nearest even, fp32 accumulation; master "
        "weights, moments, gradients, activations, router and loss stay fp32; attention's "
        "products stay fp32)"),
    U64("training", "seed", seed, "1337", "seed of the init and of the data sampling"),
    INT("training", "threads", threads, "0", 0, 1024, NULL, "OpenMP/BLAS threads; 0 = all cores"),

    STR("placement", "policy", policy, "swiftmoe", "swiftmoe static capacity random symi", NULL,
        "expert placement: swiftmoe = replicas re-planned every step from the last loads, tokens "
        "split over replicas so no rank waits, no drops; static = one replica per expert, expert "
        "e on rank e / (E/G); capacity = static with tokens over capacity dropped "
        "(DeepSpeed/GShard); random = a new random placement every step (tests); symi = the "
        "paper's proportional/contiguous plan, even split, drops over capacity"),
    STR("placement", "init_from", init_from, "", NULL, NULL,
        "plan step 0's placement from a recorded run's loads: DIR[:STEP], its placement log's mean "
        "up to STEP (every record without one), read at every start (keep DIR while the run may "
        "resume); empty = uniform loads"),
    DBL("placement", "load_ema", load_ema, "0", '[', 0, 1, ')', NULL,
        "swiftmoe/symi: plan from loads smoothed as ema * previous + (1 - ema) * last step; 0 = "
        "the last step's loads"),
    INT("placement", "slots_per_rank", slots_per_rank, "0", 0, 1 << 20, NULL,
        "S, expert slots per rank per layer; 0 = E/G for static and capacity, max(E/G+1, 2E/G) "
        "for adaptive policies; G*S >= E"),
    INT("placement", "shadow_slots", shadow_slots, "0", 0, 64, NULL,
        "swiftmoe: slots per rank and layer kept for same-step shadows (an expert that turns "
        "hot gets extra replicas for that step, from that step's counts); 0 = none"),
    DBL("placement", "shadow_rows", shadow_rows, "64", '[', 0, INFINITY, ')', NULL,
        "swiftmoe with shadow_slots: a shadow is placed only when it saves more than this many "
        "token rows on the busiest rank: the time to send its weights and gradient in rows, "
        "about bytes per weight x expert FLOP/s / (3 x bytes/s into a rank)"),
    DBL("placement", "capacity_factor", capacity_factor, "1.0", '(', 0, INFINITY, ')', NULL,
        "capacity policy: capacity per expert per rank = max(min_capacity, ceil(factor * K * "
        "local tokens / E)); symi: replicas x ceil(factor * K * global tokens / (G * S))"),
    INT("placement", "min_capacity", min_capacity, "4", 0, INT_MAX, NULL,
        "capacity policy: the least capacity per expert per rank"),
    STR("placement", "drop_order", drop_order, "position", "position weight", NULL,
        "capacity policy: which assignments are dropped first: by position (later choices, "
        "then later tokens) or lowest gate weight"),

    STR("checkpoint", "dir", ckpt_dir, "", NULL, NULL,
        "checkpoint folder; empty = state/ in the run folder"),
    INT("checkpoint", "interval", ckpt_interval, "100", 0, INT_MAX, NULL,
        "checkpoint every N steps; 0 = not by step count"),
    DBL("checkpoint", "every_seconds", ckpt_every_seconds, "0", '[', 0, INFINITY, ')', NULL,
        "also checkpoint at the first step boundary after N seconds without one; 0 = off"),
    INT("checkpoint", "full_every", ckpt_full_every, "1", 1, 1000, NULL,
        "a full checkpoint every N checkpoints, XOR deltas against the previous one between; "
        "1 = every checkpoint full"),
    INT("checkpoint", "keep", ckpt_keep, "2", 1, INT_MAX, NULL,
        "globally complete checkpoints kept, with the chains they need; older ones are pruned"),
    STR("checkpoint", "mode", ckpt_mode, "async", "async sync", NULL,
        "async = encode and write on the libuv thread pool while training goes on; sync = "
        "block the step loop until written (baseline)"),
    STR("checkpoint", "when_busy", ckpt_when_busy, "wait", "wait skip", NULL,
        "when the previous checkpoint is still being written at the next checkpoint step: wait "
        "for it, or skip this one"),
    INT("checkpoint", "zstd_level", ckpt_level, "3", 1, 19, NULL, "Zstandard level of chunks"),
    INT("checkpoint", "chunk_mb", ckpt_chunk_mb, "4", 1, 1024, NULL,
        "state is encoded and stored in chunks of this many MiB"),
    INT("checkpoint", "plan_log_mb", ckpt_plan_log_mb, "1024", 0, 1048576, NULL,
        "the placement log keeps its newest records within about this many MiB per rank (and "
        "always those of the kept checkpoints); 0 = keep every record"),
    STR("checkpoint", "redundancy", ckpt_redundancy, "buddy", "buddy none", NULL,
        "buddy = each rank also keeps a copy of the previous rank's checkpoints (rank g of "
        "g-1's, sent after the write), so a lost node's checkpoints survive; none = each "
        "checkpoint on its own rank only"),
    STR("checkpoint", "log_gradients", ckpt_log_gradients, "off", "on off", NULL,
        "on = every step also logs the gradient slices its optimizer applied (4 or 8 bytes per "
        "parameter of the rank's shard), so a crash loses at most the steps not yet on disk: "
        "a resume replays them onto the newest checkpoint; off = a crash loses the steps since "
        "the last checkpoint"),
    INT("checkpoint", "log_buffers", ckpt_log_buffers, "2", 1, 64, NULL,
        "gradient-log staging buffers: the log may lag this many steps behind training before "
        "a step waits for its writer"),

    INT("metrics", "log_every", log_every, "1", 1, INT_MAX, NULL,
        "a metrics.jsonl line every N steps"),
    STR("metrics", "progress", progress, "auto", "auto on off", NULL,
        "live progress line; auto = only on a terminal"),
    BOOL("metrics", "all_ranks", all_ranks, "false",
         "every rank prints its messages (prefixed with its rank); default: rank 0 only"),
};
#define NKEYS (sizeof keys / sizeof keys[0])

typedef union {
  long long i; /* K_INT, K_BOOL */
  uint64_t u;
  double d;
  const char *s;
} value_t;


/* Longest string value: the field, and a `name = value` line inih can read. */
static size_t max_len(const cfg_key_t *k) {
  size_t line = INI_MAX_LINE - 3 - strlen(k->name) - strlen(" = ");
  return k->size - 1 < line ? k->size - 1 : line;
}

/* What is allowed, as a phrase after "expected" (also the README's column). */
static void describe(const cfg_key_t *k, char *b, size_t n) {
  b[0] = '\0';
  switch (k->type) {
    case K_INT:
      if (k->auto_ok) smoe_append(b, n, "auto or ");
      if (k->lo == k->hi)
        smoe_append(b, n, "%lld", k->lo);
      else if (k->hi == INT_MAX)
        smoe_append(b, n, "an integer >= %lld", k->lo);
      else
        smoe_append(b, n, "an integer in %lld..%lld", k->lo, k->hi);
      break;
    case K_U64:
      smoe_append(b, n, "an integer in 0..%llu", (unsigned long long)UINT64_MAX);
      break;
    case K_DOUBLE:
      if (isinf(k->dhi))
        smoe_append(b, n, "a number %s %g", k->lo_open ? ">" : ">=", k->dlo);
      else
        smoe_append(b, n, "a number in %c%g, %g%c", k->lo_open ? '(' : '[', k->dlo, k->dhi,
            k->hi_open ? ')' : ']');
      break;
    case K_BOOL:
      smoe_append(b, n, "true or false (also 1/0, yes/no, on/off)");
      break;
    case K_STRING:
      if (!k->choices) {
        smoe_append(b, n, "a path of at most %zu characters, without ';'", max_len(k));
        break;
      }
      for (const char *c = k->choices; *c; c++) /* "a b c" -> "a, b or c" */
        if (*c != ' ')
          smoe_append(b, n, "%c", *c);
        else
          smoe_append(b, n, strchr(c + 1, ' ') ? ", " : " or ");
      break;
  }
  if (k->note) smoe_append(b, n, " (%s)", k->note);
}

static bool parse_bool(const char *s, long long *out) {
  static const char *const words[] = {"false", "true", "0", "1", "no", "yes", "off", "on"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcasecmp(s, words[i]) == 0) return *out = (long long)(i % 2), true;
  return false;
}

/* Reads text as k's type; the whole text must be the number. */
static bool parse(const cfg_key_t *k, const char *s, value_t *v) {
  char *end = NULL;
  errno = 0;
  switch (k->type) {
    case K_INT:
      if (k->auto_ok && strcasecmp(s, "auto") == 0) return v->i = SMOE_AUTO, true;
      v->i = strtoll(s, &end, 10);
      if (k->auto_ok && v->i == SMOE_AUTO) return false; /* only the word means auto */
      break;
    case K_U64:
      if (strchr(s, '-')) return false; /* strtoull would wrap "-1" */
      v->u = strtoull(s, &end, 10);
      break;
    case K_DOUBLE: /* overflow reads as inf; underflow (ERANGE) reads as 0 or subnormal, kept */
      v->d = strtod(s, &end);
      return end != s && *end == '\0' && isfinite(v->d);
    case K_BOOL:
      return parse_bool(s, &v->i);
    case K_STRING:
      v->s = s;
      return true;
  }
  return end != s && *end == '\0' && errno == 0;
}

static bool choice_ok(const char *choices, const char *s) {
  size_t n = strlen(s);
  for (const char *c = choices; *c; c += strcspn(c, " "), c += *c == ' ')
    if (n > 0 && strncmp(c, s, n) == 0 && (c[n] == ' ' || c[n] == '\0')) return true;
  return false;
}

/* Whether a value of the right type is in k's range (strings: writable back). */
static bool allowed(const cfg_key_t *k, value_t v) {
  switch (k->type) {
    case K_INT:
      return (v.i >= k->lo && v.i <= k->hi) || (k->auto_ok && v.i == SMOE_AUTO);
    case K_U64:
      return true;
    case K_DOUBLE:
      return isfinite(v.d) && (k->lo_open ? v.d > k->dlo : v.d >= k->dlo) &&
             (k->hi_open ? v.d < k->dhi : v.d <= k->dhi);
    case K_BOOL:
      return v.i == 0 || v.i == 1;
    case K_STRING: {
      size_t n = strnlen(v.s, k->size);
      if (n > max_len(k)) return false;
      if (k->choices) return choice_ok(k->choices, v.s);
      for (size_t i = 0; i < n; i++)
        if (iscntrl((unsigned char)v.s[i]) || v.s[i] == ';') return false;
      return n == 0 || (!isspace((unsigned char)v.s[0]) && !isspace((unsigned char)v.s[n - 1]));
    }
  }
  return false;
}

/* The field's value (memcpy: the bytes at k->off are an object of k's type). */
static value_t fetch(const cfg_key_t *k, const smoe_config_t *c) {
  const char *p = (const char *)c + k->off;
  value_t v = {0};
  int i;
  switch (k->type) {
    case K_INT:
    case K_BOOL:
      memcpy(&i, p, sizeof i);
      v.i = i;
      break;
    case K_U64:
      memcpy(&v.u, p, sizeof v.u);
      break;
    case K_DOUBLE:
      memcpy(&v.d, p, sizeof v.d);
      break;
    case K_STRING:
      v.s = p;
      break;
  }
  return v;
}

/* Stores an allowed value (strings zero-filled, so equal configs compare equal). */
static void store(const cfg_key_t *k, value_t v, smoe_config_t *c) {
  char *p = (char *)c + k->off;
  int i = (int)v.i;
  switch (k->type) {
    case K_INT:
    case K_BOOL:
      memcpy(p, &i, sizeof i);
      break;
    case K_U64:
      memcpy(p, &v.u, sizeof v.u);
      break;
    case K_DOUBLE:
      memcpy(p, &v.d, sizeof v.d);
      break;
    case K_STRING:
      memset(p, 0, k->size);
      memcpy(p, v.s, strlen(v.s));
      break;
  }
}

/* Shortest decimal that reads back as exactly x (whole numbers without an
 * exponent: 10000, not 1e+04). */
static void format_double(double x, char *b, size_t n) {
  if (x == floor(x) && fabs(x) < 1e15) {
    snprintf(b, n, "%.0f", x);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(b, n, "%.*g", prec, x);
    if (strtod(b, NULL) == x) return;
  }
}

/* The value as a file would hold it (strings are assumed allowed). */
static void format_value(const cfg_key_t *k, value_t v, char *b, size_t n) {
  switch (k->type) {
    case K_INT:
      if (k->auto_ok && v.i == SMOE_AUTO) snprintf(b, n, "auto");
      else snprintf(b, n, "%lld", v.i);
      break;
    case K_U64:
      snprintf(b, n, "%llu", (unsigned long long)v.u);
      break;
    case K_DOUBLE:
      format_double(v.d, b, n);
      break;
    case K_BOOL:
      snprintf(b, n, "%s", v.i ? "true" : "false");
      break;
    case K_STRING:
      snprintf(b, n, "%.*s", (int)strnlen(v.s, k->size), v.s);
      break;
  }
}

static bool is_section(const char *s) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].section, s) == 0) return true;
  return false;
}

static const cfg_key_t *find(const char *section, const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) return &keys[i];
  return NULL;
}

/* "[model], [moe], ..." (section NULL) or the keys of one section. */
static void list_names(const char *section, char *b, size_t n) {
  b[0] = '\0';
  for (size_t i = 0; i < NKEYS; i++)
    if (!section && (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0))
      smoe_append(b, n, "%s[%s]", i ? ", " : "", keys[i].section);
    else if (section && strcmp(keys[i].section, section) == 0)
      smoe_append(b, n, "%s%s", b[0] ? ", " : "", keys[i].name);
}

/* Sets section.name from text; `where` starts the error message. */
static int apply(smoe_config_t *c, const char *section, const char *name, const char *text,
                 const char *where, smoe_err_t *err) {
  char list[SMOE_ERRLEN];
  if (!is_section(section)) {
    list_names(NULL, list, sizeof list);
    if (!section[0])
      return smoe_fail(err, "%s: key outside any section; sections: %s", where, list);
    return smoe_fail(err, "%s: unknown section [%s]; valid sections: %s", where, section, list);
  }
  const cfg_key_t *k = find(section, name);
  if (!k) {
    list_names(section, list, sizeof list);
    return smoe_fail(err, "%s: unknown key '%s' in [%s]; valid keys: %s", where, name, section,
                     list);
  }
  value_t v = {0};
  if (!parse(k, text, &v) || !allowed(k, v)) {
    char want[256];
    describe(k, want, sizeof want);
    return smoe_fail(err, "%s: expected %s", where, want);
  }
  store(k, v, c);
  return 0;
}

void smoe_config_defaults(smoe_config_t *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < NKEYS; i++) {
    value_t v = {0};
    if (!parse(&keys[i], keys[i].def, &v) || !allowed(&keys[i], v)) {
      fprintf(stderr, "swiftmoe: bad built-in default %s.%s = %s\n", keys[i].section, keys[i].name,
              keys[i].def);
      abort(); /* a bug in the table above, not a user error */
    }
    store(&keys[i], v, c);
  }
}

/* --- loading a file with inih ------------------------------------------- */

typedef struct {
  FILE *f;
  const char *path;
  int lineno;
  char line[INI_MAX_LINE]; /* the raw line inih is parsing */
  smoe_config_t *c;
  smoe_err_t *err;
  int failed; /* line of the first error, 0 = none */
} load_t;

/* fgets for inih that counts lines, keeps the raw line, and stops at the
 * first error or at a line longer than inih's buffer. */
static char *read_line(char *str, int num, void *stream) {
  load_t *x = stream;
  if (x->failed || !fgets(str, num, x->f)) return NULL;
  x->lineno++;
  if (!strchr(str, '\n') && !feof(x->f)) {
    x->failed = x->lineno;
    smoe_fail(x->err, "%s:%d: line longer than %d characters (the INI reader's limit)", x->path,
              x->lineno, num - 3);
    return NULL;
  }
  snprintf(x->line, sizeof x->line, "%s", str);
  return str;
}

/* Whether inih took the raw line as a continuation of `name` (it does so
 * for every indented line after a key) rather than as `name = ...`. */
static bool is_continuation(const char *line, int lineno, const char *name) {
  if (lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0) line += 3; /* UTF-8 BOM */
  while (isspace((unsigned char)*line)) line++;
  size_t n = strlen(name);
  if (strncmp(line, name, n) != 0) return true;
  for (line += n; isspace((unsigned char)*line); line++) {
  }
  return *line != '=' && *line != ':';
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
  load_t *x = user;
  char where[SMOE_ERRLEN];
  snprintf(where, sizeof where, "%s:%d: [%s] %s = %s", x->path, x->lineno, section, name, value);
  if (is_continuation(x->line, x->lineno, name))
    smoe_fail(x->err, "%s: indented line, read as a continuation of %s; remove the indentation",
              where, name);
  else if (apply(x->c, section, name, value, where, x->err) == 0)
    return 1;
  x->failed = x->lineno;
  return 0;
}

/* Line `lineno` of f, without its line end. */
static void line_at(FILE *f, int lineno, char *b, size_t n) {
  rewind(f);
  b[0] = '\0';
  for (int i = 0; i < lineno && fgets(b, (int)n, f); i++) {
  }
  b[strcspn(b, "\r\n")] = '\0';
}

int smoe_config_load(smoe_config_t *c, const char *path, smoe_err_t *err) {
  smoe_config_t next = *c; /* c changes only if the whole file is good */
  load_t x = {.path = path, .c = &next, .err = err};
  x.f = fopen(path, "r");
  if (!x.f) return smoe_fail(err, "%s: cannot open: %s", path, strerror(errno));
  int rc = ini_parse_stream(read_line, &x, on_key, &x);
  bool io_error = ferror(x.f);
  if (rc > 0 && (!x.failed || rc < x.failed)) { /* inih's own error: not INI syntax */
    line_at(x.f, rc, x.line, sizeof x.line);
    fclose(x.f);
    return smoe_fail(err, "%s:%d: %s: expected [section], key = value, or a ; comment", path, rc,
                     x.line);
  }
  fclose(x.f);
  if (x.failed) return -1;
  if (io_error) return smoe_fail(err, "%s: read error", path);
  if (rc != 0) return smoe_fail(err, "%s: the INI reader failed (%d)", path, rc);
  *c = next;
  return 0;
}

/* --- --set, validation, output ------------------------------------------- */

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
  return s;
}

int smoe_config_set(smoe_config_t *c, const char *assignment, smoe_err_t *err) {
  char buf[SMOE_PATHLEN + 128], where[SMOE_ERRLEN];
  if (strlen(assignment) >= sizeof buf)
    return smoe_fail(err, "--set %.64s...: longer than %zu characters", assignment, sizeof buf - 1);
  snprintf(buf, sizeof buf, "%s", assignment);
  snprintf(where, sizeof where, "--set %s", assignment);
  char *eq = strchr(buf, '=');
  if (!eq) return smoe_fail(err, "%s: expected section.key=value, e.g. model.dim=64", where);
  *eq = '\0';
  char *key = trim(buf), *dot = strchr(key, '.');
  if (!dot)
    return smoe_fail(err, "%s: '%s' has no section; expected section.key=value, e.g. model.dim=64",
                     where, key);
  *dot = '\0';
  return apply(c, trim(key), trim(dot + 1), trim(eq + 1), where, err);
}

/* Each key on its own: its range, as when it was set. */
static int validate_keys(const smoe_config_t *c, smoe_err_t *err) {
  for (size_t i = 0; i < NKEYS; i++) {
    const cfg_key_t *k = &keys[i];
    value_t v = fetch(k, c);
    if (allowed(k, v)) continue;
    char text[SMOE_PATHLEN], want[256];
    format_value(k, v, text, sizeof text);
    describe(k, want, sizeof want);
    return smoe_fail(err, "%s.%s = %s: expected %s", k->section, k->name, text, want);
  }
  return 0;
}

int smoe_config_validate(const smoe_config_t *c, smoe_err_t *err) {
  if (validate_keys(c, err)) return -1;
  int d = c->dim, h = c->n_heads, hkv = c->n_kv_heads;
  if (c->top_k > c->num_experts)
    return smoe_fail(err, "moe.top_k = %d exceeds moe.num_experts = %d: top_k must be in 1..%d",
                     c->top_k, c->num_experts, c->num_experts);
  if (d % h != 0) return smoe_fail(err, "model.n_heads = %d does not divide model.dim = %d", h, d);
  if (h % hkv != 0)
    return smoe_fail(err, "model.n_kv_heads = %d does not divide model.n_heads = %d", hkv, h);
  if ((d / h) % 2 != 0)
    return smoe_fail(err,
                     "model.dim / model.n_heads = %d / %d = %d is odd: RoPE needs an even "
                     "head dim",
                     d, h, d / h);
  if (c->min_lr > c->lr) {
    char a[32], b[32];
    format_double(c->min_lr, a, sizeof a);
    format_double(c->lr, b, sizeof b);
    return smoe_fail(err, "training.min_lr = %s exceeds training.lr = %s: min_lr must be in 0..lr",
                     a, b);
  }
  if (c->warmup_steps != SMOE_AUTO && c->warmup_steps > c->steps)
    return smoe_fail(err, "training.warmup_steps = %d exceeds training.steps = %d", c->warmup_steps,
                     c->steps);
  if (strcmp(c->ckpt_log_gradients, "on") == 0 && c->ckpt_interval == 0 &&
      c->ckpt_every_seconds == 0)
    return smoe_fail(err, "checkpoint.log_gradients = on needs checkpoints (checkpoint.interval or "
                     "checkpoint.every_seconds > 0): the log is replayed onto the newest one, and "
                     "each one lets the log before it go");
  return 0;
}

int smoe_config_warmup(const smoe_config_t *c) {
  if (c->warmup_steps != SMOE_AUTO) return c->warmup_steps;
  return c->steps / 20 < 50 ? c->steps / 20 : 50;
}

/* Writes text as "; " comment lines of at most ~96 characters (the INI
 * reader rejects lines over 197, comments included). */
static void write_comment(FILE *f, const char *prefix, const char *text) {
  size_t n = strlen(text), at = 0, width = 92;
  while (at < n) {
    size_t len = n - at;
    if (len > width) { /* break at the last space that fits */
      len = width;
      while (len > 1 && text[at + len] != ' ') len--;
      if (len <= 1) len = width;
    }
    fprintf(f, "%s%.*s\n", at ? ";   " : prefix, (int)len, text + at);
    at += len;
    while (at < n && text[at] == ' ') at++;
  }
}

/* Every key with its help, by section. Returns -1, writing nothing, if a
 * value is out of its range (it would not read back), or on a write error. */
int smoe_config_write(const smoe_config_t *c, FILE *f) {
  char text[SMOE_PATHLEN], want[256];
  for (size_t i = 0; i < NKEYS; i++)
    if (!allowed(&keys[i], fetch(&keys[i], c))) return -1;
  fprintf(f,
          "; swiftmoe configuration: every key, with what it means and allows.\n"
          "; Comments start with ';'. A key given twice: the last one wins.\n");
  for (size_t i = 0; i < NKEYS; i++) {
    const cfg_key_t *k = &keys[i];
    if (i == 0 || strcmp(k->section, keys[i - 1].section) != 0) fprintf(f, "\n[%s]\n", k->section);
    describe(k, want, sizeof want);
    format_value(k, fetch(k, c), text, sizeof text);
    char line[512];
    write_comment(f, "; ", k->help);
    snprintf(line, sizeof line, "allowed: %s; default: %s", want, k->def[0] ? k->def : "empty");
    write_comment(f, ";   ", line);
    fprintf(f, "%s =%s%s\n", k->name, text[0] ? " " : "", text);
  }
  return ferror(f) ? -1 : 0;
}

void smoe_config_write_markdown(FILE *f) {
  char want[256];
  fprintf(f, "| section | key | default | allowed | meaning |\n|---|---|---|---|---|\n");
  for (size_t i = 0; i < NKEYS; i++) {
    const cfg_key_t *k = &keys[i];
    describe(k, want, sizeof want);
    fprintf(f, "| `[%s]` | `%s` | %s%s%s | %s | %s |\n", k->section, k->name, k->def[0] ? "`" : "",
            k->def[0] ? k->def : "(empty)", k->def[0] ? "`" : "", want, k->help);
  }
}
