/* whatif.c: a placement policy replayed over recorded loads (whatif.h). */
#include "whatif.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "plan.h"
#include "policy.h"
#include "shadow.h"
#include "split.h"

/* placement.min_capacity's default (config.c): the capacity policy's least
 * capacity per expert per rank */
enum { MIN_CAPACITY = 4 };

/* ------------------------------------------------------------ parsing */

enum { K_FACTOR = 1, K_S = 2, K_EMA = 4, K_EVERY = 8, K_THRESHOLD = 16, K_SHADOW = 32,
       K_SHADOW_ROWS = 64 };

static const struct {
  const char *name;
  int bit;
} keys[] = {{"factor", K_FACTOR},
            {"S", K_S},
            {"ema", K_EMA},
            {"every", K_EVERY},
            {"threshold", K_THRESHOLD},
            {"shadow", K_SHADOW},
            {"shadow_rows", K_SHADOW_ROWS}};

static const struct {
  const char *name;
  smoe_whatif_kind_t kind;
  int positional;   /* the key a bare value sets, or 0 */
  int allowed;      /* the keys it takes */
  const char *says; /* ... for the message */
} kinds[] = {
    {"static", SMOE_WHATIF_STATIC, 0, 0, "no options"},
    {"capacity", SMOE_WHATIF_CAPACITY, K_FACTOR, K_FACTOR, "factor"},
    {"symi", SMOE_WHATIF_SYMI, K_FACTOR, K_FACTOR | K_S | K_EMA, "factor, S, ema"},
    {"swiftmoe", SMOE_WHATIF_SWIFTMOE, 0, K_S | K_EMA | K_SHADOW | K_SHADOW_ROWS,
     "S, ema, shadow, shadow_rows"},
    {"eplb", SMOE_WHATIF_EPLB, K_EVERY, K_EVERY | K_EMA | K_S, "every, ema, S"},
    {"flexmoe", SMOE_WHATIF_FLEXMOE, K_EVERY, K_EVERY | K_THRESHOLD | K_S, "every, threshold, S"},
};
enum { NKINDS = sizeof kinds / sizeof kinds[0], NKEYS = sizeof keys / sizeof keys[0] };

/* A whole-string number: 0, or -1 when s is empty, has trailing text or is
 * out of range. */
static int parse_double(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return end == s || *end || errno || !isfinite(*v) ? -1 : 0;
}

static int parse_int(const char *s, int *v) {
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (end == s || *end || errno || x < INT_MIN || x > INT_MAX) return -1;
  *v = (int)x;
  return 0;
}

/* Sets key (a K_ bit) from the text val. */
static int set_key(smoe_whatif_policy_t *p, int key, const char *val, const char *spec,
                   smoe_err_t *err) {
  double d;
  int i;
  switch (key) {
    case K_FACTOR:
      if (parse_double(val, &d) != 0 || !(d > 0))
        return smoe_fail(err, "policy \"%s\": factor must be a number > 0", spec);
      p->factor = d;
      return 0;
    case K_EMA:
      if (parse_double(val, &d) != 0 || !(d >= 0 && d < 1))
        return smoe_fail(err, "policy \"%s\": ema must be a number in [0, 1)", spec);
      p->ema = d;
      return 0;
    case K_THRESHOLD:
      if (parse_double(val, &d) != 0 || !(d >= 1))
        return smoe_fail(err, "policy \"%s\": threshold must be a number >= 1", spec);
      p->threshold = d;
      return 0;
    case K_SHADOW:
      if (parse_int(val, &i) != 0 || i < 0)
        return smoe_fail(err, "policy \"%s\": shadow must be an integer >= 0", spec);
      p->shadow = i;
      return 0;
    case K_SHADOW_ROWS:
      if (parse_double(val, &d) != 0 || !(d >= 0))
        return smoe_fail(err, "policy \"%s\": shadow_rows must be a number >= 0", spec);
      p->shadow_rows = d;
      return 0;
    case K_EVERY:
      if (parse_int(val, &i) != 0 || i < 1)
        return smoe_fail(err, "policy \"%s\": every must be an integer >= 1", spec);
      p->every = i;
      return 0;
    default: /* K_S */
      if (parse_int(val, &i) != 0 || i < 1)
        return smoe_fail(err, "policy \"%s\": S must be an integer >= 1", spec);
      p->S = i;
      return 0;
  }
}

