/* glog.c: the gradient log (see glog.h). */
#define _POSIX_C_SOURCE 200809L
#include "glog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "bytes.h"
#include "codec.h"

#define GLOG_MAGIC "SMGL"
#define GLOG_VERSION 1u
#define MAX_CHUNKS (1u << 24)

struct smoe_glog_writer {
  smoe_store_t *s;
  int level;
  size_t chunk_bytes;
  uint8_t *out; /* one encoded chunk */
  size_t out_cap;
  smoe_batch_t *b;
  wbuf_t h; /* the header */
};

smoe_glog_writer_t *smoe_glog_writer_new(smoe_store_t *s, int level, size_t chunk_bytes) {
  smoe_glog_writer_t *w = xcalloc(1, sizeof *w);
  w->s = s, w->level = level, w->chunk_bytes = chunk_bytes;
  w->out_cap = smoe_codec_bound(chunk_bytes);
  w->out = xmalloc(w->out_cap);
  w->b = smoe_batch_new(s);
  return w;
}

void smoe_glog_writer_free(smoe_glog_writer_t *w) {
  if (!w) return;
  smoe_batch_free(w->b);
  free(w->out);
  free(w->h.p);
  free(w);
}

static uint32_t n_chunks(size_t bytes, size_t chunk) {
  return (uint32_t)((bytes + chunk - 1) / chunk);
}

int smoe_glog_write(smoe_glog_writer_t *w, smoe_glog_rec_t *r, smoe_err_t *err) {
  wbuf_t *h = &w->h;
  h->n = 0;
  w_bytes(h, GLOG_MAGIC, 4);
  w_u32(h, GLOG_VERSION);
  w_u64(h, (uint64_t)r->step);
  const double sc[7] = {r->o.lr, r->o.beta1, r->o.beta2, r->o.eps, r->o.weight_decay, r->clip,
                        r->grad_norm};
  for (int i = 0; i < 7; i++) w_f64(h, sc[i]);
  w_u32(h, (uint32_t)r->n_parts);
  w_u32(h, (uint32_t)r->n_whole);
  smoe_batch_clear(w->b);
  r->raw = r->stored = 0;
  uint8_t k[CHUNK_KEY];
  for (int p = 0; p < r->n_parts; p++) {
    const smoe_glog_part_t *g = &r->part[p];
    const size_t bytes = g->n * (size_t)g->elem;
    const uint32_t nc = n_chunks(bytes, w->chunk_bytes);
    w_u8(h, (uint8_t)g->param), w_u8(h, (uint8_t)g->m), w_u8(h, (uint8_t)g->v);
    w_u8(h, (uint8_t)g->elem);
    w_u64(h, g->n);
    w_u32(h, nc);
    for (uint32_t c = 0; c < nc; c++) {
      const size_t off = (size_t)c * w->chunk_bytes,
                   len = bytes - off < w->chunk_bytes ? bytes - off : w->chunk_bytes;
      int64_t n = smoe_codec_encode(SMOE_ENC_SHUFFLE_ZSTD, w->level, (uint8_t *)g->grad + off, NULL,
                                    len, (size_t)g->elem, w->out, w->out_cap, err);
      if (n < 0) return -1;
      chunk_key(k, r->step, p, c);
      smoe_batch_put(w->b, SMOE_CF_GRADS, k, sizeof k, w->out, (size_t)n);
      w_u64(h, (uint64_t)n);
      r->raw += len, r->stored += (uint64_t)n;
    }
  }
  for (int i = 0; i < r->n_whole; i++) {
    w_u8(h, (uint8_t)r->whole[i].region);
    w_u64(h, r->whole[i].bytes);
    w_bytes(h, r->whole[i].data, r->whole[i].bytes);
  }
  r->stored += h->n + 24;
  w_u64(h, r->raw);
  w_u64(h, r->stored);
  w_u64(h, smoe_codec_hash(h->p, h->n));
  uint8_t mk[META_KEY];
  meta_key(mk, 'l', r->step);
  if (r->plan) {
    uint8_t pk[8];
    put_be64(pk, (uint64_t)r->step);
    smoe_batch_put(w->b, SMOE_CF_PLACEMENT, pk, 8, r->plan, r->plan_n);
  }
  smoe_batch_put(w->b, SMOE_CF_META, mk, sizeof mk, h->p, h->n);
#ifdef SMOE_KILL_POINTS
  const char *delay = getenv("SMOE_LOG_DELAY_MS"); /* a writer slower than a step */
  if (delay) nanosleep(&(struct timespec){atoi(delay) / 1000, atoi(delay) % 1000 * 1000000L}, NULL);
  SMOE_KILL_POINT("glog.before_write");
#endif
  smoe_err_t e;
  if (smoe_store_write(w->s, w->b, SMOE_WRITE_SYNC, &e) != 0)
    return smoe_fail(err, "gradient log of step %lld: %s", (long long)r->step, e.msg);
  return 0;
}

