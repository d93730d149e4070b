/* split.c: the load-aware token split and the even split (see split.h). */
#include "split.h"

#include <assert.h>
#include <string.h>

/* The slots of each expert, ascending: slots[start[e] .. start[e+1]). */
typedef struct {
  int *start; /* (E+1) */
  int *slots; /* (G*S) */
} reps_t;

static void reps_init(reps_t *r, const int *slot_expert, int E, int G, int S, smoe_arena_t *a) {
  const int GS = G * S;
  r->start = smoe_arena_zero(a, (size_t)E + 1, sizeof(int));
  r->slots = smoe_arena_take(a, sizeof(int) * (size_t)GS);
  for (int gs = 0; gs < GS; gs++) {
    assert(slot_expert[gs] >= -1 && slot_expert[gs] < E);
    if (slot_expert[gs] >= 0) r->start[slot_expert[gs] + 1]++;
  }
  for (int e = 0; e < E; e++) r->start[e + 1] += r->start[e];
  int *fill = smoe_arena_take(a, sizeof(int) * (size_t)E);
  memcpy(fill, r->start, sizeof(int) * (size_t)E);
  for (int gs = 0; gs < GS; gs++)
    if (slot_expert[gs] >= 0) r->slots[fill[slot_expert[gs]]++] = gs;
}

/* ---------------------------------------------------------- max-flow */

/* Dinic's max-flow on the multi-replica part: node 0 the source, 1 the sink,
 * 2 + i the i-th multi-replica expert, 2 + m + g rank g. Edges in pairs
 * (e, e^1); res is the residual capacity, the flow state. */
enum { SRC = 0, SNK = 1 };
typedef struct {
  int nn, ne;
  int *to;
  int64_t *res;
  int *adj_start, *adj; /* (nn+1), (ne): edge ids leaving each node */
  int *lvl, *it, *queue, *path;
} flow_t;

static int add_edge(flow_t *f, int u, int v, int64_t cap) {
  int e = f->ne;
  f->to[e] = v, f->res[e] = cap;
  f->to[e + 1] = u, f->res[e + 1] = 0;
  f->adj_start[u + 1]++, f->adj_start[v + 1]++; /* degrees, summed in flow_index */
  f->ne += 2;
  return e;
}

static void flow_index(flow_t *f) {
  for (int v = 0; v < f->nn; v++) f->adj_start[v + 1] += f->adj_start[v];
  int *fill = f->it; /* scratch */
  memcpy(fill, f->adj_start, sizeof(int) * (size_t)f->nn);
  for (int e = 0; e < f->ne; e++) f->adj[fill[f->to[e ^ 1]]++] = e;
}

static int bfs(flow_t *f) {
  for (int v = 0; v < f->nn; v++) f->lvl[v] = -1;
  int head = 0, tail = 0;
  f->lvl[SRC] = 0, f->queue[tail++] = SRC;
  while (head < tail && f->lvl[SNK] < 0) {
    int u = f->queue[head++];
    for (int k = f->adj_start[u]; k < f->adj_start[u + 1]; k++) {
      int e = f->adj[k], v = f->to[e];
      if (f->res[e] > 0 && f->lvl[v] < 0) f->lvl[v] = f->lvl[u] + 1, f->queue[tail++] = v;
    }
  }
  return f->lvl[SNK] >= 0;
}

/* Blocking flow along shortest augmenting paths (iterative). */
static int64_t augment(flow_t *f) {
  int64_t pushed = 0;
  int depth = 0, u = SRC;
  memcpy(f->it, f->adj_start, sizeof(int) * (size_t)f->nn);
  for (;;) {
    if (u == SNK) {
      int64_t b = INT64_MAX;
      for (int d = 0; d < depth; d++) b = f->res[f->path[d]] < b ? f->res[f->path[d]] : b;
      for (int d = 0; d < depth; d++) f->res[f->path[d]] -= b, f->res[f->path[d] ^ 1] += b;
      pushed += b;
      depth = 0;
      while (f->res[f->path[depth]] > 0) depth++; /* back to the first saturated edge */
      u = f->to[f->path[depth] ^ 1];
      continue;
    }
    int next = -1;
    for (; f->it[u] < f->adj_start[u + 1]; f->it[u]++) {
      int e = f->adj[f->it[u]];
      if (f->res[e] > 0 && f->lvl[f->to[e]] == f->lvl[u] + 1) {
        next = e;
        break;
      }
    }
    if (next >= 0) {
      f->path[depth++] = next, u = f->to[next];
    } else {
      if (u == SRC) break;
      f->lvl[u] = -1; /* dead end */
      u = f->to[f->path[--depth] ^ 1];
      f->it[u]++;
    }
  }
  return pushed;
}