int smoe_whatif_parse(const char *spec, smoe_whatif_policy_t *p, smoe_err_t *err) {
  memset(p, 0, sizeof *p);
  if (!spec) return smoe_fail(err, "policy: none given");
  if (strlen(spec) >= sizeof p->label)
    return smoe_fail(err, "policy \"%s\": longer than %zu characters", spec, sizeof p->label - 1);
  char buf[sizeof p->label];
  strcpy(buf, spec);
  char *args = strchr(buf, ':');
  if (args) *args++ = '\0';
  int k = 0;
  while (k < NKINDS && strcmp(buf, kinds[k].name) != 0) k++;
  if (k == NKINDS)
    return smoe_fail(err,
                     "policy \"%s\": expected static, capacity[:F], symi[:F], "
                     "swiftmoe[:S=..,ema=..,shadow=..,shadow_rows=..], eplb[:N], flexmoe[:K]",
                     spec);
  strcpy(p->label, spec);
  p->kind = kinds[k].kind;
  p->factor = 1.0;
  p->ema = p->kind == SMOE_WHATIF_EPLB ? 0.9 : 0.0; /* 0: placement.load_ema's default */
  p->every = p->kind == SMOE_WHATIF_EPLB ? 100 : p->kind == SMOE_WHATIF_FLEXMOE ? 50 : 0;
  p->threshold = 1.25;
  p->shadow_rows = 5333;
  if (!args) return 0;
  if (!kinds[k].allowed)
    return smoe_fail(err, "policy \"%s\": %s takes no options", spec, kinds[k].name);
  for (int first = 1;; first = 0) {
    char *comma = strchr(args, ',');
    if (comma) *comma = '\0';
    char *eq = strchr(args, '=');
    if (!*args)
      return smoe_fail(err, "policy \"%s\": an empty option (%s takes %s)", spec, kinds[k].name,
                       kinds[k].says);
    if (!eq) { /* a bare value: the positional key, first only */
      if (!first || !kinds[k].positional)
        return smoe_fail(err, "policy \"%s\": \"%s\" is not key=value (%s takes %s)", spec, args,
                         kinds[k].name, kinds[k].says);
      if (set_key(p, kinds[k].positional, args, spec, err) != 0) return -1;
    } else {
      *eq = '\0';
      int key = 0;
      for (int i = 0; i < NKEYS; i++)
        if (strcmp(args, keys[i].name) == 0) key = keys[i].bit;
      if (!(key & kinds[k].allowed))
        return smoe_fail(err, "policy \"%s\": unknown key \"%s\" (%s takes %s)", spec, args,
                         kinds[k].name, kinds[k].says);
      if (set_key(p, key, eq + 1, spec, err) != 0) return -1;
    }
    if (!comma) return 0;
    args = comma + 1;
  }
}

/* ------------------------------------------------------------ planning */

/* DeepSeek EPLB for one layer: greedy counts, then the eplb packing. */
static void eplb_plan(const double *loads, int E, int G, int S, int *replicas, int *slot_expert,
                      smoe_arena_t *scratch) {
  smoe_plan_counts(SMOE_COUNTS_GREEDY, loads, E, G, S, replicas, scratch);
  smoe_plan_slots(SMOE_SLOTS_EPLB, loads, replicas, NULL, E, G, S, slot_expert, scratch);
}

/* Ranks' loads (G) under the even-split model: sum over slots of T_e / r_e. */
static void even_levels(const int64_t *T, const int *replicas, const int *slot_expert, int G, int S,
                        double *level) {
  for (int g = 0; g < G; g++) {
    level[g] = 0;
    for (int s = 0; s < S; s++) {
      int e = slot_expert[g * S + s];
      if (e >= 0) level[g] += (double)T[e] / replicas[e];
    }
  }
}