void smoe_glog_rec_free(smoe_glog_rec_t *r) {
  for (int p = 0; p < r->n_parts; p++) free(r->part[p].grad);
  for (int i = 0; i < r->n_whole; i++) free(r->whole[i].data);
  memset(r, 0, sizeof *r);
}

/* The header of `step` into r (the parts' grads allocated, not filled) and
 * each part's chunk count and stored sizes (sizes[p] malloc'd). */
static int header_decode(const char *path, int64_t step, const uint8_t *v, size_t n,
                         smoe_glog_rec_t *r, uint32_t *nc, uint64_t **sizes, smoe_err_t *err) {
  memset(r, 0, sizeof *r);
  const char *bad = NULL;
  rbuf_t b = {v, n < 8 ? 0 : n - 8, 0, 0}, tail = {v, n, n < 8 ? 0 : n - 8, 0};
  if (n < 8 || smoe_codec_hash(v, n - 8) != r_u64(&tail)) bad = "bad checksum";
  const uint8_t *magic = bad ? NULL : r_take(&b, 4);
  if (!bad && (!magic || memcmp(magic, GLOG_MAGIC, 4) != 0 || r_u32(&b) != GLOG_VERSION))
    bad = "not a record of this version";
  if (!bad) {
    r->step = (int64_t)r_u64(&b);
    double sc[7];
    for (int i = 0; i < 7; i++) sc[i] = r_f64(&b);
    r->o = (smoe_adamw_t){sc[0], sc[1], sc[2], sc[3], sc[4]};
    r->clip = sc[5], r->grad_norm = sc[6];
    uint32_t np = r_u32(&b), nw = r_u32(&b);
    if (r->step != step || np > SMOE_GLOG_PARTS || nw > SMOE_GLOG_WHOLE)
      bad = "another step, or too many parts";
    for (uint32_t p = 0; p < np && !bad && !b.bad; p++) {
      smoe_glog_part_t *g = &r->part[p];
      g->param = r_u8(&b), g->m = r_u8(&b), g->v = r_u8(&b), g->elem = r_u8(&b);
      g->n = (size_t)r_u64(&b);
      nc[p] = r_u32(&b);
      if (b.bad || (g->elem != 4 && g->elem != 8) || nc[p] > MAX_CHUNKS ||
          g->n > ((size_t)1 << 40) || (nc[p] == 0) != (g->n == 0)) {
        bad = "a malformed part";
        break;
      }
      g->grad = xmalloc(g->n * (size_t)g->elem + 1);
      sizes[p] = xmalloc(sizeof(uint64_t) * (nc[p] + 1));
      r->n_parts = (int)p + 1;
      for (uint32_t c = 0; c < nc[p]; c++) sizes[p][c] = r_u64(&b);
    }
    for (uint32_t i = 0; i < nw && !bad && !b.bad; i++) {
      smoe_glog_whole_t *x = &r->whole[i];
      x->region = r_u8(&b);
      x->bytes = (size_t)r_u64(&b);
      const uint8_t *p = r_take(&b, x->bytes);
      if (!p) break;
      x->data = xmalloc(x->bytes + 1);
      memcpy(x->data, p, x->bytes);
      r->n_whole = (int)i + 1;
    }
    r->raw = r_u64(&b), r->stored = r_u64(&b);
    if (!bad && (b.bad || b.at != b.n)) bad = "truncated or too long";
  }
  if (!bad) return 0;
  for (int p = 0; p < r->n_parts; p++) free(sizes[p]), sizes[p] = NULL;
  smoe_glog_rec_free(r);
  return smoe_fail(err, "%s: gradient log record of step %lld (meta key 'l'+%lld, %zu bytes): %s",
                   path, (long long)step, (long long)step, n, bad);
}

/* Part p's chunks from the grads family into its buffer: each must have the
 * stored size the header names, decode (its checksum), and fill the part
 * exactly with chunks of one size but the last. */
