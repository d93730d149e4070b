/* plan.c: replica counts and slot placement for one layer (see plan.h). */
#include "plan.h"

#include <assert.h>
#include <string.h>

/* ---------------------------------------------------------------- counts */

/* A binary heap of expert ids, best at the top under `better`. */
typedef struct {
  int *a, n;
  const double *key; /* loads (greedy) or goals (proportional) */
  const int *r;      /* current replicas */
  int (*better)(const void *h, int x, int y);
} heap_t;

/* greedy: higher load per replica (compared by cross-multiplying, no division),
 * then fewer replicas, then lower index */
static int greedy_better(const void *hv, int x, int y) {
  const heap_t *h = hv;
  double lx = h->key[x] * h->r[y], ly = h->key[y] * h->r[x];
  if (lx != ly) return lx > ly;
  if (h->r[x] != h->r[y]) return h->r[x] < h->r[y];
  return x < y;
}
/* proportional, adding: largest goal - r, then lower index */
static int add_better(const void *hv, int x, int y) {
  const heap_t *h = hv;
  double dx = h->key[x] - h->r[x], dy = h->key[y] - h->r[y];
  return dx != dy ? dx > dy : x < y;
}
/* proportional, removing: smallest goal - r, then higher index */
static int remove_better(const void *hv, int x, int y) {
  const heap_t *h = hv;
  double dx = h->key[x] - h->r[x], dy = h->key[y] - h->r[y];
  return dx != dy ? dx < dy : x > y;
}

static void heap_down(heap_t *h, int i) {
  for (;;) {
    int b = i, l = 2 * i + 1, r = l + 1;
    if (l < h->n && h->better(h, h->a[l], h->a[b])) b = l;
    if (r < h->n && h->better(h, h->a[r], h->a[b])) b = r;
    if (b == i) return;
    int t = h->a[i];
    h->a[i] = h->a[b], h->a[b] = t, i = b;
  }
}

static void heap_build(heap_t *h) {
  for (int i = h->n / 2 - 1; i >= 0; i--) heap_down(h, i);
}

/* Moves `slots` replicas, one at a time, to (+1) or from (-1) the top
 * expert; an expert leaves the heap when it reaches `limit`. */
static void heap_deal(heap_t *h, int *r, int64_t slots, int step, int limit) {
  for (int64_t i = 0; i < slots; i++) {
    assert(h->n > 0);
    int e = h->a[0];
    r[e] += step;
    if (r[e] == limit) h->a[0] = h->a[--h->n];
    heap_down(h, 0);
  }
}

void smoe_plan_counts(smoe_count_rule_t rule, const double *loads, int E, int G, int S,
                      int *replicas, smoe_arena_t *sa) {
  const size_t mark = smoe_arena_mark(sa);
  assert(E >= 1 && G >= 1 && S >= 1 && (int64_t)G * S >= E);
  const int64_t N = (int64_t)G * (S < E ? S : E); /* slots to fill: min(G*S, G*E) */
  heap_t h = {.a = smoe_arena_take(sa, sizeof(int) * (size_t)E), .r = replicas};
  double total = 0;
  for (int e = 0; e < E; e++) {
    assert(loads[e] >= 0 && loads[e] < INFINITY);
    total += loads[e];
  }
  if (rule == SMOE_COUNTS_GREEDY) {
    for (int e = 0; e < E; e++) replicas[e] = 1;
    h.key = loads, h.better = greedy_better;
    for (int e = 0; e < E; e++)
      if (G > 1) h.a[h.n++] = e;
    heap_build(&h);
    heap_deal(&h, replicas, N - E, +1, G);
  } else {
    double *goal = smoe_arena_take(sa, sizeof(double) * (size_t)E);
    int64_t sum = 0;
    for (int e = 0; e < E; e++) {
      goal[e] = total > 0 ? loads[e] / total * (double)N : (double)N / E;
      double f = floor(goal[e]);
      replicas[e] = f < 1 ? 1 : f > G ? G : (int)f;
      sum += replicas[e];
    }
    h.key = goal;
    if (sum < N) {
      h.better = add_better;
      for (int e = 0; e < E; e++)
        if (replicas[e] < G) h.a[h.n++] = e;
      heap_build(&h);
      heap_deal(&h, replicas, N - sum, +1, G);
    } else if (sum > N) {
      h.better = remove_better;
      for (int e = 0; e < E; e++)
        if (replicas[e] > 1) h.a[h.n++] = e;
      heap_build(&h);
      heap_deal(&h, replicas, sum - N, -1, 1);
    }
  }
  smoe_arena_release(sa, mark);
}