/* One FlexMoE re-plan of one layer (the model in whatif.h) on tokens T (E):
 * moves replicas in slot_expert (G*S) and replicas (E) in place, adds the
 * replicas each rank receives to incoming (G), returns the moves made.
 * gain_per_token: bytes one token less on the busiest rank is worth (K x
 * row_bytes); move_bytes: a move's cost. level (G), has_h (G), slot_c (G):
 * scratch. */
static int64_t flex_replan(const int64_t *T, int E, int G, int S, double gain_per_token,
                           double move_bytes, int *slot_expert, int *replicas, int64_t *incoming,
                           double *level, int *has_h, int *slot_c) {
  int64_t moves = 0;
  /* each move lowers the max rank load; at most G*S moves bound the work */
  for (int it = 0; it < G * S; it++) {
    even_levels(T, replicas, slot_expert, G, S, level);
    int h = -1, c = -1;
    for (int e = 0; e < E; e++) /* most tokens per replica, with a rank to go to */
      if (replicas[e] < G && (h < 0 || (double)T[e] / replicas[e] > (double)T[h] / replicas[h]))
        h = e;
    if (h < 0 || T[h] == 0) break;
    for (int e = 0; e < E; e++) /* fewest tokens per replica, with a replica to give */
      if (e != h && replicas[e] > 1 &&
          (c < 0 || (double)T[e] / replicas[e] < (double)T[c] / replicas[c]))
        c = e;
    if (c < 0) break;
    const double ph = (double)T[h] / replicas[h], ph1 = (double)T[h] / (replicas[h] + 1);
    const double pc = (double)T[c] / replicas[c], pc1 = (double)T[c] / (replicas[c] - 1);
    double old_max = 0, max1 = -1, max2 = -1;
    int arg1 = -1;
    for (int g = 0; g < G; g++) {
      has_h[g] = 0, slot_c[g] = -1;
      for (int s = 0; s < S; s++) {
        has_h[g] |= slot_expert[g * S + s] == h;
        if (slot_expert[g * S + s] == c) slot_c[g] = s;
      }
      /* g's load after the move if g is not the destination */
      double b = level[g] + (has_h[g] ? ph1 - ph : 0) + (slot_c[g] >= 0 ? pc1 - pc : 0);
      if (level[g] > old_max) old_max = level[g];
      if (b > max1)
        max2 = max1, max1 = b, arg1 = g;
      else if (b > max2)
        max2 = b;
    }
    int best_g = -1;
    double best = INFINITY;
    for (int g = 0; g < G; g++) { /* the slot of c on a rank without h to become h's */
      if (slot_c[g] < 0 || has_h[g]) continue;
      double own = level[g] - pc + ph1, other = g == arg1 ? max2 : max1;
      double m = own > other ? own : other;
      if (m < best) best = m, best_g = g;
    }
    if (best_g < 0 || !((old_max - best) * gain_per_token > move_bytes)) break;
    slot_expert[best_g * S + slot_c[best_g]] = h;
    replicas[h]++, replicas[c]--;
    incoming[best_g]++;
    moves++;
  }
  return moves;
}

/* Whether rank g holds expert e in slot_expert (G*S). */
static int rank_holds(const int *slot_expert, int S, int g, int e) {
  for (int s = 0; s < S; s++)
    if (slot_expert[g * S + s] == e) return 1;
  return 0;
}

/* ------------------------------------------------------------ the replay */