static int read_part(smoe_store_t *s, int64_t step, int p, smoe_glog_part_t *g, uint32_t nc,
                     const uint64_t *sizes, smoe_err_t *err) {
  const size_t bytes = g->n * (size_t)g->elem;
  size_t off = 0, chunk = 0;
  uint8_t k[CHUNK_KEY];
  for (uint32_t c = 0; c < nc; c++) {
    chunk_key(k, step, p, c);
    void *v = NULL;
    size_t n = 0, raw = 0;
    smoe_err_t e = {{0}};
    int got = smoe_store_get(s, SMOE_CF_GRADS, k, sizeof k, &v, &n, &e);
    if (got > 0 && n != sizes[c]) snprintf(e.msg, sizeof e.msg, "%zu bytes stored, the record "
                                           "says %llu", n, (unsigned long long)sizes[c]);
    else if (got > 0 && smoe_codec_info(v, n, NULL, &raw, NULL, &e) == 0) {
      if (c == 0) chunk = raw;
      if (raw > bytes - off || raw == 0 || (c + 1 < nc && raw != chunk) ||
          (c + 1 == nc && off + raw != bytes))
        snprintf(e.msg, sizeof e.msg, "%zu raw bytes do not fit the part", raw);
      else
        smoe_codec_decode(v, n, NULL, (uint8_t *)g->grad + off, raw, &e);
    } else if (got == 0)
      snprintf(e.msg, sizeof e.msg, "missing");
    free(v);
    if (e.msg[0])
      return smoe_fail(err, "%s: gradient log of step %lld, part %d chunk %u (grads key "
                       "%lld|%d|%u): %s", smoe_store_path(s), (long long)step, p, c,
                       (long long)step, p, c, e.msg);
    off += raw;
  }
  return 0;
}

int smoe_glog_read(smoe_store_t *s, int64_t step, smoe_glog_rec_t *r, smoe_err_t *err) {
  memset(r, 0, sizeof *r);
  uint8_t mk[META_KEY];
  meta_key(mk, 'l', step);
  void *v = NULL;
  size_t n = 0;
  int found = smoe_store_get(s, SMOE_CF_META, mk, sizeof mk, &v, &n, err);
  if (found <= 0) return found;
  uint32_t nc[SMOE_GLOG_PARTS] = {0};
  uint64_t *sizes[SMOE_GLOG_PARTS] = {NULL};
  int rc = header_decode(smoe_store_path(s), step, v, n, r, nc, sizes, err);
  free(v);
  for (int p = 0; p < r->n_parts; p++) {
    if (rc == 0) rc = read_part(s, step, p, &r->part[p], nc[p], sizes[p], err);
    free(sizes[p]);
  }
  if (rc != 0) smoe_glog_rec_free(r);
  return rc == 0 ? 1 : -1;
}

/* --- listing, deleting ---------------------------------------------------- */

typedef struct {
  steps_t st;
  uint64_t bytes;
} list_t;

static int list_one(void *ctx, const void *k, size_t klen, const void *v, size_t vlen) {
  list_t *l = ctx;
  if (klen != META_KEY) return 0;
  steps_add(&l->st, (int64_t)get_be64((const uint8_t *)k + 1));
  if (vlen >= 16) { /* the stored bytes, just before the checksum */
    rbuf_t b = {v, vlen, vlen - 16, 0};
    l->bytes += r_u64(&b);
  }
  return 0;
}

int smoe_glog_steps(smoe_store_t *s, int64_t **steps, int *n, uint64_t *bytes, smoe_err_t *err) {
  list_t l = {0};
  uint8_t prefix = 'l';
  int rc = smoe_store_scan(s, SMOE_CF_META, &prefix, 1, list_one, &l, err);
  *steps = l.st.v, *n = l.st.n;
  if (bytes) *bytes = l.bytes;
  return rc;
}

int smoe_glog_delete(smoe_store_t *s, int64_t lo, int64_t hi, smoe_err_t *err) {
  if (hi <= lo) return 0;
  uint8_t a[META_KEY], b[META_KEY];
  meta_key(a, 'l', lo);
  meta_key(b, 'l', hi);
  if (smoe_store_delete_range(s, SMOE_CF_META, a, sizeof a, b, sizeof b, err) != 0) return -1;
  return smoe_store_delete_range(s, SMOE_CF_GRADS, a + 1, 8, b + 1, 8, err);
}

int64_t smoe_glog_reach(const int64_t *steps, int n, const int64_t *bases, int nb) {
  int64_t best = -1;
  for (int i = 0; i < nb; i++) {
    int64_t s = bases[i];
    int j = 0;
    while (j < n && steps[j] <= s) j++;
    while (j < n && steps[j] == s + 1) s++, j++;
    if (s > best) best = s;
  }
  return best;
}

/* --- applying --------------------------------------------------------------- */