/* ----------------------------------------------------------------- slots */

typedef struct {
  int E, G, S;
  int *se;            /* (G*S) the output slot_expert */
  int *used;          /* (G) filled slots of each rank */
  double *level;      /* (G) estimated tokens of each rank */
  const double *w;    /* (E) estimated tokens of one replica: load / replicas */
  int *pref_start;    /* (E+1) each expert's top senders: pref_g, pref_n [start[e], start[e+1]) */
  int *pref_g;        /* ranks, most tokens first (ties: lower rank); NULL without src */
  int64_t *pref_n;    /* tokens they sent */
  int64_t *mark;      /* (G) scratch: tokens rank g sent to the expert being placed */
  smoe_arena_t *sa;   /* where the scratch comes from */
  int *freel, nfreel; /* ranks that may have a free slot, ascending */
  int *nfree_ge;      /* (S+2) ranks with at least v free slots */
  int vmax;           /* no expert still to place has more replicas (fits) */
  int64_t remaining;  /* replicas still to place (fits) */
} place_t;

/* The top senders of each expert: of the ranks that sent it tokens, the
 * min(G, r_e + 2) that sent the most, most first, ties to the lower rank;
 * the other ranks count as having sent nothing. One pass over src. */
static void find_senders(place_t *p, const int64_t *src, const int *replicas) {
  const int E = p->E, G = p->G;
  smoe_arena_t *sa = p->sa;
  int *cnt = smoe_arena_zero(sa, (size_t)E, sizeof(int));
  int64_t *thr = smoe_arena_zero(sa, (size_t)E, sizeof(int64_t)); /* to enter: more than this */
  p->pref_start = smoe_arena_take(sa, sizeof(int) * ((size_t)E + 1));
  p->pref_start[0] = 0;
  for (int e = 0; e < E; e++) {
    int P = replicas[e] + 2;
    p->pref_start[e + 1] = p->pref_start[e] + (P < G ? P : G);
  }
  /* sized by the bound sum min(G, r_e + 2) <= min(G E, G S + 2 E), the same
   * every step, so the arena grows only once */
  int64_t bound = (int64_t)G * E < (int64_t)G * p->S + 2 * E ? (int64_t)G * E : (int64_t)G * p->S + 2 * E;
  p->pref_g = smoe_arena_take(sa, sizeof(int) * (size_t)bound);
  p->pref_n = smoe_arena_take(sa, sizeof(int64_t) * (size_t)bound);
  for (int g = 0; g < G; g++) {
    const int64_t *row = src + (size_t)g * E;
    for (int e = 0; e < E; e++) {
      int64_t v = row[e];
      if (v <= thr[e]) continue; /* most do not enter */
      int *lg = p->pref_g + p->pref_start[e], P = p->pref_start[e + 1] - p->pref_start[e];
      int64_t *ln = p->pref_n + p->pref_start[e];
      int j = cnt[e] < P ? cnt[e]++ : P - 1; /* insertion from the end: usually short */
      for (; j > 0 && ln[j - 1] < v; j--) lg[j] = lg[j - 1], ln[j] = ln[j - 1];
      lg[j] = g, ln[j] = v;
      if (cnt[e] == P) thr[e] = ln[P - 1];
    }
  }
  for (int e = 0; e < E; e++) /* the unused tail: rank 0, no tokens */
    for (int j = p->pref_start[e] + cnt[e]; j < p->pref_start[e + 1]; j++)
      p->pref_g[j] = 0, p->pref_n[j] = 0;
}

static int holds(const place_t *p, int g, int e) {
  for (int s = 0; s < p->used[g]; s++)
    if (p->se[g * p->S + s] == e) return 1;
  return 0;
}

static void put(place_t *p, int g, int e) {
  assert(p->used[g] < p->S);
  p->nfree_ge[p->S - p->used[g]]--;
  p->se[g * p->S + p->used[g]++] = e;
}