static int64_t maxflow(flow_t *f) {
  int64_t total = 0;
  while (bfs(f)) total += augment(f);
  return total;
}

/* ---------------------------------------------------------- the split */

/* Tokens the flow delivers to the ranks. */
static int64_t routed(const flow_t *f, const int *sink_edge, int G) {
  int64_t n = 0;
  for (int g = 0; g < G; g++)
    if (sink_edge[g] >= 0) n += f->res[sink_edge[g] + 1];
  return n;
}

static void raise_cap(flow_t *f, const int *sink_edge, int G, int64_t by) {
  for (int g = 0; g < G; g++)
    if (sink_edge[g] >= 0) f->res[sink_edge[g]] += by;
}

static void push(flow_t *f, int e, int64_t a) {
  f->res[e] -= a, f->res[e ^ 1] += a;
}

/* Quotas (G*S): tokens each slot of a multi-replica expert computes, at the
 * least integer cap M on rank load for which a flow routes every token.
 * Single-replica experts are fixed load (base). counts (G*E) only warm-start
 * the flow (NULL: each source as T_e / G). Returns M. */
static int64_t balance(const int64_t *T, const reps_t *r, const int64_t *counts, int E, int G,
                       int S, int64_t *quota, smoe_arena_t *a) {
  int64_t *base = smoe_arena_zero(a, (size_t)G, sizeof(int64_t)), all = 0, need = 0;
  int m = 0;
  for (int e = 0; e < E; e++) {
    int n = r->start[e + 1] - r->start[e];
    all += T[e];
    if (n == 1) base[r->slots[r->start[e]] / S] += T[e];
    if (n >= 2 && T[e] > 0) m++, need += T[e];
  }
  int64_t lb = (all + G - 1) / G;
  for (int g = 0; g < G; g++) lb = base[g] > lb ? base[g] : lb;
  for (int gs = 0; gs < G * S; gs++) quota[gs] = 0;
  /* the graph: SRC -> expert (T_e), expert -> its ranks, rank -> SNK (M - base) */
  flow_t f = {.nn = 2 + m + G};
  /* scratch sized by the bounds (m <= E experts, at most G*S replicas), not
   * this step's graph: the same every step, so the arena grows only once */
  const int ne_max = 2 * (E + G * S + G), nn_max = 2 + E + G;
  f.to = smoe_arena_take(a, sizeof(int) * (size_t)ne_max);
  f.res = smoe_arena_take(a, sizeof(int64_t) * (size_t)ne_max);
  f.adj = smoe_arena_take(a, sizeof(int) * (size_t)ne_max);
  f.path = smoe_arena_take(a, sizeof(int) * (size_t)nn_max);
  f.adj_start = smoe_arena_zero(a, (size_t)nn_max + 1, sizeof(int));
  f.lvl = smoe_arena_take(a, sizeof(int) * (size_t)nn_max);
  f.it = smoe_arena_take(a, sizeof(int) * (size_t)nn_max);
  f.queue = smoe_arena_take(a, sizeof(int) * (size_t)nn_max);
  int *rep_edge = smoe_arena_take(a, sizeof(int) * (size_t)G * S);
  int *sink_edge = smoe_arena_take(a, sizeof(int) * (size_t)G);
  int *src_edge = smoe_arena_take(a, sizeof(int) * (size_t)E);
  int64_t *left = smoe_arena_take(a, sizeof(int64_t) * (size_t)G);
  int64_t *lo_state = smoe_arena_take(a, sizeof(int64_t) * (size_t)ne_max);
  int64_t *hi_state = smoe_arena_take(a, sizeof(int64_t) * (size_t)ne_max);
  if (m == 0) return lb;
  for (int g = 0; g < G; g++) sink_edge[g] = -1;
  for (int e = 0, i = 0; e < E; e++) {
    int n = r->start[e + 1] - r->start[e];
    if (n < 2 || T[e] == 0) continue;
    int64_t shared = T[e]; /* the ranks of e compute at least T_e + their base */
    src_edge[i] = add_edge(&f, SRC, 2 + i, T[e]);
    for (int j = r->start[e]; j < r->start[e + 1]; j++) {
      int g = r->slots[j] / S;
      rep_edge[j] = add_edge(&f, 2 + i, 2 + m + g, T[e]);
      if (sink_edge[g] < 0) sink_edge[g] = -2; /* a rank of the flow */
      shared += base[g];
    }
    lb = (shared + n - 1) / n > lb ? (shared + n - 1) / n : lb;
    i++;
  }
  for (int g = 0; g < G; g++)
    if (sink_edge[g] == -2) sink_edge[g] = add_edge(&f, 2 + m + g, SNK, lb - base[g]);
  flow_index(&f);
  /* the all-local flow, capped at lb per rank: each replica takes its own
   * rank's tokens first */
  for (int g = 0; g < G; g++) left[g] = lb - base[g];
  for (int e = 0, i = 0; e < E; e++) {
    if (r->start[e + 1] - r->start[e] < 2 || T[e] == 0) continue;
    for (int j = r->start[e]; j < r->start[e + 1]; j++) {
      int g = r->slots[j] / S;
      int64_t c = counts ? counts[(size_t)g * E + e] : T[e] / G, a = c < left[g] ? c : left[g];
      left[g] -= a;
      push(&f, src_edge[i], a), push(&f, rep_edge[j], a), push(&f, sink_edge[g], a);
    }
    i++;
  }
  /* the least feasible cap: exponential search up from lb, then bisection; a
   * max-flow at an infeasible cap stays valid at any higher cap (warm start) */
  const size_t bytes = sizeof(int64_t) * (size_t)f.ne;
  int64_t lo = lb - 1, hi = lb, step = lb / 256 > 1 ? lb / 256 : 1;
  maxflow(&f);
  while (routed(&f, sink_edge, G) < need) {
    memcpy(lo_state, f.res, bytes), lo = hi;
    hi = lo + step, step *= 2;
    raise_cap(&f, sink_edge, G, hi - lo);
    maxflow(&f);
  }
  memcpy(hi_state, f.res, bytes);
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    memcpy(f.res, lo_state, bytes);
    raise_cap(&f, sink_edge, G, mid - lo);
    maxflow(&f);
    if (routed(&f, sink_edge, G) == need)
      hi = mid, memcpy(hi_state, f.res, bytes);
    else
      lo = mid, memcpy(lo_state, f.res, bytes);
  }
  for (int e = 0; e < E; e++)
    if (r->start[e + 1] - r->start[e] >= 2 && T[e] > 0)
      for (int j = r->start[e]; j < r->start[e + 1]; j++)
        quota[r->slots[j]] = hi_state[rep_edge[j] + 1];
  return hi;
}