typedef struct {
  const smoe_whatif_log_t *log;
  const smoe_whatif_policy_t *p;
  int L, E, G, S, K;
  int engine;             /* static, capacity, symi, swiftmoe: the engine's policy places */
  smoe_policy_t pol;      /* ... and this is it */
  smoe_drops_t drops;     /* the policy's drop rule */
  int split_mode;         /* smoe_policy_split_mode: 1 the optimal split, else even */
  smoe_placement_t pl[2]; /* step t's placement at pl[t % 2], step t-1's at the other */
  smoe_arena_t hold;      /* the arrays below, for the whole run */
  smoe_arena_t scratch;   /* the planner's and split's, given back after each call */
  int64_t *kept;          /* (L, G, E) this step's tokens computed (after drops) */
  int64_t *counts;        /* (L, E) this step's tokens routed to each expert, all ranks */
  int H;                  /* shadow slots per rank (swiftmoe:shadow) */
  int *slot_all;          /* (G*(S+H)) one layer's placement with its shadows */
  int64_t shadows;        /* shadows placed, over the run */
  int64_t *take;          /* (G, G*(S+H)) one layer's split */
  int64_t *rank_load;     /* (G) */
  int64_t *incoming;      /* (G) replicas each rank received in this step's re-plan */
  double *loads;          /* (L, E) eplb: the EMA the next plan uses */
  double *level;          /* (G) flexmoe scratch */
  int *has_h, *slot_c;    /* (G) flexmoe scratch */
  double *imb_layer;      /* (L) this step's imbalance per layer */
  double *imb_step;       /* (n) each step's */
  const smoe_whatif_fluid_t *fluid; /* the fluid replay's input (NULL: the exact replay) */
  int64_t *slot_rows;     /* (G*S) one layer's rows per slot */
  int64_t *rows, *send, *recv; /* (L, G) this step's, for the observer */
} sim_t;

static const char *engine_name(smoe_whatif_kind_t k) {
  return k == SMOE_WHATIF_STATIC     ? "static"
         : k == SMOE_WHATIF_CAPACITY ? "capacity"
         : k == SMOE_WHATIF_SYMI     ? "symi"
                                     : "swiftmoe";
}

static int sim_init(sim_t *x, const smoe_whatif_log_t *log, const smoe_whatif_fluid_t *fluid,
                    const smoe_whatif_policy_t *p, smoe_err_t *err) {
  memset(x, 0, sizeof *x);
  x->log = log, x->p = p, x->fluid = fluid;
  const int L = log->L, E = log->E, G = log->G;
  x->L = L, x->E = E, x->G = G, x->K = log->K;
  if (log->n < 1 || L < 1 || E < 1 || G < 1 || log->K < 1 || log->K > E ||
      log->tokens_per_rank < 0 || !(log->src || fluid))
    return smoe_fail(err,
                     "policy \"%s\": a log of n = %d steps, L = %d layers, E = %d experts, "
                     "G = %d ranks, K = %d, N = %lld tokens per rank%s: need n, L, E, G >= 1, "
                     "1 <= K <= E, N >= 0 and the counts",
                     p->label, log->n, L, E, G, log->K, (long long)log->tokens_per_rank,
                     log->src || fluid ? "" : ", no counts");
  if (!(log->row_bytes >= 0 && log->expert_bytes >= 0 && log->state_bytes >= 0))
    return smoe_fail(err,
                     "policy \"%s\": row_bytes %g, expert_bytes %g, state_bytes %g: each must be "
                     ">= 0",
                     p->label, log->row_bytes, log->expert_bytes, log->state_bytes);
  x->engine = p->kind <= SMOE_WHATIF_SWIFTMOE;
  const int fixed = p->kind == SMOE_WHATIF_STATIC || p->kind == SMOE_WHATIF_CAPACITY;
  /* static: E/G rounded up, so that smoe_placement_static itself says when
   * G does not divide E */
  smoe_err_t why;
  int S = fixed ? (E + G - 1) / G : smoe_slots_per_rank("swiftmoe", p->S, E, G, &why);
  if (S < 0) return smoe_fail(err, "policy \"%s\": %s", p->label, why.msg);
  x->S = S;
  smoe_placement_init(&x->pl[0], L, E, G, S);
  smoe_placement_init(&x->pl[1], L, E, G, S);
  x->drops = (smoe_drops_t){SMOE_DROPS_NONE, 0, 0, 0};
  x->split_mode = 2; /* eplb, flexmoe: even */
  if (x->engine) {
    /* cannot fail: the name is one of the engine's */
    smoe_policy_init(&x->pol, engine_name(p->kind), L, E, G, S, 0, p->ema, NULL);
    x->drops = smoe_policy_drops(x->pol.kind, p->factor, MIN_CAPACITY, "position");
    x->split_mode = smoe_policy_split_mode(x->pol.kind);
  }
  smoe_arena_t *h = &x->hold;
  const size_t LE = (size_t)L * E;
  if (fluid && p->kind == SMOE_WHATIF_SWIFTMOE && p->shadow > 0)
    return smoe_fail(err, "policy \"%s\": shadows are planned from every rank's own counts, "
                     "which the cluster model does not have (drop shadow=)", p->label);
  x->kept = smoe_arena_take(h, sizeof(int64_t) * (fluid ? LE : smoe_mul(LE, (size_t)G)));
  x->counts = smoe_arena_take(h, sizeof(int64_t) * LE);
  x->H = p->kind == SMOE_WHATIF_SWIFTMOE ? p->shadow : 0;
  const size_t GSH = (size_t)G * (S + x->H);
  x->slot_all = smoe_arena_take(h, sizeof(int) * GSH);
  if (fluid) {
    x->slot_rows = smoe_arena_take(h, sizeof(int64_t) * GSH);
    x->rows = smoe_arena_take(h, sizeof(int64_t) * (size_t)L * G);
    x->send = smoe_arena_take(h, sizeof(int64_t) * (size_t)L * G);
    x->recv = smoe_arena_take(h, sizeof(int64_t) * (size_t)L * G);
  } else {
    x->take = smoe_arena_take(h, sizeof(int64_t) * smoe_mul((size_t)G, GSH));
  }
  x->rank_load = smoe_arena_take(h, sizeof(int64_t) * (size_t)G);
  x->incoming = smoe_arena_take(h, sizeof(int64_t) * (size_t)G);
  x->loads = smoe_arena_take(h, sizeof(double) * LE);
  x->level = smoe_arena_take(h, sizeof(double) * (size_t)G);
  x->has_h = smoe_arena_take(h, sizeof(int) * (size_t)G);
  x->slot_c = smoe_arena_take(h, sizeof(int) * (size_t)G);
  x->imb_layer = smoe_arena_take(h, sizeof(double) * (size_t)L);
  x->imb_step = smoe_arena_take(h, sizeof(double) * (size_t)log->n);
  return 0;
}