/* Undoes the last put on rank g. */
static void unput(place_t *p, int g) {
  p->se[g * p->S + --p->used[g]] = -1;
  p->nfree_ge[p->S - p->used[g]]++;
}

/* A candidate rank for expert e: lower level first, then more tokens sent
 * to e last iteration, then lower rank. */
typedef struct {
  double level;
  int64_t src;
  int g;
} cand_t;

static int cand_less(const cand_t *a, const cand_t *b) {
  if (a->level != b->level) return a->level < b->level;
  if (a->src != b->src) return a->src > b->src;
  return a->g < b->g;
}

/* Reorders c (n, all distinct) so that its r smallest come first. */
static void select_smallest(cand_t *c, int n, int r) {
  if (r <= 0 || r >= n) return;
  if (r <= 16) { /* few: keep the r best sorted, most candidates fail one test */
    for (int i = 1; i < r; i++)
      for (int j = i; j > 0 && cand_less(&c[j], &c[j - 1]); j--) {
        cand_t x = c[j];
        c[j] = c[j - 1], c[j - 1] = x;
      }
    for (int i = r; i < n; i++)
      if (cand_less(&c[i], &c[r - 1])) {
        cand_t x = c[i];
        c[i] = c[r - 1];
        int j = r - 1;
        for (; j > 0 && cand_less(&x, &c[j - 1]); j--) c[j] = c[j - 1];
        c[j] = x;
      }
    return;
  }
  int lo = 0, hi = n - 1, t = r - 1; /* quickselect, median of three */
  while (lo < hi) {
    cand_t a = c[lo], b = c[(lo + hi) / 2], d = c[hi], piv;
    if (cand_less(&a, &b))
      piv = cand_less(&b, &d) ? b : cand_less(&a, &d) ? d : a;
    else
      piv = cand_less(&a, &d) ? a : cand_less(&b, &d) ? d : b;
    int i = lo, j = hi;
    while (i <= j) {
      while (cand_less(&c[i], &piv)) i++;
      while (cand_less(&piv, &c[j])) j--;
      if (i <= j) {
        cand_t x = c[i];
        c[i++] = c[j], c[j--] = x;
      }
    }
    if (t <= j)
      hi = j;
    else if (t >= i)
      lo = i;
    else
      break;
  }
}

/* The ranks with a free slot (none of which holds e when e is placed all at
 * once), as candidates for e. */
static int candidates(place_t *p, int e, cand_t *c) {
  int n = 0, kept = 0, a = p->pref_g ? p->pref_start[e] : 0,
      b = p->pref_g ? p->pref_start[e + 1] : 0;
  for (int j = a; j < b && p->pref_n[j] > 0; j++) p->mark[p->pref_g[j]] = p->pref_n[j];
  for (int i = 0; i < p->nfreel; i++) {
    int g = p->freel[i];
    if (p->used[g] == p->S) continue; /* full: drop from the list */
    p->freel[kept++] = g;
    c[n++] = (cand_t){p->level[g], p->mark[g], g};
  }
  p->nfreel = kept;
  for (int j = a; j < b && p->pref_n[j] > 0; j++) p->mark[p->pref_g[j]] = 0;
  return n;
}

/* Places one more replica of e when every rank with a free slot holds e
 * already: a rank g2 without e is full, and holds an expert f that the
 * lowest-level rank g with a free slot lacks (g holds e and fewer than S
 * experts, g2 holds S experts other than e); f moves to g, e takes its slot
 * on g2. */
static void place_by_swap(place_t *p, int e) {
  const int G = p->G, S = p->S;
  int g = -1, g2 = -1, sf = -1;
  for (int h = 0; h < G; h++) {
    if (p->used[h] < S && (g < 0 || p->level[h] < p->level[g])) g = h;
    if (!holds(p, h, e) && (g2 < 0 || p->level[h] < p->level[g2])) g2 = h;
  }
  assert(g >= 0 && g2 >= 0 && p->used[g2] == S);
  for (int s = 0; s < S; s++) { /* the lightest expert of g2 that g lacks */
    int f = p->se[g2 * S + s];
    if (!holds(p, g, f) && (sf < 0 || p->w[f] < p->w[p->se[g2 * S + sf]])) sf = s;
  }
  assert(sf >= 0);
  int f = p->se[g2 * S + sf];
  p->se[g2 * S + sf] = e;
  put(p, g, f);
  p->level[g] += p->w[f];
  p->level[g2] += p->w[e] - p->w[f];
}

