/* gradlog.c: the gradient log's staging buffers and writer thread (see
 * gradlog.h). Buffers form a ring: the main thread fills slot `head` and
 * queues it, the writer writes slot `tail`; `queued` counts the slots
 * between (filled, not yet written), all under one mutex. */
#define _GNU_SOURCE
#include "gradlog.h"

#include <string.h>
#include <uv.h>

typedef struct {
  smoe_glog_rec_t rec; /* host buffers of the shape's sizes */
  uint8_t *plan;
  size_t plan_cap;
} slot_t;

struct smoe_gradlog {
  smoe_glog_writer_t *w;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv; /* a slot queued, a slot written, or quit */
  slot_t *slot;
  int n, head, tail, queued, filling, quit;
  int64_t durable; /* the step of the last record written, -1 none */
  int failed;
  smoe_err_t err;
  int64_t records;
  uint64_t raw, stored;
  double write_s;
};

static void writer(void *arg) {
  smoe_gradlog_t *g = arg;
  uv_mutex_lock(&g->mu);
  for (;;) {
    while (g->queued == 0 && !g->quit) uv_cond_wait(&g->cv, &g->mu);
    if (g->queued == 0) break; /* quit, and nothing left to write */
    slot_t *s = &g->slot[g->tail];
    const int failed = g->failed;
    uv_mutex_unlock(&g->mu);
    /* the slot is the writer's until it says otherwise: no lock while writing */
    smoe_err_t e;
    double t0 = smoe_now();
    int rc = failed ? 0 : smoe_glog_write(g->w, &s->rec, &e);
    double dt = smoe_now() - t0;
    uv_mutex_lock(&g->mu);
    if (!failed && rc != 0) g->failed = 1, g->err = e;
    if (!failed && rc == 0) {
      g->durable = s->rec.step;
      g->records++, g->raw += s->rec.raw, g->stored += s->rec.stored, g->write_s += dt;
    }
    g->tail = (g->tail + 1) % g->n;
    g->queued--;
    uv_cond_broadcast(&g->cv);
  }
  uv_mutex_unlock(&g->mu);
}

smoe_gradlog_t *smoe_gradlog_open(smoe_store_t *s, int buffers, int level, size_t chunk_bytes,
                                  const smoe_glog_rec_t *shape) {
  smoe_gradlog_t *g = xcalloc(1, sizeof *g);
  g->w = smoe_glog_writer_new(s, level, chunk_bytes);
  g->n = buffers;
  g->durable = -1;
  g->slot = xcalloc((size_t)buffers, sizeof *g->slot);
  for (int i = 0; i < buffers; i++) {
    smoe_glog_rec_t *r = &g->slot[i].rec;
    *r = *shape;
    for (int p = 0; p < r->n_parts; p++) r->part[p].grad = xmalloc(r->part[p].n * sizeof(real) + 1);
    for (int w = 0; w < r->n_whole; w++) r->whole[w].data = xmalloc(r->whole[w].bytes + 1);
  }
  uv_mutex_init(&g->mu);
  uv_cond_init(&g->cv);
  if (uv_thread_create(&g->thread, writer, g) != 0) {
    fprintf(stderr, "swiftmoe: cannot start the gradient log's writer thread\n");
    abort();
  }
  return g;
}

void smoe_gradlog_close(smoe_gradlog_t *g) {
  if (!g) return;
  uv_mutex_lock(&g->mu);
  g->quit = 1;
  uv_cond_broadcast(&g->cv);
  uv_mutex_unlock(&g->mu);
  uv_thread_join(&g->thread);
  uv_cond_destroy(&g->cv);
  uv_mutex_destroy(&g->mu);
  for (int i = 0; i < g->n; i++) {
    smoe_glog_rec_free(&g->slot[i].rec);
    free(g->slot[i].plan);
  }
  free(g->slot);
  smoe_glog_writer_free(g->w);
  free(g);
}

double smoe_gradlog_grads(smoe_gradlog_t *g, int64_t step, const smoe_adamw_t *o, double clip,
                          double norm, const smoe_ops_t *ops, const real *const *grads) {
  double t0 = smoe_now();
  uv_mutex_lock(&g->mu);
  while (g->queued == g->n) uv_cond_wait(&g->cv, &g->mu); /* the writer frees one */
  uv_mutex_unlock(&g->mu);
  smoe_glog_rec_t *r = &g->slot[g->head].rec; /* not queued: the main thread's */
  r->step = step + 1, r->o = *o, r->clip = clip, r->grad_norm = norm;
  for (int p = 0; p < r->n_parts; p++) ops->to_host(r->part[p].grad, grads[p], r->part[p].n * sizeof(real));
  g->filling = 1;
  return smoe_now() - t0;
}

void smoe_gradlog_post(smoe_gradlog_t *g, const void *const *whole, const void *plan,
                       size_t plan_n) {
  if (!g->filling) return; /* no gradients this step (a step that failed before them) */
  slot_t *s = &g->slot[g->head];
  for (int w = 0; w < s->rec.n_whole; w++) memcpy(s->rec.whole[w].data, whole[w], s->rec.whole[w].bytes);
  if (plan_n > s->plan_cap) s->plan = xrealloc(s->plan, s->plan_cap = plan_n);
  if (plan_n) memcpy(s->plan, plan, plan_n);
  s->rec.plan = plan_n ? s->plan : NULL, s->rec.plan_n = plan_n;
  g->filling = 0;
  uv_mutex_lock(&g->mu);
  g->head = (g->head + 1) % g->n;
  g->queued++;
  uv_cond_broadcast(&g->cv);
  uv_mutex_unlock(&g->mu);
}

int64_t smoe_gradlog_durable(smoe_gradlog_t *g, int *failed, smoe_err_t *err) {
  uv_mutex_lock(&g->mu);
  int64_t d = g->durable;
  *failed = g->failed;
  if (g->failed && err) *err = g->err;
  uv_mutex_unlock(&g->mu);
  return d;
}

double smoe_gradlog_drain(smoe_gradlog_t *g) {
  double t0 = smoe_now();
  uv_mutex_lock(&g->mu);
  while (g->queued > 0) uv_cond_wait(&g->cv, &g->mu);
  uv_mutex_unlock(&g->mu);
  return smoe_now() - t0;
}

void smoe_gradlog_counts(smoe_gradlog_t *g, int64_t *records, uint64_t *raw, uint64_t *stored,
                         double *write_s) {
  uv_mutex_lock(&g->mu);
  *records = g->records, *raw = g->raw, *stored = g->stored, *write_s = g->write_s;
  uv_mutex_unlock(&g->mu);
}