/* Each replica's quota serves its own rank's tokens first (local); what is
 * left of it (left) takes other ranks' tokens. local, left: (G*S). */
static void local_first(const int64_t *counts, const int *slot_expert, const int64_t *quota, int E,
                        int G, int S, int64_t *local, int64_t *left) {
  for (int g = 0, gs = 0; g < G; g++)
    for (int s = 0; s < S; s++, gs++) {
      int e = slot_expert[gs];
      int64_t c = e >= 0 ? counts[(size_t)g * E + e] : 0;
      local[gs] = c < quota[gs] ? c : quota[gs];
      left[gs] = quota[gs] - local[gs];
    }
}

/* Per expert, the state of its northwest-corner walk over the other ranks'
 * tokens: sources in order, replicas in slot order. */
typedef struct {
  int64_t left; /* remote tokens the current replica still takes */
  int gs;       /* the current replica's slot; for a single-replica expert its slot */
  int j;        /* the current replica: index into reps_t.slots */
  int single;   /* 1: one replica, 0: several, -1: none */
} walk_t;

/* The whole table, row by row (each row zeroed and written while in cache). */
static void distribute(const int64_t *counts, const int *slot_expert, const reps_t *r,
                       const int64_t *quota, int E, int G, int S, int64_t *take,
                       smoe_arena_t *a) {
  const int GS = G * S;
  int64_t *local = smoe_arena_take(a, sizeof(int64_t) * (size_t)GS),
          *left = smoe_arena_take(a, sizeof(int64_t) * (size_t)GS);
  walk_t *w = smoe_arena_take(a, sizeof(walk_t) * (size_t)E);
  local_first(counts, slot_expert, quota, E, G, S, local, left);
  for (int e = 0; e < E; e++) {
    int n = r->start[e + 1] - r->start[e], j = r->start[e];
    w[e] = (walk_t){n > 1 ? left[r->slots[j]] : 0, n ? r->slots[j] : -1, j,
                    n == 1 ? 1
                    : n    ? 0
                           : -1};
  }
  int *fixed = smoe_arena_take(a, sizeof(int) * (size_t)E); /* the slot of a single-replica expert, or -1 */
  int64_t *mine = smoe_arena_zero(a, (size_t)E, sizeof(int64_t)); /* tokens the row keeps local */
  for (int e = 0; e < E; e++) fixed[e] = w[e].single == 1 ? w[e].gs : -1;
  for (int q = 0; q < G; q++) {
    const int64_t *cq = counts + (size_t)q * E;
    const int *sq = slot_expert + (size_t)q * S;
    int64_t *row = take + (size_t)q * GS;
    memset(row, 0, sizeof(int64_t) * (size_t)GS);
    for (int s = 0; s < S; s++) { /* own replicas first */
      int e = sq[s];
      if (e >= 0 && w[e].single == 0) row[q * S + s] = mine[e] = local[q * S + s];
    }
    for (int e = 0; e < E; e++) {
      int64_t c = cq[e];
      if (c == 0) continue;
      if (fixed[e] >= 0) {
        row[fixed[e]] = c;
        continue;
      }
      walk_t *x = &w[e];
      assert(x->single == 0);
      c -= mine[e];
      while (c > 0) { /* (q, slot) pairs are unique: the own replica is full if c is left */
        while (x->left == 0) { /* the next replica with room */
          assert(x->j + 1 < r->start[e + 1]);
          x->gs = r->slots[++x->j], x->left = left[x->gs];
        }
        int64_t a = c < x->left ? c : x->left;
        x->left -= a, row[x->gs] = a, c -= a;
      }
    }
    for (int s = 0; s < S; s++)
      if (sq[s] >= 0) mine[sq[s]] = 0;
  }
}