int smoe_glog_check(const smoe_glog_rec_t *r, const smoe_ckpt_region_t *regions, int n_regions,
                    smoe_err_t *err) {
  for (int p = 0; p < r->n_parts; p++) { /* every index and size before anything changes */
    const smoe_glog_part_t *g = &r->part[p];
    const int ix[3] = {g->param, g->m, g->v};
    for (int i = 0; i < 3; i++)
      if (ix[i] < 0 || ix[i] >= n_regions || regions[ix[i]].bytes != g->n * (size_t)g->elem ||
          regions[ix[i]].elem != g->elem)
        return smoe_fail(err, "gradient log of step %lld: part %d (%zu values of %d bytes) does "
                         "not fit region %d of this run", (long long)r->step, p, g->n, g->elem,
                         ix[i]);
    if (g->elem != (int)sizeof(real))
      return smoe_fail(err, "gradient log of step %lld: written with %d-byte values, this build "
                       "computes in %zu-byte ones", (long long)r->step, g->elem, sizeof(real));
  }
  for (int i = 0; i < r->n_whole; i++)
    if (r->whole[i].region < 0 || r->whole[i].region >= n_regions ||
        regions[r->whole[i].region].bytes != r->whole[i].bytes)
      return smoe_fail(err, "gradient log of step %lld: region %d's %zu bytes do not fit this "
                       "run", (long long)r->step, r->whole[i].region, r->whole[i].bytes);
  return 0;
}

void smoe_glog_apply(const smoe_glog_rec_t *r, const smoe_ckpt_region_t *regions,
                     void *const *scratch) {
  for (int p = 0; p < r->n_parts; p++) {
    const smoe_glog_part_t *g = &r->part[p];
    const smoe_ops_t *ops = regions[g->param].ops ? regions[g->param].ops : &smoe_ops_cpu;
    if (scratch[p] != g->grad) ops->to_device(scratch[p], g->grad, g->n * sizeof(real));
    ops->adamw(regions[g->param].data, scratch[p], regions[g->m].data, regions[g->v].data, g->n,
               &r->o, r->step);
  }
  for (int i = 0; i < r->n_whole; i++) {
    const smoe_ckpt_region_t *d = &regions[r->whole[i].region];
    if (d->ops)
      d->ops->to_device(d->data, r->whole[i].data, d->bytes);
    else
      memcpy(d->data, r->whole[i].data, d->bytes);
  }
}

/* --- checking a replay ------------------------------------------------------ */

int smoe_glog_verify_replay(smoe_store_t *s, int rank, int64_t base, int64_t to, smoe_err_t *err) {
  smoe_ckpt_reader_t *rd = smoe_ckpt_reader_open(s, rank, base, err);
  if (!rd) return -1;
  smoe_ckpt_region_t reg[32];
  int n = 0, rc = 0;
  while (n < 32 && smoe_ckpt_reader_region(rd, n, &reg[n]) == 0) { /* the base, in host memory */
    reg[n].data = xmalloc(reg[n].bytes + 1);
    if (rc == 0) rc = smoe_ckpt_reader_read(rd, reg[n].name, 0, reg[n].bytes, reg[n].data, err);
    n++;
  }
  smoe_ckpt_reader_close(rd);
  for (int64_t t = base + 1; t <= to && rc == 0; t++) {
    smoe_glog_rec_t r;
    int got = smoe_glog_read(s, t, &r, err);
    if (got == 0) rc = smoe_fail(err, "rank %d: no gradient log record of step %lld", rank, (long long)t);
    if (got != 1) rc = -1;
    if (rc == 0) rc = smoe_glog_check(&r, reg, n, err);
    if (rc == 0) {
      void *scratch[SMOE_GLOG_PARTS];
      for (int p = 0; p < r.n_parts; p++) scratch[p] = r.part[p].grad; /* the host's: in place */
      smoe_glog_apply(&r, reg, scratch);
    }
    if (got == 1) smoe_glog_rec_free(&r);
  }
  smoe_ckpt_reader_t *want = rc == 0 ? smoe_ckpt_reader_open(s, rank, to, err) : NULL;
  if (rc == 0 && !want) rc = -1;
  for (int i = 0; i < n; i++) {
    smoe_ckpt_region_t w;
    if (rc == 0 && (smoe_ckpt_reader_region(want, i, &w) != 0 || w.bytes != reg[i].bytes))
      rc = smoe_fail(err, "rank %d: the checkpoint of step %lld has other regions than step %lld's",
                     rank, (long long)to, (long long)base);
    void *b = rc == 0 ? xmalloc(w.bytes + 1) : NULL;
    if (rc == 0) rc = smoe_ckpt_reader_read(want, w.name, 0, w.bytes, b, err);
    if (rc == 0 && memcmp(b, reg[i].data, w.bytes) != 0) {
      size_t at = 0;
      while (((uint8_t *)b)[at] == ((uint8_t *)reg[i].data)[at]) at++;
      rc = smoe_fail(err, "rank %d: replaying the gradient log from step %lld to %lld differs from "
                     "the checkpoint of step %lld in region %s (first at byte %zu)", rank,
                     (long long)base, (long long)to, (long long)to, w.name, at);
    }
    free(b);
  }
  if (want) smoe_ckpt_reader_close(want);
  for (int i = 0; i < n; i++) free(reg[i].data);
  return rc;
}