static int double_cmp(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* Raises the lowest of the levels of ranks g (n <= G) to one common level so
 * that they grow by `amount` in all (water-filling, as the split will do). */
static void pour(double *level, const int *g, int n, int G, double amount, smoe_arena_t *sa) {
  const size_t mark = smoe_arena_mark(sa);
  double *lv = smoe_arena_take(sa, sizeof(double) * (size_t)G), sum = 0; /* n <= G */
  for (int i = 0; i < n; i++) lv[i] = level[g[i]];
  qsort(lv, (size_t)n, sizeof(double), double_cmp);
  int k = 0;
  while (k < n && lv[k] * k - sum <= amount) sum += lv[k++]; /* the k lowest reach lv[k-1] */
  double top = (amount + sum) / k;
  for (int i = 0; i < n; i++)
    if (level[g[i]] < top) level[g[i]] = top;
  smoe_arena_release(sa, mark);
}

/* Experts in the order a rule places them: higher class, then higher key,
 * then lower index. */
typedef struct {
  int cls;
  double key;
  int e;
} order_t;

static int order_cmp(const void *x, const void *y) {
  const order_t *a = x, *b = y;
  if (a->cls != b->cls) return b->cls - a->cls;
  if (a->key != b->key) return a->key < b->key ? 1 : -1;
  return a->e - b->e;
}

/* Whether the replicas still to place fit on distinct ranks of the free
 * slots (Gale-Ryser): rem (G+1) counts the experts still to place by
 * replica count; for every k, the k largest demands must not exceed the sum
 * over ranks of min(free slots, k). */
static int fits(place_t *p, const int *rem) {
  int64_t cap = 0, total = 0, need = 0, left = 0;
  for (int v = 1; v <= p->S; v++) total += p->nfree_ge[v];
  while (p->vmax > 1 && rem[p->vmax] == 0) p->vmax--;
  int v = p->vmax, k = 0;
  while (k < p->S && v >= 1) { /* need(k) for k = 1 .. S */
    if (left == 0) {
      while (v >= 1 && rem[v] == 0) v--;
      if (v < 1) break;
      left = rem[v];
    }
    k++, left--, need += v, cap += p->nfree_ge[k];
    if (left == 0) v--;
    if (need > cap) return 0;
  }
  return p->remaining <= total;
}

/* One slot per rank: every free rank is empty (level 0), so each expert in
 * order takes its top senders that are free, then the lowest free ranks. */
static void place_one_slot(place_t *p, const order_t *order, const int *replicas) {
  int low = 0;
  for (int i = 0; i < p->E; i++) {
    const int e = order[i].e;
    int need = replicas[e];
    for (int j = p->pref_g ? p->pref_start[e] : 0;
         need > 0 && p->pref_g && j < p->pref_start[e + 1]; j++)
      if (p->pref_n[j] > 0 && p->used[p->pref_g[j]] == 0) put(p, p->pref_g[j], e), need--;
    for (; need > 0; need--) {
      while (p->used[low]) low++;
      put(p, low, e);
    }
  }
}

/* EPLB: each replica of each expert in order onto the least-loaded rank with
 * a free slot and without the expert, load = sum of load per replica. */
static void place_eplb(place_t *p, const order_t *order, const int *replicas, cand_t *c) {
  for (int i = 0; i < p->E; i++) {
    int e = order[i].e, n = candidates(p, e, c), k = n < replicas[e] ? n : replicas[e];
    select_smallest(c, n, k);
    for (int j = 0; j < k; j++) put(p, c[j].g, e), p->level[c[j].g] += p->w[e];
    for (int j = k; j < replicas[e]; j++) place_by_swap(p, e);
  }
}

static void place_contiguous(place_t *p, const int *replicas) {
  int frontier = 0; /* ranks before it are full */
  for (int e = 0; e < p->E; e++) {
    int placed = 0;
    for (int g = frontier; g < p->G && placed < replicas[e]; g++)
      if (p->used[g] < p->S) put(p, g, e), placed++;
    while (frontier < p->G && p->used[frontier] == p->S) frontier++;
    for (; placed < replicas[e]; placed++) place_by_swap(p, e);
  }
}

/* Ours. Multi-replica experts first (their load the split moves), most
 * replicas then highest load first: all but one replica onto the lowest-level
 * ranks that hold no multi-replica expert yet, one onto the lowest-level
 * rank that does (so that they form one connected graph over which the
 * split moves load, and cover every rank they can), the load poured over
 * them. Then the single-replica experts (fixed load), heaviest first onto
 * the lowest-level rank whose free slot the experts still to place do not
 * need. A choice that would leave the rest no room falls back to the ranks
 * with most free slots (Havel-Hakimi); a swap repairs anything left. */
/* A min-heap of ranks by (level, rank): the single-replica experts' choice
 * without src (every rank's src mark 0, so cand_less is this order). */
typedef struct {
  int *h, n;
  const double *level;
} rank_heap_t;

static int heap_less(const rank_heap_t *q, int a, int b) {
  return q->level[a] != q->level[b] ? q->level[a] < q->level[b] : a < b;
}

static void heap_push(rank_heap_t *q, int g) {
  int i = q->n++;
  for (; i > 0 && heap_less(q, g, q->h[(i - 1) / 2]); i = (i - 1) / 2) q->h[i] = q->h[(i - 1) / 2];
  q->h[i] = g;
}

static int heap_pop(rank_heap_t *q) {
  int top = q->h[0], x = q->h[--q->n], i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= q->n) break;
    if (c + 1 < q->n && heap_less(q, q->h[c + 1], q->h[c])) c++;
    if (!heap_less(q, q->h[c], x)) break;
    q->h[i] = q->h[c], i = c;
  }
  if (q->n) q->h[i] = x;
  return top;
}