/* Adds rows g0 .. g1-1 of counts into T (E), four rows at a time (one
 * read-modify-write of T per four counts). */
static void add_rows(const int64_t *counts, int E, int g0, int g1, int64_t *restrict T) {
  int g = g0;
  for (; g + 4 <= g1; g += 4) {
    const int64_t *restrict a = counts + (size_t)g * E, *restrict b = a + E, *restrict c = b + E,
                            *restrict d = c + E;
    for (int e = 0; e < E; e++) T[e] += (a[e] + b[e]) + (c[e] + d[e]);
  }
  for (; g < g1; g++)
    for (int e = 0; e < E; e++) T[e] += counts[(size_t)g * E + e];
}

/* T (E): tokens of each expert; pre (E, or NULL): from the sources before q. */
static void totals(const int64_t *counts, int E, int G, int q, int64_t *T, int64_t *pre) {
  for (int e = 0; e < E; e++) T[e] = 0;
  if (pre) {
    add_rows(counts, E, 0, q, T);
    memcpy(pre, T, sizeof(int64_t) * (size_t)E);
    add_rows(counts, E, q, G, T);
  } else {
    add_rows(counts, E, 0, G, T);
  }
  for (int e = 0; e < E; e++) assert(T[e] >= 0);
}

/* A caller bug, checked even without asserts (the walks would run off the
 * end): tokens for an expert that has no slot. */
static void no_slot(int e, int64_t n) {
  fprintf(stderr, "smoe_split: expert %d has %lld tokens but no slot in the placement\n", e,
          (long long)n);
  abort();
}

static void check_placed(const int64_t *T, const reps_t *r, int E) {
  for (int e = 0; e < E; e++)
    if (T[e] > 0 && r->start[e + 1] == r->start[e]) no_slot(e, T[e]);
}

void smoe_split(const int64_t *counts, const int *slot_expert, int E, int G, int S, int64_t *take,
                smoe_arena_t *a) {
  const size_t mark = smoe_arena_mark(a);
  reps_t r;
  reps_init(&r, slot_expert, E, G, S, a);
  int64_t *T = smoe_arena_take(a, sizeof(int64_t) * (size_t)E),
          *quota = smoe_arena_take(a, sizeof(int64_t) * (size_t)G * S);
  totals(counts, E, G, -1, T, NULL);
  check_placed(T, &r, E);
  balance(T, &r, counts, E, G, S, quota, a);
  distribute(counts, slot_expert, &r, quota, E, G, S, take, a);
  smoe_arena_release(a, mark);
}

/* Row q alone: the walk of each expert jumps to where source q starts, the
 * remote tokens of the sources before it (interval arithmetic, the same
 * result as the walk). */