static void sim_free(sim_t *x) {
  if (x->engine) smoe_policy_free(&x->pol);
  if (x->pl[0].slot_expert) smoe_placement_free(&x->pl[0]);
  if (x->pl[1].slot_expert) smoe_placement_free(&x->pl[1]);
  smoe_arena_free(&x->hold);
  smoe_arena_free(&x->scratch);
}

/* Step t's placement into cur, from prev (step t-1's; unused at t = 0).
 * Adds the replicas moved to r->moves and their bytes to *weights, *state;
 * returns -1 with err only at step 0 (static's shape). */
static int place(sim_t *x, int64_t t, const smoe_placement_t *prev, smoe_placement_t *cur,
                 smoe_whatif_result_t *r, double *weights, double *state, smoe_err_t *err) {
  const smoe_whatif_policy_t *p = x->p;
  const int L = x->L, E = x->E, G = x->G, S = x->S, GS = G * S;
  if (x->engine) {
    smoe_err_t why;
    if (t == 0 && smoe_policy_first(&x->pol, cur, &why) != 0)
      return smoe_fail(err, "policy \"%s\": %s", p->label, why.msg);
    if (t == 0) return 0;
    /* as step.c: the last step's global counts, and its routed per-rank
     * counts (after symi's drops) where the policy splits */
    smoe_policy_next(&x->pol, x->counts, x->split_mode && !x->fluid ? x->kept : NULL, t, prev,
                     cur);
    return 0;
  }
  if (t == 0) { /* eplb and flexmoe: equal loads before any step */
    for (size_t i = 0; i < (size_t)L * E; i++) x->loads[i] = 1.0;
    for (int l = 0; l < L; l++)
      eplb_plan(x->loads + (size_t)l * E, E, G, S, cur->replicas + (size_t)l * E,
                cur->slot_expert + (size_t)l * GS, &x->scratch);
    return 0;
  }
  smoe_placement_copy(cur, prev);
  int64_t moves = 0, replanned = 0;
  for (int l = 0; l < L; l++) {
    int *se = cur->slot_expert + (size_t)l * GS, *rep = cur->replicas + (size_t)l * E;
    if (p->kind == SMOE_WHATIF_EPLB) {
      if (t % p->every) continue;
      eplb_plan(x->loads + (size_t)l * E, E, G, S, rep, se, &x->scratch);
      const int *old = prev->slot_expert + (size_t)l * GS;
      for (int gs = 0; gs < GS; gs++) /* a replica new to its rank arrives */
        if (se[gs] >= 0 && !rank_holds(old, S, gs / S, se[gs])) x->incoming[gs / S]++, moves++;
    } else {
      if (!(x->imb_layer[l] > p->threshold) && t % p->every) continue;
      moves += flex_replan(x->counts + (size_t)l * E, E, G, S, p->every * x->log->row_bytes,
                           x->log->expert_bytes + x->log->state_bytes, se, rep, x->incoming,
                           x->level, x->has_h, x->slot_c);
    }
    replanned = 1;
  }
  r->replans += replanned;
  r->moves += moves;
  *weights += (double)moves * x->log->expert_bytes;
  *state += (double)moves * x->log->state_bytes;
  int64_t most = 0;
  for (int g = 0; g < G; g++) most = x->incoming[g] > most ? x->incoming[g] : most;
  double peak = (double)most * (x->log->expert_bytes + x->log->state_bytes);
  if (peak > r->peak_extra_bytes) r->peak_extra_bytes = peak;
  return 0;
}