/* place_balanced's single-replica step without src, from the heap: the
 * lowest rank whose slot keeps the rest feasible, else the lowest (the same
 * choice as the scan over candidates). Returns the rank. */
static int place_single(place_t *p, rank_heap_t *q, int e, const int *rem, int *rejected) {
  int nr = 0, g = -1;
  while (q->n > 0) {
    int h = heap_pop(q);
    put(p, h, e);
    if (fits(p, rem)) {
      g = h;
      break;
    }
    unput(p, h);
    rejected[nr++] = h;
  }
  if (g < 0) put(p, g = rejected[0], e); /* none keeps the rest feasible: a swap follows */
  for (int j = 0; j < nr; j++)
    if (rejected[j] != g) heap_push(q, rejected[j]);
  return g;
}

static void place_balanced(place_t *p, const double *loads, const order_t *order,
                           const int *replicas, cand_t *c) {
  const int E = p->E, G = p->G;
  smoe_arena_t *sa = p->sa;
  int *chosen = smoe_arena_take(sa, sizeof(int) * (size_t)G), *rem = smoe_arena_zero(sa, (size_t)G + 1, sizeof(int));
  char *covered = smoe_arena_zero(sa, (size_t)G, 1);
  cand_t *cv = smoe_arena_take(sa, sizeof(cand_t) * (size_t)G);
  rank_heap_t heap = {NULL, 0, p->level};
  int *rejected = NULL;
  for (int e = 0; e < E; e++) rem[replicas[e]]++, p->remaining += replicas[e];
  for (int i = 0; i < E; i++) {
    const int e = order[i].e, r = replicas[e];
    rem[r]--, p->remaining -= r;
    if (r == 1 && !p->pref_g) {
      if (!heap.h) { /* the single-replica experts come last (order) */
        heap.h = smoe_arena_take(sa, sizeof(int) * (size_t)G);
        rejected = smoe_arena_take(sa, sizeof(int) * (size_t)G);
        for (int h = 0; h < G; h++)
          if (p->used[h] < p->S) heap_push(&heap, h);
      }
      int g = place_single(p, &heap, e, rem, rejected);
      p->level[g] += loads[e];
      if (p->used[g] < p->S) heap_push(&heap, g);
      continue;
    }
    int n = candidates(p, e, c), k = n < r ? n : r, g = -1;
    if (r == 1) {
      for (;;) {
        int best = -1;
        for (int j = 0; j < n; j++)
          if (c[j].g >= 0 && (best < 0 || cand_less(&c[j], &c[best]))) best = j;
        if (best < 0) break;
        put(p, c[best].g, e);
        if (fits(p, rem)) {
          g = c[best].g;
          break;
        }
        unput(p, c[best].g);
        c[best].g = -1; /* excluded */
      }
      if (g < 0) { /* no rank keeps the rest feasible: the lowest, a swap will follow */
        n = candidates(p, e, c);
        select_smallest(c, n, 1);
        put(p, g = c[0].g, e);
      }
      p->level[g] += loads[e];
      continue;
    }
    int nu = 0, nc = 0;
    for (int j = 0; j < n; j++) {
      if (covered[c[j].g])
        cv[nc++] = c[j];
      else
        c[nu++] = c[j];
    }
    int tu = k - (nc > 0 && i > 0); /* from the uncovered ranks */
    tu = tu < nu ? tu : nu;
    select_smallest(c, nu, tu);
    select_smallest(cv, nc, k - tu);
    for (int j = 0; j < k - tu; j++) c[tu + j] = cv[j];
    for (int j = 0; j < k; j++) put(p, chosen[j] = c[j].g, e);
    if (k == r && !fits(p, rem)) {
      for (int j = k - 1; j >= 0; j--) unput(p, chosen[j]);
      n = candidates(p, e, c);
      for (int j = 0; j < n; j++) c[j].level = p->used[c[j].g]; /* most free first */
      select_smallest(c, n, k);
      for (int j = 0; j < k; j++) put(p, chosen[j] = c[j].g, e);
    }
    for (int j = 0; j < k; j++) covered[chosen[j]] = 1;
    if (k > 0) pour(p->level, chosen, k, G, loads[e], p->sa);
    for (int j = k; j < r; j++) place_by_swap(p, e);
  }
}