void smoe_split_row(const int64_t *counts, const int *slot_expert, int E, int G, int S, int q,
                    int64_t *take_row, smoe_arena_t *a) {
  const size_t mark = smoe_arena_mark(a);
  assert(q >= 0 && q < G);
  const int GS = G * S;
  reps_t r;
  reps_init(&r, slot_expert, E, G, S, a);
  int64_t *T = smoe_arena_take(a, sizeof(int64_t) * (size_t)E), *pre = smoe_arena_take(a, sizeof(int64_t) * (size_t)E);
  int64_t *quota = smoe_arena_take(a, sizeof(int64_t) * (size_t)GS),
          *local = smoe_arena_take(a, sizeof(int64_t) * (size_t)GS);
  int64_t *left = smoe_arena_take(a, sizeof(int64_t) * (size_t)GS);
  totals(counts, E, G, q, T, pre);
  check_placed(T, &r, E);
  balance(T, &r, counts, E, G, S, quota, a);
  local_first(counts, slot_expert, quota, E, G, S, local, left);
  memset(take_row, 0, sizeof(int64_t) * (size_t)GS);
  int *here = smoe_arena_take(a, sizeof(int) * (size_t)E);
  for (int e = 0; e < E; e++) here[e] = -1;
  for (int s = 0; s < S; s++)
    if (slot_expert[q * S + s] >= 0) here[slot_expert[q * S + s]] = q * S + s;
  for (int e = 0; e < E; e++) {
    int64_t c = counts[(size_t)q * E + e];
    const int a = r.start[e], b = r.start[e + 1];
    if (c == 0) continue;
    assert(b > a);
    if (b - a == 1) {
      take_row[r.slots[a]] = c;
      continue;
    }
    if (here[e] >= 0) take_row[here[e]] = local[here[e]], c -= local[here[e]];
    int64_t before = pre[e]; /* remote tokens of the sources before q */
    for (int j = a; j < b && r.slots[j] / S < q; j++) before -= local[r.slots[j]];
    for (int j = a; j < b && c > 0; j++) {
      int64_t room = left[r.slots[j]];
      if (before >= room) {
        before -= room;
        continue;
      }
      int64_t n = room - before < c ? room - before : c;
      take_row[r.slots[j]] = n, c -= n, before = 0;
    }
    assert(c == 0);
  }
  smoe_arena_release(a, mark);
}

static void even_row(const reps_t *r, const int64_t *counts, int E, int G, int S, int q,
                     int64_t *take_row) {
  memset(take_row, 0, sizeof(int64_t) * (size_t)G * S);
  for (int e = 0; e < E; e++) {
    int64_t c = counts[(size_t)q * E + e];
    int n = r->start[e + 1] - r->start[e];
    if (c > 0 && n == 0) no_slot(e, c);
    for (int j = 0; j < n && c > 0; j++) take_row[r->slots[r->start[e] + j]] = c / n + (j < c % n);
  }
}

void smoe_split_even(const int64_t *counts, const int *slot_expert, int E, int G, int S,
                     int64_t *take, smoe_arena_t *a) {
  const size_t mark = smoe_arena_mark(a);
  reps_t r;
  reps_init(&r, slot_expert, E, G, S, a);
  for (int q = 0; q < G; q++) even_row(&r, counts, E, G, S, q, take + (size_t)q * G * S);
  smoe_arena_release(a, mark);
}

void smoe_split_even_row(const int64_t *counts, const int *slot_expert, int E, int G, int S, int q,
                         int64_t *take_row, smoe_arena_t *a) {
  const size_t mark = smoe_arena_mark(a);
  reps_t r;
  reps_init(&r, slot_expert, E, G, S, a);
  even_row(&r, counts, E, G, S, q, take_row);
  smoe_arena_release(a, mark);
}

void smoe_split_rank_load(const int64_t *take, int G, int S, int64_t *rank_load) {
  const size_t GS = (size_t)G * S;
  for (int g = 0; g < G; g++) rank_load[g] = 0;
  for (int q = 0; q < G; q++)
    for (size_t gs = 0; gs < GS; gs++) rank_load[gs / S] += take[q * GS + gs];
}

void smoe_split_slot_rows(const int64_t *T, const int *slot_expert, int E, int G, int S, int even,
                          int64_t *rows, smoe_arena_t *a) {
  const size_t mark = smoe_arena_mark(a);
  reps_t r;
  reps_init(&r, slot_expert, E, G, S, a);
  check_placed(T, &r, E);
  if (even) {
    memset(rows, 0, sizeof(int64_t) * (size_t)G * S);
  } else {
    balance(T, &r, NULL, E, G, S, rows, a); /* the multi-replica experts' quotas */
  }
  for (int e = 0; e < E; e++) {
    int n = r.start[e + 1] - r.start[e];
    for (int j = 0; j < n; j++)
      if (even || n == 1) rows[r.slots[r.start[e] + j]] = T[e] / n + (j < T[e] % n);
  }
  smoe_arena_release(a, mark);
}