/* Step t's tokens of layer l under placement pl: drops into kept, the
 * split, the ranks' loads; adds the tokens dropped and sent off-rank.
 * Returns the layer's imbalance. */
static double layer_tokens(sim_t *x, const int64_t *src, int l, const smoe_placement_t *pl,
                           int64_t *dropped, int64_t *remote) {
  const int E = x->E, G = x->G, S = x->S, GS = G * S, K = x->K;
  const int64_t N = x->log->tokens_per_rank;
  const int *se = pl->slot_expert + (size_t)l * GS, *rep = pl->replicas + (size_t)l * E;
  int64_t *kept = x->kept + (size_t)l * G * E;
  if (x->drops.kind == SMOE_DROPS_CAPACITY) /* each rank on its own N tokens */
    for (int q = 0; q < G; q++)
      *dropped += smoe_drops_quota(&x->drops, src + (size_t)q * E, 1, E, K, N, NULL, G, S,
                                   kept + (size_t)q * E);
  else /* symi on the global batch's counts; none: every token */
    *dropped += smoe_drops_quota(&x->drops, src, G, E, K, (int64_t)G * N, rep, G, S, kept);
  int SH = S;
  if (x->H > 0) { /* this step's shadows, from its own counts */
    const smoe_shadow_cost_t cost = {1.0, x->p->shadow_rows, x->p->shadow_rows / G};
    x->shadows += smoe_shadow_plan(kept, se, E, G, S, x->H, &cost, x->slot_all, &x->scratch);
    se = x->slot_all, SH = S + x->H;
  }
  if (x->split_mode == 1)
    smoe_split(kept, se, E, G, SH, x->take, &x->scratch);
  else /* even: one replica gets all, as the engine's routes do */
    smoe_split_even(kept, se, E, G, S, x->take, &x->scratch);
  smoe_split_rank_load(x->take, G, SH, x->rank_load);
  for (int q = 0; q < G; q++)
    for (int gs = 0; gs < G * SH; gs++)
      if (gs / SH != q) *remote += x->take[(size_t)q * G * SH + gs];
  int64_t most = 0, sum = 0;
  for (int g = 0; g < G; g++) {
    sum += x->rank_load[g];
    most = x->rank_load[g] > most ? x->rank_load[g] : most;
  }
  return sum ? (double)most * G / (double)sum : 1.0;
}

/* layer_tokens for the fluid replay: every source routes the same share of
 * each expert (T_e / G); drops, rows per slot and the exchange follow from
 * the experts' totals (whatif.h). */