void smoe_plan_slots(smoe_slot_rule_t rule, const double *loads, const int *replicas,
                     const int64_t *src, int E, int G, int S, int *slot_expert, smoe_arena_t *sa) {
  assert(E >= 1 && G >= 1 && S >= 1 && (int64_t)G * S >= E);
  int64_t total = 0;
  for (int e = 0; e < E; e++) {
    assert(replicas[e] >= 1 && replicas[e] <= G && loads[e] >= 0);
    total += replicas[e];
  }
  assert(total <= (int64_t)G * S);
  const size_t mark = smoe_arena_mark(sa);
  double *w = smoe_arena_take(sa, sizeof(double) * (size_t)E);
  for (int e = 0; e < E; e++) w[e] = loads[e] / replicas[e];
  place_t p = {.E = E,
               .G = G,
               .S = S,
               .se = slot_expert,
               .w = w,
               .vmax = G,
               .nfreel = G,
               .used = smoe_arena_zero(sa, (size_t)G, sizeof(int)),
               .level = smoe_arena_zero(sa, (size_t)G, sizeof(double)),
               .nfree_ge = smoe_arena_zero(sa, (size_t)S + 2, sizeof(int)),
               .freel = smoe_arena_take(sa, sizeof(int) * (size_t)G),
               .mark = smoe_arena_zero(sa, (size_t)G, sizeof(int64_t)),
               .sa = sa};
  for (int v = 1; v <= S; v++) p.nfree_ge[v] = G;
  for (int g = 0; g < G; g++) p.freel[g] = g;
  for (int64_t i = 0; i < (int64_t)G * S; i++) slot_expert[i] = -1;
  if (rule == SMOE_SLOTS_CONTIGUOUS) {
    place_contiguous(&p, replicas);
  } else {
    if (src) find_senders(&p, src, replicas);
    order_t *order = smoe_arena_take(sa, sizeof(order_t) * (size_t)E);
    for (int e = 0; e < E; e++)
      order[e] = rule == SMOE_SLOTS_EPLB
                     ? (order_t){0, w[e], e}
                     : (order_t){replicas[e] > 1 ? replicas[e] : 0, loads[e], e};
    qsort(order, (size_t)E, sizeof(order_t), order_cmp);
    cand_t *c = smoe_arena_take(sa, sizeof(cand_t) * (size_t)G);
    if (S == 1)
      place_one_slot(&p, order, replicas);
    else if (rule == SMOE_SLOTS_EPLB)
      place_eplb(&p, order, replicas, c);
    else
      place_balanced(&p, loads, order, replicas, c);
  }
  smoe_arena_release(sa, mark);
}