static double layer_fluid(sim_t *x, int l, const smoe_placement_t *pl, int64_t *dropped,
                          int64_t *remote) {
  const int E = x->E, G = x->G, S = x->S, GS = G * S, K = x->K;
  const int64_t N = x->log->tokens_per_rank;
  const int *se = pl->slot_expert + (size_t)l * GS, *rep = pl->replicas + (size_t)l * E;
  const int64_t *T = x->counts + (size_t)l * E;
  int64_t *kept = x->kept + (size_t)l * E;
  if (x->drops.kind == SMOE_DROPS_CAPACITY) { /* each source's T_e / G against its capacity */
    const int64_t cap = smoe_capacity(x->drops.factor, x->drops.min_capacity, K, N, E);
    for (int e = 0; e < E; e++) {
      int64_t b = T[e] / G, r = T[e] % G;
      kept[e] = (G - r) * (b < cap ? b : cap) + r * (b + 1 < cap ? b + 1 : cap);
      *dropped += T[e] - kept[e];
    }
  } else { /* symi's quota on the global counts; none: every token */
    *dropped += smoe_drops_quota(&x->drops, T, 1, E, K, (int64_t)G * N, rep, G, S, kept);
  }
  smoe_split_slot_rows(kept, se, E, G, S, x->split_mode != 1, x->slot_rows, &x->scratch);
  int64_t own = 0; /* the rows each source routes */
  for (int e = 0; e < E; e++) own += kept[e];
  own /= G;
  int64_t *rows = x->rows + (size_t)l * G, *send = x->send + (size_t)l * G,
          *recv = x->recv + (size_t)l * G, most = 0, sum = 0;
  for (int g = 0; g < G; g++) {
    int64_t r = 0, local = 0;
    for (int s = 0; s < S; s++) {
      int e = se[g * S + s];
      if (e < 0) continue;
      int64_t q = x->slot_rows[g * S + s], mine = kept[e] / G;
      r += q;
      /* the load-aware split serves a replica's own rank first; the even
       * split takes the same share from every source */
      local += x->split_mode == 1 ? (q < mine ? q : mine) : q / G;
    }
    rows[g] = r, recv[g] = r - local, send[g] = own > local ? own - local : 0;
    *remote += recv[g];
    sum += r;
    most = r > most ? r : most;
  }
  return sum ? (double)most * G / (double)sum : 1.0;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Both replays: log's per-source counts, or fluid's totals. */
static int replay(const smoe_whatif_log_t *log, const smoe_whatif_fluid_t *fluid,
                  const smoe_whatif_policy_t *p, smoe_whatif_result_t *out, smoe_err_t *err) {
  memset(out, 0, sizeof *out);
  sim_t x;
  if (sim_init(&x, log, fluid, p, err) != 0) {
    sim_free(&x);
    return -1;
  }
  const int n = log->n, L = x.L, E = x.E, G = x.G, S = x.S, GS = G * S;
  int64_t routed = 0, dropped = 0, remote = 0, churned = 0;
  double weights = 0, state = 0;
  for (int64_t t = 0; t < n; t++) {
    smoe_placement_t *cur = &x.pl[t % 2], *prev = &x.pl[(t + 1) % 2];
    const int64_t moves_before = out->moves;
    memset(x.incoming, 0, sizeof(int64_t) * (size_t)G);
    if (place(&x, t, prev, cur, out, &weights, &state, err) != 0) {
      sim_free(&x);
      return -1;
    }
    for (size_t i = 0; t > 0 && i < (size_t)L * GS; i++)
      churned += cur->slot_expert[i] != prev->slot_expert[i];
    int64_t nonempty = 0;
    for (size_t i = 0; i < (size_t)L * GS; i++) nonempty += cur->slot_expert[i] >= 0;
    if (x.engine && !(p->kind == SMOE_WHATIF_STATIC || p->kind == SMOE_WHATIF_CAPACITY))
      weights += (double)nonempty * (G - 1) / G * log->expert_bytes; /* refilled from shards */
    if (!x.engine) /* eplb, flexmoe: the replicas beyond the first get the update */
      weights += (double)(nonempty - (int64_t)L * E) * log->expert_bytes;
    double imb = 0;
    int64_t step_routed = routed, step_dropped = dropped;
    if (fluid) { /* this step's totals */
      fluid->counts(fluid->ctx, t, x.counts);
      for (size_t i = 0; i < (size_t)L * E; i++) {
        if (x.counts[i] < 0) {
          smoe_fail(err, "policy \"%s\": step %lld, layer %d: %lld tokens for expert %d (a count "
                    "must be >= 0)", p->label, (long long)t, (int)(i / E),
                    (long long)x.counts[i], (int)(i % E));
          sim_free(&x);
          return -1;
        }
        routed += x.counts[i];
      }
    }
    for (int l = 0; fluid && l < L; l++) {
      x.imb_layer[l] = layer_fluid(&x, l, cur, &dropped, &remote);
      imb += x.imb_layer[l] / L;
    }
    for (int l = 0; !fluid && l < L; l++) {
      const int64_t *src = log->src + ((size_t)t * L + l) * G * E;
      int64_t *c = x.counts + (size_t)l * E;
      memset(c, 0, sizeof(int64_t) * (size_t)E);
      for (int q = 0; q < G; q++)
        for (int e = 0; e < E; e++) {
          int64_t v = src[(size_t)q * E + e];
          if (v < 0) {
            smoe_fail(err,
                      "policy \"%s\": step %lld, layer %d: rank %d routed %lld tokens to "
                      "expert %d (a count must be >= 0)",
                      p->label, (long long)t, l, q, (long long)v, e);
            sim_free(&x);
            return -1;
          }
          c[e] += v;
          routed += v;
        }
      x.imb_layer[l] = layer_tokens(&x, src, l, cur, &dropped, &remote);
      imb += x.imb_layer[l] / L;
    }
    x.imb_step[t] = imb;
    if (fluid && fluid->observe) {
      const smoe_cost_step_t st = {t,           L,          E,      G,      S,
                                   cur->slot_expert,        cur->replicas, x.rows, x.send,
                                   x.recv,      routed - step_routed, dropped - step_dropped,
                                   x.incoming,  out->moves - moves_before};
      fluid->observe(fluid->ctx, &st);
    }
    if (p->kind == SMOE_WHATIF_EPLB) /* the EMA the next re-plan uses */
      for (size_t i = 0; i < (size_t)L * E; i++)
        x.loads[i] =
            t == 0 ? (double)x.counts[i] : p->ema * x.loads[i] + (1 - p->ema) * (double)x.counts[i];
  }
  out->steps = n;
  double sum = 0, most = 0;
  for (int t = 0; t < n; t++) {
    sum += x.imb_step[t];
    most = x.imb_step[t] > most ? x.imb_step[t] : most;
  }
  qsort(x.imb_step, (size_t)n, sizeof(double), by_value);
  out->imb_mean = sum / n;
  out->imb_max = most;
  out->imb_p95 = x.imb_step[((int64_t)95 * n + 99) / 100 - 1]; /* nearest rank: ceil(0.95 n) */
  out->dropped_frac = routed ? (double)dropped / (double)routed : 0.0;
  out->dispatch_bytes = 2.0 * log->row_bytes * (double)remote / n;
  out->weights_bytes = weights / n;
  out->state_bytes = state / n;
  out->churn = (double)churned / L / n;
  out->shadows = (double)x.shadows / n;
  out->shadow_bytes = out->shadows * 2 * log->expert_bytes;
  sim_free(&x);
  return 0;
}

int smoe_whatif_run(const smoe_whatif_log_t *log, const smoe_whatif_policy_t *p,
                    smoe_whatif_result_t *out, smoe_err_t *err) {
  return replay(log, NULL, p, out, err);
}

int smoe_whatif_fluid(const smoe_whatif_fluid_t *f, const smoe_whatif_policy_t *p,
                      smoe_whatif_result_t *out, smoe_err_t *err) {
  const smoe_whatif_log_t log = {f->n,         f->L,           f->E,
                                 f->G,         f->K,           f->tokens_per_rank,
                                 NULL,         f->row_bytes,   f->expert_bytes,
                                 f->state_bytes};
  if (!f->counts) return smoe_fail(err, "policy \"%s\": no counts", p->label);
  return replay(&log, f, p, out, err);
}
