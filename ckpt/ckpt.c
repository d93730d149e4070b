/* ckpt.c: checkpoints of one rank's state, manifests, chains, agreement and
 * recovery, and the placement log (see ckpt.h). */
#define _POSIX_C_SOURCE 200809L
#include "ckpt.h"
#include "bytes.h"
#include "glog.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAGIC "SMMF"
#define MANIFEST_VERSION 1u
#define LOG_BATCH 32 /* placement records per write */

/* --- manifests --------------------------------------------------------------- */

typedef struct {
  uint8_t enc;
  uint64_t raw, stored, hash; /* hash: smoe_codec_hash of the stored value */
} chunk_t;

typedef struct {
  char name[SMOE_CKPT_NAME];
  uint8_t cf, elem;
  uint64_t bytes, chunk_bytes;
  uint32_t n_chunks;
  chunk_t *chunks;
} mregion_t;

typedef struct {
  int64_t step, base_step, full_step;
  uint32_t chain_len, rank, G;
  uint64_t digest;
  double write_s;
  int64_t unix_time;
  uint64_t raw, stored;
  uint32_t n_shapes, n_regions;
  smoe_ckpt_shape_t *shapes;
  mregion_t *regions;
} manifest_t;

static void manifest_free(manifest_t *m) {
  for (uint32_t i = 0; m->regions && i < m->n_regions; i++) free(m->regions[i].chunks);
  free(m->regions);
  free(m->shapes);
  memset(m, 0, sizeof *m);
}

static void manifest_encode(const manifest_t *m, wbuf_t *w) {
  w_bytes(w, MANIFEST_MAGIC, 4);
  w_u32(w, MANIFEST_VERSION);
  w_u64(w, (uint64_t)m->step);
  w_u64(w, (uint64_t)m->base_step);
  w_u64(w, (uint64_t)m->full_step);
  w_u32(w, m->chain_len);
  w_u32(w, m->rank);
  w_u32(w, m->G);
  w_u64(w, m->digest);
  w_f64(w, m->write_s);
  w_u64(w, (uint64_t)m->unix_time);
  w_u64(w, m->raw);
  w_u64(w, m->stored);
  w_u32(w, m->n_shapes);
  for (uint32_t i = 0; i < m->n_shapes; i++) {
    w_bytes(w, m->shapes[i].name, sizeof m->shapes[i].name);
    w_u64(w, (uint64_t)m->shapes[i].value);
  }
  w_u32(w, m->n_regions);
  for (uint32_t i = 0; i < m->n_regions; i++) {
    const mregion_t *g = &m->regions[i];
    w_bytes(w, g->name, SMOE_CKPT_NAME);
    w_u8(w, g->cf);
    w_u8(w, g->elem);
    w_u64(w, g->bytes);
    w_u64(w, g->chunk_bytes);
    w_u32(w, g->n_chunks);
    for (uint32_t c = 0; c < g->n_chunks; c++) {
      w_u8(w, g->chunks[c].enc);
      w_u64(w, g->chunks[c].raw);
      w_u64(w, g->chunks[c].stored);
      w_u64(w, g->chunks[c].hash);
    }
  }
  w_u64(w, smoe_codec_hash(w->p, w->n));
}

/* Parses and checks a manifest value; -1 with err saying what is wrong. */
static int manifest_decode(manifest_t *m, const void *v, size_t n, smoe_err_t *err) {
  memset(m, 0, sizeof *m);
  if (n < 4 + 8 || memcmp(v, MANIFEST_MAGIC, 4) != 0)
    return smoe_fail(err, "not a manifest (%zu bytes, bad magic)", n);
  rbuf_t tail = {(const uint8_t *)v + n - 8, 8, 0, 0};
  if (r_u64(&tail) != smoe_codec_hash(v, n - 8))
    return smoe_fail(err, "manifest checksum mismatch (%zu bytes): the manifest is corrupted", n);
  rbuf_t r = {v, n - 8, 4, 0};
  uint32_t version = r_u32(&r);
  if (version != MANIFEST_VERSION)
    return smoe_fail(err, "manifest format version %u, this build reads %u", version,
                     MANIFEST_VERSION);
  m->step = (int64_t)r_u64(&r);
  m->base_step = (int64_t)r_u64(&r);
  m->full_step = (int64_t)r_u64(&r);
  m->chain_len = r_u32(&r);
  m->rank = r_u32(&r);
  m->G = r_u32(&r);
  m->digest = r_u64(&r);
  m->write_s = r_f64(&r);
  m->unix_time = (int64_t)r_u64(&r);
  m->raw = r_u64(&r);
  m->stored = r_u64(&r);
  m->n_shapes = r_u32(&r);
  if (m->n_shapes > 1024) r.bad = 1;
  if (!r.bad) m->shapes = xcalloc(m->n_shapes + 1, sizeof *m->shapes);
  for (uint32_t i = 0; !r.bad && i < m->n_shapes; i++) {
    const uint8_t *p = r_take(&r, sizeof m->shapes[i].name);
    if (p) memcpy(m->shapes[i].name, p, sizeof m->shapes[i].name);
    m->shapes[i].name[sizeof m->shapes[i].name - 1] = '\0';
    m->shapes[i].value = (int64_t)r_u64(&r);
  }
  m->n_regions = r.bad ? 0 : r_u32(&r);
  if (m->n_regions > 255) r.bad = 1;
  if (!r.bad) m->regions = xcalloc(m->n_regions + 1, sizeof *m->regions);
  for (uint32_t i = 0; !r.bad && i < m->n_regions; i++) {
    mregion_t *g = &m->regions[i];
    const uint8_t *p = r_take(&r, SMOE_CKPT_NAME);
    if (p) memcpy(g->name, p, SMOE_CKPT_NAME);
    g->name[SMOE_CKPT_NAME - 1] = '\0';
    g->cf = r_u8(&r);
    g->elem = r_u8(&r);
    g->bytes = r_u64(&r);
    g->chunk_bytes = r_u64(&r);
    g->n_chunks = r_u32(&r);
    /* each chunk takes 25 bytes of the manifest: bounds the allocation */
    if (r.bad || g->n_chunks > (r.n - r.at) / 25 || g->chunk_bytes == 0 ||
        g->cf >= SMOE_CF_COUNT || (g->elem != 4 && g->elem != 8) ||
        (g->bytes + g->chunk_bytes - 1) / g->chunk_bytes != g->n_chunks) {
      r.bad = 1;
      break;
    }
    g->chunks = xcalloc(g->n_chunks + 1, sizeof *g->chunks);
    for (uint32_t c = 0; c < g->n_chunks; c++) {
      g->chunks[c].enc = r_u8(&r);
      g->chunks[c].raw = r_u64(&r);
      g->chunks[c].stored = r_u64(&r);
      g->chunks[c].hash = r_u64(&r);
      uint64_t want = g->bytes - (uint64_t)c * g->chunk_bytes; /* decoding writes raw bytes */
      if (g->chunks[c].raw != (want < g->chunk_bytes ? want : g->chunk_bytes)) r.bad = 1;
    }
  }
  if (r.bad || r.at != r.n) {
    manifest_free(m);
    return smoe_fail(err, "manifest malformed (%zu bytes)", n);
  }
  return 0;
}

/* Reads and parses the manifest of `step`: 1 found, 0 absent, -1 error. */
static int manifest_read(smoe_store_t *s, int64_t step, manifest_t *m, smoe_err_t *err) {
  uint8_t k[META_KEY];
  meta_key(k, 'm', step);
  void *v = NULL;
  size_t n = 0;
  int found = smoe_store_get(s, SMOE_CF_META, k, sizeof k, &v, &n, err);
  if (found <= 0) return found;
  smoe_err_t e;
  int rc = manifest_decode(m, v, n, &e);
  free(v);
  if (rc != 0)
    return smoe_fail(err, "%s: manifest of step %lld (meta key 'm'+%lld): %s", smoe_store_path(s),
                     (long long)step, (long long)step, e.msg);
  if (m->step != step) {
    manifest_free(m);
    return smoe_fail(err, "%s: the manifest under key 'm'+%lld says step %lld", smoe_store_path(s),
                     (long long)step, (long long)m->step);
  }
  return 1;
}

/* Steps with a manifest key, ascending (*steps malloc'd). */
static int collect_step(void *ctx, const void *k, size_t klen, const void *v, size_t vlen) {
  (void)v, (void)vlen;
  if (klen == META_KEY) steps_add(ctx, (int64_t)get_be64((const uint8_t *)k + 1));
  return 0;
}
static int list_keys(smoe_store_t *s, char kind, steps_t *st, smoe_err_t *err) {
  memset(st, 0, sizeof *st);
  uint8_t prefix = (uint8_t)kind;
  return smoe_store_scan(s, SMOE_CF_META, &prefix, 1, collect_step, st, err);
}
static int has_step(const steps_t *st, int64_t step) {
  for (int i = 0; i < st->n; i++)
    if (st->v[i] == step) return 1;
  return 0;
}

/* --- the handle -------------------------------------------------------------- */

struct smoe_ckpt {
  smoe_store_t *s;
  int rank;
  int n_regions, n_shapes;
  smoe_ckpt_region_t *regions;
  size_t *offset; /* of each region in stage/base */
  size_t total;
  smoe_ckpt_shape_t *shapes;
  uint64_t digest;
  smoe_ckpt_opts_t o;
  uint8_t *stage, *base; /* the staged state; the last written (or restored) one */
  const smoe_ops_t *dev;  /* the backend of the regions in its memory, or NULL */
  int have_base;
  int64_t base_step, base_full;
  uint32_t base_chain;
  int64_t staged;       /* step in stage, -1 none */
  manifest_t written;   /* the writer's manifest of the staged step */
  int write_rc;         /* 0, or -1 with write_err */
  smoe_err_t write_err;
  int64_t pending;      /* step awaiting agreement, -1 none */
  int local;            /* its status here: 1 written, 0 not yet, -1 failed */
  int64_t last_global;
  int64_t reclaim_lo, reclaim_hi; /* steps pruned since the last compaction, -1 none */
  smoe_batch_t *log;
  int log_n;
  wbuf_t rec; /* the placement record being encoded */
  size_t rec_bytes; /* the last record's size */
  int64_t log_step; /* the last record's step, -1 none */
  uint8_t *out; /* encoder output, smoe_codec_bound(chunk) */
  size_t out_cap;
  double stream_t0;   /* smoe_ckpt_stream_*: when it began, */
  int stream_region;  /* the region being filled */
  size_t stream_off;  /* and how far */
  smoe_batch_t *stream_batch;
  wbuf_t bundle;      /* o.copy: the last write's bundle (smoe_ckpt_take_bundle) */
  int64_t bundle_from; /* placement records after this step go in the next bundle */
  int64_t glog_cut;    /* gradient-log records up to this step were pruned, -1 none */
  int64_t glog_compacted; /* and compacted away up to this one */
};

static void reclaim(smoe_ckpt_t *ck);

/* A handle on store s with nothing staged (the fields every handle needs). */
static smoe_ckpt_t *handle_new(smoe_store_t *s, int rank, const smoe_ckpt_opts_t *o) {
  smoe_ckpt_t *ck = xcalloc(1, sizeof *ck);
  ck->s = s;
  ck->rank = rank;
  ck->o = *o;
  ck->staged = ck->pending = ck->last_global = ck->reclaim_lo = ck->reclaim_hi = -1;
  ck->log_step = ck->bundle_from = ck->glog_cut = ck->glog_compacted = -1;
  ck->local = 1;
  ck->log = smoe_batch_new(s);
  return ck;
}

static int enc_is_delta(smoe_enc_t e) {
  return e == SMOE_ENC_XOR_SHUFFLE_ZSTD;
}

/* smoe_ckpt_open, and with staging = 0 smoe_ckpt_open_stream: one chunk
 * buffer instead of the staging and base copies of the whole state. */
static smoe_ckpt_t *open_handle(const char *dir, int rank, const smoe_ckpt_region_t *regions,
                                int n_regions, const smoe_ckpt_shape_t *shapes, int n_shapes,
                                uint64_t config_digest, const smoe_ckpt_opts_t *o, int staging,
                                smoe_err_t *err) {
  if (n_regions < 1 || n_regions > 255) {
    smoe_fail(err, "checkpoint: %d regions (1..255 allowed)", n_regions);
    return NULL;
  }
  for (int i = 0; i < n_regions; i++)
    if (strnlen(regions[i].name, SMOE_CKPT_NAME) >= SMOE_CKPT_NAME) {
      smoe_fail(err, "checkpoint: region name '%.*s...' is too long", SMOE_CKPT_NAME, regions[i].name);
      return NULL;
    }
  smoe_store_t *s = smoe_store_open(dir, rank, err);
  if (!s) return NULL;
  smoe_ckpt_t *ck = handle_new(s, rank, o);
  ck->n_regions = n_regions;
  ck->regions = xmalloc(sizeof *regions * (size_t)n_regions);
  memcpy(ck->regions, regions, sizeof *regions * (size_t)n_regions);
  ck->offset = xmalloc(sizeof(size_t) * (size_t)n_regions);
  for (int i = 0; i < n_regions; i++) {
    ck->offset[i] = ck->total;
    ck->total += regions[i].bytes;
  }
  ck->n_shapes = n_shapes;
  ck->shapes = xcalloc((size_t)n_shapes + 1, sizeof *shapes);
  memcpy(ck->shapes, shapes, sizeof *shapes * (size_t)n_shapes);
  ck->digest = config_digest;
  ck->out_cap = smoe_codec_bound(o->chunk_bytes);
  ck->out = xmalloc(ck->out_cap);
  if (!staging) {
    ck->stage = xmalloc(o->chunk_bytes);
    return ck;
  }
  /* touched now: first-touch page faults would otherwise land in the first
   * checkpoints' staging copy, on the step loop */
  ck->stage = xcalloc(ck->total + 1, 1);
  ck->base = xcalloc(ck->total + 1, 1);
  memset(ck->stage, 0, ck->total + 1);
  memset(ck->base, 0, ck->total + 1);
  for (int i = 0; i < n_regions; i++) /* both buffers take staging copies in turn */
    if (regions[i].ops) ck->dev = regions[i].ops;
  if (ck->dev) ck->dev->host_pin(ck->stage, ck->total + 1, 1);
  if (ck->dev) ck->dev->host_pin(ck->base, ck->total + 1, 1);
  return ck;
}

smoe_ckpt_t *smoe_ckpt_open(const char *dir, int rank, const smoe_ckpt_region_t *regions,
                            int n_regions, const smoe_ckpt_shape_t *shapes, int n_shapes,
                            uint64_t config_digest, const smoe_ckpt_opts_t *o, smoe_err_t *err) {
  return open_handle(dir, rank, regions, n_regions, shapes, n_shapes, config_digest, o, 1, err);
}

static int log_flush(smoe_ckpt_t *ck, smoe_err_t *err) {
  if (ck->log_n == 0) return 0;
  int rc = smoe_store_write(ck->s, ck->log, SMOE_WRITE_PLAIN, err);
  smoe_batch_clear(ck->log);
  ck->log_n = 0;
  return rc;
}

void smoe_ckpt_close(smoe_ckpt_t *ck) {
  if (!ck) return;
  smoe_err_t e;
  if (log_flush(ck, &e) == 0) smoe_store_flush(ck->s, &e);
  reclaim(ck);
  smoe_batch_free(ck->log);
  manifest_free(&ck->written);
  smoe_store_close(ck->s);
  if (ck->dev) ck->dev->stage_wait(); /* no copy may still be landing */
  if (ck->dev) ck->dev->host_pin(ck->stage, ck->total + 1, 0);
  if (ck->dev) ck->dev->host_pin(ck->base, ck->total + 1, 0);
  free(ck->regions), free(ck->offset), free(ck->shapes);
  free(ck->stage), free(ck->base), free(ck->out), free(ck->rec.p), free(ck->bundle.p);
  free(ck);
}

smoe_store_t *smoe_ckpt_store(smoe_ckpt_t *ck) { return ck->s; }
int64_t smoe_ckpt_pending(const smoe_ckpt_t *ck) { return ck->pending; }
int smoe_ckpt_local_status(const smoe_ckpt_t *ck) { return ck->pending < 0 ? 1 : ck->local; }
int64_t smoe_ckpt_last_global(const smoe_ckpt_t *ck) { return ck->last_global; }
size_t smoe_ckpt_staging_bytes(const smoe_ckpt_t *ck) { return 2 * (ck->total + 1) + ck->out_cap; }

size_t smoe_ckpt_staging_for(size_t state_bytes, size_t chunk_bytes) {
  return 2 * (state_bytes + 1) + smoe_codec_bound(chunk_bytes);
}

/* --- writing ----------------------------------------------------------------- */

double smoe_ckpt_stage(smoe_ckpt_t *ck, int64_t step) {
  double t0 = smoe_now();
  smoe_err_t e;
  if (log_flush(ck, &e) != 0) /* the log is best effort: a failure shows up at the manifest */
    fprintf(stderr, "swiftmoe: [rank %d] placement log: %s\n", ck->rank, e.msg);
  /* the copy is all the step loop waits for: the CPU's over its threads;
   * a GPU's queued on its side (the writer waits for it, the next
   * optimizer step too: stage_fence) */
  for (int i = 0; i < ck->n_regions; i++) {
    const smoe_ckpt_region_t *r = &ck->regions[i];
    (r->ops ? r->ops : &smoe_ops_cpu)->stage_copy(ck->stage + ck->offset[i], r->data, r->bytes);
  }
  ck->staged = ck->pending = step;
  ck->local = 0;
  return smoe_now() - t0;
}

/* A key for messages: "shard key step 40 / master / chunk 3". */
static void describe_chunk(char *b, size_t n, const manifest_t *m, int region, uint32_t c,
                           int64_t step) {
  snprintf(b, n, "%s key (step %lld, region %s, chunk %u)",
           smoe_cf_name((smoe_cf_t)m->regions[region].cf), (long long)step,
           m->regions[region].name, c);
}

/* Compacts the range of the checkpoints pruned since the last call, so that
 * their table and blob files go (RocksDB would otherwise keep them until its
 * own compactions reach them: disk use grew with the run). On the writer's
 * thread: it runs before the next checkpoint's chunks, off the step loop. */
static void reclaim(smoe_ckpt_t *ck) {
  if (ck->reclaim_lo < 0) return;
  uint8_t b[8], e[8];
  put_be64(b, (uint64_t)ck->reclaim_lo);
  put_be64(e, (uint64_t)ck->reclaim_hi + 1);
  const smoe_cf_t fams[] = {SMOE_CF_SHARD, SMOE_CF_DENSE, SMOE_CF_DATA};
  for (int i = 0; i < 3; i++) smoe_store_compact(ck->s, fams[i], b, 8, e, 8);
  put_be64(b, 0);
  put_be64(e, (uint64_t)ck->glog_cut + 1);
  if (ck->glog_cut > ck->glog_compacted) smoe_store_compact(ck->s, SMOE_CF_GRADS, b, 8, e, 8);
  ck->glog_compacted = ck->glog_cut;
  ck->reclaim_lo = ck->reclaim_hi = -1;
}

#ifdef SMOE_KILL_POINTS
/* Test builds: SMOE_WRITE_DELAY_MS=N makes every write N ms slower (a writer
 * slower than a step); SMOE_FAIL_WRITE_AT=STEP fails the write of that step. */
static void test_write_hooks(smoe_ckpt_t *ck, int64_t step, int *rc) {
  const char *delay = getenv("SMOE_WRITE_DELAY_MS"), *fail = getenv("SMOE_FAIL_WRITE_AT");
  if (delay) nanosleep(&(struct timespec){atoi(delay) / 1000, atoi(delay) % 1000 * 1000000L}, NULL);
  if (*rc == 0 && fail && atoll(fail) == step)
    *rc = smoe_fail(&ck->write_err, "rank %d, checkpoint of step %lld: injected write failure "
                    "(SMOE_FAIL_WRITE_AT, test build)", ck->rank, (long long)step);
}
#endif


/* --- bundles: a checkpoint's stored keys and values, for a copy elsewhere ---- */

#define BUNDLE_MAGIC "SMBN"
#define BUNDLE_VERSION 1u
#define BUNDLE_HEAD 20 /* magic, version, step, entry count */

static void bundle_begin(wbuf_t *b, int64_t step) {
  b->n = 0;
  w_bytes(b, BUNDLE_MAGIC, 4);
  w_u32(b, BUNDLE_VERSION);
  w_u64(b, (uint64_t)step);
  w_u32(b, 0); /* the entry count, set by bundle_end */
}
static void bundle_add(wbuf_t *b, smoe_cf_t cf, const void *k, size_t klen, const void *v,
                       size_t vlen) {
  w_u8(b, (uint8_t)cf);
  w_u32(b, (uint32_t)klen);
  w_u64(b, (uint64_t)vlen);
  w_bytes(b, k, klen);
  w_bytes(b, v, vlen);
  uint32_t count = 0;
  for (int i = 0; i < 4; i++) count |= (uint32_t)b->p[16 + i] << (8 * i);
  count++;
  for (int i = 0; i < 4; i++) b->p[16 + i] = (uint8_t)(count >> (8 * i));
}
static void bundle_end(wbuf_t *b) { w_u64(b, smoe_codec_hash(b->p, b->n)); }

/* Every placement record with a step in (from, to] into the bundle. */
typedef struct {
  wbuf_t *b;
  int64_t from, to;
} log_range_t;
static int add_record(void *ctx, const void *k, size_t klen, const void *v, size_t vlen) {
  log_range_t *r = ctx;
  if (klen != 8) return 0;
  int64_t step = (int64_t)get_be64(k);
  if (step > r->to) return 1;
  if (step > r->from) bundle_add(r->b, SMOE_CF_PLACEMENT, k, klen, v, vlen);
  return 0;
}

/* The manifest of the checkpoint of `step` being written (its regions' chunk
 * lists allocated, filled as chunks are written). */
static void manifest_begin(smoe_ckpt_t *ck, manifest_t *m, int64_t step, int delta) {
  manifest_free(m);
  m->step = step;
  m->base_step = delta ? ck->base_step : -1;
  m->full_step = delta ? ck->base_full : step;
  m->chain_len = delta ? ck->base_chain + 1 : 0;
  m->rank = (uint32_t)ck->rank;
  m->digest = ck->digest;
  m->n_shapes = (uint32_t)ck->n_shapes;
  m->shapes = xcalloc((size_t)ck->n_shapes + 1, sizeof *m->shapes);
  memcpy(m->shapes, ck->shapes, sizeof *m->shapes * (size_t)ck->n_shapes);
  for (int i = 0; i < ck->n_shapes; i++)
    if (strcmp(ck->shapes[i].name, "ranks") == 0) m->G = (uint32_t)ck->shapes[i].value;
  m->n_regions = (uint32_t)ck->n_regions;
  m->regions = xcalloc((size_t)ck->n_regions + 1, sizeof *m->regions);
  for (int i = 0; i < ck->n_regions; i++) {
    const smoe_ckpt_region_t *r = &ck->regions[i];
    mregion_t *g = &m->regions[i];
    memcpy(g->name, r->name, SMOE_CKPT_NAME);
    g->cf = (uint8_t)r->cf;
    g->elem = (uint8_t)r->elem;
    g->bytes = r->bytes;
    g->chunk_bytes = ck->o.chunk_bytes;
    g->n_chunks = (uint32_t)((r->bytes + g->chunk_bytes - 1) / g->chunk_bytes);
    g->chunks = xcalloc(g->n_chunks + 1, sizeof *g->chunks);
  }
  if (ck->o.copy) bundle_begin(&ck->bundle, step);
}

/* Chunk c of region i (len bytes at src; a delta against base when base is
 * not NULL) encoded, written without the write-ahead log (and added to the
 * bundle), and recorded in m. 0, or -1 with err. */
static int put_chunk(smoe_ckpt_t *ck, manifest_t *m, smoe_batch_t *b, int i, uint32_t c,
                     const uint8_t *src, const uint8_t *base, size_t len, smoe_err_t *err) {
  const smoe_ckpt_region_t *r = &ck->regions[i];
  const smoe_enc_t enc = base ? ck->o.delta_enc : ck->o.full_enc;
  smoe_err_t e;
  int64_t l = smoe_codec_encode(enc, ck->o.level, src, base, len, (size_t)r->elem, ck->out,
                                ck->out_cap, &e);
  if (l < 0) {
    char what[128];
    describe_chunk(what, sizeof what, m, i, c, m->step);
    return smoe_fail(err, "rank %d, checkpoint of step %lld: encoding %s: %s", ck->rank,
                     (long long)m->step, what, e.msg);
  }
  m->regions[i].chunks[c] =
      (chunk_t){(uint8_t)enc, len, (uint64_t)l, smoe_codec_hash(ck->out, (size_t)l)};
  m->raw += len;
  m->stored += (uint64_t)l;
  uint8_t k[CHUNK_KEY];
  chunk_key(k, m->step, i, c);
  smoe_batch_clear(b);
  smoe_batch_put(b, (smoe_cf_t)r->cf, k, sizeof k, ck->out, (size_t)l);
  if (ck->o.copy) bundle_add(&ck->bundle, (smoe_cf_t)r->cf, k, sizeof k, ck->out, (size_t)l);
  int rc = 0;
  if (smoe_store_write(ck->s, b, SMOE_WRITE_NO_WAL, &e) != 0)
    rc = smoe_fail(err, "rank %d, checkpoint of step %lld: %s", ck->rank, (long long)m->step,
                   e.msg);
  SMOE_KILL_POINT("ckpt.chunk");
  return rc;
}

/* After the chunks (rc: how they went): persisted, then the manifest in one
 * synced batch, then the bundle closed with the log since the last one and
 * the manifest. Returns rc, or -1 with err. */
static int manifest_commit(smoe_ckpt_t *ck, manifest_t *m, smoe_batch_t *b, double t0, int rc,
                           smoe_err_t *err) {
  smoe_err_t e;
  if (rc == 0 && smoe_store_persist(ck->s, &e) != 0)
    rc = smoe_fail(err, "rank %d, checkpoint of step %lld: %s", ck->rank, (long long)m->step,
                   e.msg);
  SMOE_KILL_POINT("ckpt.before_manifest");
  if (rc == 0) {
    m->unix_time = (int64_t)time(NULL);
    m->write_s = smoe_now() - t0;
    wbuf_t w = {0};
    manifest_encode(m, &w);
    uint8_t k[META_KEY];
    meta_key(k, 'm', m->step);
    smoe_batch_clear(b);
    smoe_batch_put(b, SMOE_CF_META, k, sizeof k, w.p, w.n);
    if (smoe_store_write(ck->s, b, SMOE_WRITE_SYNC, &e) != 0)
      rc = smoe_fail(err, "rank %d, checkpoint of step %lld: manifest: %s", ck->rank,
                     (long long)m->step, e.msg);
    if (rc == 0 && ck->o.copy) { /* the log since the last bundle, then the manifest */
      log_range_t lr = {&ck->bundle, ck->bundle_from, m->step};
      uint8_t lo[8], hi[8];
      put_be64(lo, (uint64_t)(ck->bundle_from + 1));
      put_be64(hi, (uint64_t)m->step + 1);
      if (smoe_store_scan_range(ck->s, SMOE_CF_PLACEMENT, lo, 8, hi, 8, add_record, &lr, &e) != 0)
        rc = smoe_fail(err, "rank %d, checkpoint of step %lld: its copy: %s", ck->rank,
                       (long long)m->step, e.msg);
      bundle_add(&ck->bundle, SMOE_CF_META, k, sizeof k, w.p, w.n);
      bundle_end(&ck->bundle);
      if (rc == 0) ck->bundle_from = m->step;
    }
    free(w.p);
  }
  SMOE_KILL_POINT("ckpt.after_manifest");
  if (rc != 0) ck->bundle.n = 0;
  return rc;
}

void smoe_ckpt_write(smoe_ckpt_t *ck) {
  reclaim(ck); /* the previous prune's (no prune runs while a write is in flight) */
  const double t0 = smoe_now();
  if (ck->dev) ck->dev->stage_wait(); /* the staged copies of backend memory have landed */
  smoe_err_t *err = &ck->write_err;
  manifest_t *m = &ck->written;
  const int delta = ck->have_base && ck->base_chain + 1 < (uint32_t)ck->o.full_every &&
                    enc_is_delta(ck->o.delta_enc);
  manifest_begin(ck, m, ck->staged, delta);
  smoe_batch_t *b = smoe_batch_new(ck->s);
  int rc = 0;
  for (int i = 0; i < ck->n_regions && rc == 0; i++) {
    const mregion_t *g = &m->regions[i];
    for (uint32_t c = 0; c < g->n_chunks && rc == 0; c++) {
      size_t off = ck->offset[i] + c * g->chunk_bytes;
      size_t len = g->bytes - c * g->chunk_bytes;
      if (len > g->chunk_bytes) len = g->chunk_bytes;
      rc = put_chunk(ck, m, b, i, c, ck->stage + off, delta ? ck->base + off : NULL, len, err);
    }
  }
#ifdef SMOE_KILL_POINTS
  test_write_hooks(ck, m->step, &rc);
#endif
  ck->write_rc = manifest_commit(ck, m, b, t0, rc, err);
  smoe_batch_free(b);
}

/* --- a full checkpoint streamed in (resharding) ----------------------------- */

smoe_ckpt_t *smoe_ckpt_open_stream(const char *dir, int rank, const smoe_ckpt_region_t *regions,
                                   int n_regions, const smoe_ckpt_shape_t *shapes, int n_shapes,
                                   uint64_t config_digest, const smoe_ckpt_opts_t *o,
                                   smoe_err_t *err) {
  return open_handle(dir, rank, regions, n_regions, shapes, n_shapes, config_digest, o, 0, err);
}

/* The next region with bytes to take, from i on. */
static int stream_region(const smoe_ckpt_t *ck, int i) {
  while (i < ck->n_regions && ck->regions[i].bytes == 0) i++;
  return i;
}

void smoe_ckpt_stream_begin(smoe_ckpt_t *ck, int64_t step) {
  reclaim(ck);
  manifest_begin(ck, &ck->written, step, 0);
  ck->stream_t0 = smoe_now();
  ck->stream_region = stream_region(ck, 0);
  ck->stream_off = 0;
  ck->write_rc = 0;
  ck->staged = ck->pending = step;
  ck->local = 0;
  ck->stream_batch = smoe_batch_new(ck->s);
}

int smoe_ckpt_stream_put(smoe_ckpt_t *ck, const void *p, size_t n, smoe_err_t *err) {
  const uint8_t *src = p;
  manifest_t *m = &ck->written;
  smoe_batch_t *b = ck->stream_batch;
  while (n > 0 && ck->write_rc == 0) {
    const int i = ck->stream_region;
    if (i >= ck->n_regions)
      return ck->write_rc = smoe_fail(err, "rank %d, checkpoint of step %lld: %zu bytes past "
                                      "the end of its regions", ck->rank, (long long)m->step, n);
    const mregion_t *g = &m->regions[i];
    const uint32_t c = (uint32_t)(ck->stream_off / g->chunk_bytes);
    const size_t at = ck->stream_off - c * g->chunk_bytes;
    size_t len = g->bytes - c * g->chunk_bytes;
    if (len > g->chunk_bytes) len = g->chunk_bytes;
    size_t take = len - at < n ? len - at : n;
    memcpy(ck->stage + at, src, take);
    src += take, n -= take, ck->stream_off += take;
    if (at + take < len) continue;
    ck->write_rc = put_chunk(ck, m, b, i, c, ck->stage, NULL, len, err);
    if (ck->stream_off == g->bytes) ck->stream_region = stream_region(ck, i + 1), ck->stream_off = 0;
  }
  return ck->write_rc;
}

int smoe_ckpt_stream_end(smoe_ckpt_t *ck, smoe_err_t *err) {
  manifest_t *m = &ck->written;
  int rc = ck->write_rc;
  if (rc == 0 && ck->stream_region < ck->n_regions)
    rc = smoe_fail(err, "rank %d, checkpoint of step %lld: region %s is short of %zu bytes",
                   ck->rank, (long long)m->step, ck->regions[ck->stream_region].name,
                   ck->regions[ck->stream_region].bytes - ck->stream_off);
  rc = manifest_commit(ck, m, ck->stream_batch, ck->stream_t0, rc, err);
  smoe_batch_free(ck->stream_batch);
  ck->stream_batch = NULL;
  ck->local = rc == 0 ? 1 : -1;
  return rc;
}

int smoe_ckpt_finish(smoe_ckpt_t *ck, smoe_err_t *err) {
  if (ck->write_rc != 0) {
    ck->have_base = 0; /* the next checkpoint must not lean on this one */
    ck->local = -1;
    if (err) *err = ck->write_err;
    return -1;
  }
  uint8_t *t = ck->base;
  ck->base = ck->stage;
  ck->stage = t;
  ck->have_base = 1;
  ck->base_step = ck->written.step;
  ck->base_full = ck->written.full_step;
  ck->base_chain = ck->written.chain_len;
  ck->local = 1;
  return 0;
}

/* Deletes checkpoint `step` (manifest first, so no manifest names missing chunks). */
static int delete_checkpoint(smoe_ckpt_t *ck, int64_t step, smoe_err_t *err) {
  uint8_t k[META_KEY], lo[8], hi[8];
  meta_key(k, 'm', step);
  if (smoe_store_delete(ck->s, SMOE_CF_META, k, sizeof k, err) != 0) return -1;
  meta_key(k, 'g', step);
  if (smoe_store_delete(ck->s, SMOE_CF_META, k, sizeof k, err) != 0) return -1;
  put_be64(lo, (uint64_t)step);
  put_be64(hi, (uint64_t)step + 1);
  const smoe_cf_t fams[] = {SMOE_CF_SHARD, SMOE_CF_DENSE, SMOE_CF_DATA};
  for (int i = 0; i < 3; i++)
    if (smoe_store_delete_range(ck->s, fams[i], lo, 8, hi, 8, err) != 0) return -1;
  return 0;
}

/* The placement log within its budget: records older than both the newest
 * budget / record-size steps and `oldest` (the oldest checkpoint kept) go. */
static int prune_log(smoe_ckpt_t *ck, int64_t oldest, smoe_err_t *err) {
  if (ck->o.log_bytes == 0 || ck->rec_bytes == 0 || ck->log_step < 0) return 0;
  int64_t keep = (int64_t)(ck->o.log_bytes / ck->rec_bytes), cut = ck->log_step - keep + 1;
  if (cut > oldest) cut = oldest;
  if (cut <= 0) return 0;
  uint8_t lo[8], hi[8];
  put_be64(lo, 0);
  put_be64(hi, (uint64_t)cut);
  return smoe_store_delete_range(ck->s, SMOE_CF_PLACEMENT, lo, 8, hi, 8, err);
}

/* Keeps the newest `keep` globally complete checkpoints, the chains they need
 * and everything newer; deletes the rest. */
static int prune(smoe_ckpt_t *ck, smoe_err_t *err) {
  steps_t man, glob;
  if (list_keys(ck->s, 'm', &man, err) != 0) return -1;
  if (list_keys(ck->s, 'g', &glob, err) != 0) {
    free(man.v);
    return -1;
  }
  int rc = 0, kept = 0;
  int64_t oldest_needed = INT64_MAX;
  for (int i = glob.n - 1; i >= 0 && kept < ck->o.keep; i--) {
    if (glob.v[i] > ck->last_global || !has_step(&man, glob.v[i])) continue;
    manifest_t m;
    if (manifest_read(ck->s, glob.v[i], &m, err) != 1) continue; /* unreadable: not kept */
    if (m.full_step < oldest_needed) oldest_needed = m.full_step;
    manifest_free(&m);
    kept++;
  }
  int64_t lo = -1, hi = -1; /* the deleted steps */
  for (int i = 0; i < man.n && rc == 0; i++)
    if (man.v[i] < oldest_needed) {
      rc = delete_checkpoint(ck, man.v[i], err);
      if (lo < 0) lo = man.v[i];
      hi = man.v[i];
    }
  free(man.v);
  free(glob.v);
  if (rc == 0) rc = prune_log(ck, oldest_needed, err);
  /* the gradient log: only records after a kept checkpoint can be replayed */
  if (rc == 0 && oldest_needed != INT64_MAX && oldest_needed > ck->glog_cut) {
    rc = smoe_glog_delete(ck->s, 0, oldest_needed + 1, err);
    ck->glog_cut = oldest_needed;
  }
  if (rc == 0 && lo >= 0) { /* their space is reclaimed by the next write (or at close) */
    if (ck->reclaim_lo < 0 || lo < ck->reclaim_lo) ck->reclaim_lo = lo;
    if (hi > ck->reclaim_hi) ck->reclaim_hi = hi;
  }
  return rc;
}

int smoe_ckpt_agreed(smoe_ckpt_t *ck, int status, smoe_err_t *err) {
  int64_t step = ck->pending;
  ck->pending = -1;
  if (step < 0 || status <= 0) return 0;
  uint8_t k[META_KEY];
  meta_key(k, 'g', step);
  if (smoe_store_put(ck->s, SMOE_CF_META, k, sizeof k, "", 0, err) != 0) return -1;
  ck->last_global = step;
  return prune(ck, err);
}

/* --- reading ----------------------------------------------------------------- */

/* Reads chunk c of region i of checkpoint m, checks it against the manifest and
 * decodes it into out (base: the chain's state before it, for a delta). */
static int read_chunk(smoe_store_t *s, int rank, const manifest_t *m, int i, uint32_t c,
                      const uint8_t *base, uint8_t *out, smoe_err_t *err) {
  const mregion_t *g = &m->regions[i];
  const chunk_t *ch = &g->chunks[c];
  char what[128];
  describe_chunk(what, sizeof what, m, i, c, m->step);
  uint8_t k[CHUNK_KEY];
  chunk_key(k, m->step, i, c);
  void *v = NULL;
  size_t n = 0;
  smoe_err_t e;
  int found = smoe_store_get(s, (smoe_cf_t)g->cf, k, sizeof k, &v, &n, &e);
  int rc = 0;
  if (found < 0)
    rc = smoe_fail(err, "rank %d, checkpoint of step %lld: %s: %s", rank, (long long)m->step, what,
                   e.msg);
  else if (!found)
    rc = smoe_fail(err, "rank %d, checkpoint of step %lld: %s is missing", rank,
                   (long long)m->step, what);
  else if (n != ch->stored || smoe_codec_hash(v, n) != ch->hash)
    rc = smoe_fail(err,
                   "rank %d, checkpoint of step %lld: %s is corrupted (%zu bytes, manifest says "
                   "%llu; checksum %s)",
                   rank, (long long)m->step, what, n, (unsigned long long)ch->stored,
                   n == ch->stored ? "differs" : "not checked");
  else if (smoe_codec_decode(v, n, base, out, ch->raw, &e) != 0)
    rc = smoe_fail(err, "rank %d, checkpoint of step %lld: %s: %s", rank, (long long)m->step, what,
                   e.msg);
  free(v);
  return rc;
}

/* The manifests of checkpoint `step`'s chain, newest first (step, its base,
 * ..., the full one), checked to share one layout: *chainp (*np of them;
 * free_chain). */
static int read_chain(smoe_store_t *s, int rank, int64_t step, manifest_t **chainp, int *np,
                      smoe_err_t *err) {
  int n = 0, cap = 8;
  manifest_t *chain = xcalloc((size_t)cap, sizeof *chain);
  int rc = 0;
  for (int64_t at = step; rc == 0;) {
    if (n == cap) {
      cap *= 2;
      chain = xrealloc(chain, sizeof *chain * (size_t)cap);
    }
    int found = manifest_read(s, at, &chain[n], err);
    if (found == 0)
      rc = smoe_fail(err, "rank %d, checkpoint of step %lld: the manifest of step %lld (meta key "
                     "'m'+%lld)%s is missing",
                     rank, (long long)step, (long long)at, (long long)at,
                     at == step ? "" : ", a link of its delta chain,");
    if (found != 1) {
      if (found < 0 && err) { /* prefix the rank */
        smoe_err_t e = *err;
        smoe_fail(err, "rank %d: %s", rank, e.msg);
      }
      rc = -1;
      break;
    }
    n++;
    const manifest_t *m = &chain[n - 1];
    if (m->base_step < 0) break;
    if (m->base_step >= at || n > 100000) {
      rc = smoe_fail(err, "rank %d, checkpoint of step %lld: bad chain link %lld -> %lld", rank,
                     (long long)step, (long long)at, (long long)m->base_step);
      break;
    }
    at = m->base_step;
  }
  /* every link must have the same layout */
  for (int j = 1; rc == 0 && j < n; j++) {
    int same = chain[j].n_regions == chain[0].n_regions;
    for (uint32_t i = 0; same && i < chain[0].n_regions; i++)
      same = chain[j].regions[i].bytes == chain[0].regions[i].bytes &&
             chain[j].regions[i].chunk_bytes == chain[0].regions[i].chunk_bytes &&
             chain[j].regions[i].cf == chain[0].regions[i].cf;
    if (!same)
      rc = smoe_fail(err, "rank %d, checkpoint of step %lld: its chain changes layout at step %lld",
                     rank, (long long)step, (long long)chain[j].step);
  }
  *chainp = chain, *np = n;
  return rc;
}

static void free_chain(manifest_t *chain, int n) {
  for (int j = 0; j < n; j++) manifest_free(&chain[j]);
  free(chain);
}

/* Chunk c of region i through the chain: the full one, then each delta
 * (tmp: chunk_bytes of scratch). */
static int decode_chunk(smoe_store_t *s, int rank, const manifest_t *chain, int n, int i,
                        uint32_t c, uint8_t *dst, uint8_t *tmp, smoe_err_t *err) {
  int rc = read_chunk(s, rank, &chain[n - 1], i, c, NULL, dst, err);
  for (int j = n - 2; rc == 0 && j >= 0; j--) {
    rc = read_chunk(s, rank, &chain[j], i, c, dst, tmp, err);
    if (rc == 0) memcpy(dst, tmp, chain[j].regions[i].chunks[c].raw);
  }
  return rc;
}

/* Decodes checkpoint `step` with its chain into out (the manifests' total bytes;
 * *m gets the newest manifest, the caller frees it). */
static int decode_chain(smoe_store_t *s, int rank, int64_t step, manifest_t *top, uint8_t **outp,
                        size_t *total, smoe_err_t *err) {
  manifest_t *chain;
  int n;
  int rc = read_chain(s, rank, step, &chain, &n, err);
  uint8_t *out = NULL, *tmp = NULL;
  size_t sum = 0;
  if (rc == 0) {
    size_t maxc = 0;
    for (uint32_t i = 0; i < chain[0].n_regions; i++) {
      sum += chain[0].regions[i].bytes;
      if (chain[0].regions[i].chunk_bytes > maxc) maxc = chain[0].regions[i].chunk_bytes;
    }
    out = xmalloc(sum + 1);
    tmp = xmalloc(maxc + 1);
  }
  size_t off = 0;
  for (uint32_t i = 0; rc == 0 && i < chain[0].n_regions; i++) {
    const mregion_t *g = &chain[0].regions[i];
    for (uint32_t c = 0; rc == 0 && c < g->n_chunks; c++)
      rc = decode_chunk(s, rank, chain, n, (int)i, c, out + off + c * g->chunk_bytes, tmp, err);
    off += g->bytes;
  }
  free(tmp);
  if (rc == 0) {
    *top = chain[0];
    chain[0] = (manifest_t){0};
    *outp = out;
    *total = sum;
  } else {
    free(out);
  }
  free_chain(chain, n);
  return rc;
}

/* --- reading another rank's checkpoint, a piece at a time ------------------- */

struct smoe_ckpt_reader {
  smoe_store_t *s;
  int rank, n;
  manifest_t *chain;
  uint8_t *buf, *tmp; /* the last chunk decoded, and scratch */
  int region;         /* ... which region and chunk buf holds; -1 none */
  uint32_t chunk;
};

smoe_ckpt_reader_t *smoe_ckpt_reader_open(smoe_store_t *s, int rank, int64_t step,
                                          smoe_err_t *err) {
  smoe_ckpt_reader_t *r = xcalloc(1, sizeof *r);
  r->s = s, r->rank = rank, r->region = -1;
  if (read_chain(s, rank, step, &r->chain, &r->n, err) != 0) {
    free_chain(r->chain, r->n);
    free(r);
    return NULL;
  }
  size_t maxc = 0;
  for (uint32_t i = 0; i < r->chain[0].n_regions; i++)
    if (r->chain[0].regions[i].chunk_bytes > maxc) maxc = r->chain[0].regions[i].chunk_bytes;
  r->buf = xmalloc(maxc + 1), r->tmp = xmalloc(maxc + 1);
  return r;
}

void smoe_ckpt_reader_close(smoe_ckpt_reader_t *r) {
  if (!r) return;
  free_chain(r->chain, r->n);
  free(r->buf), free(r->tmp);
  free(r);
}

int64_t smoe_ckpt_reader_shape(const smoe_ckpt_reader_t *r, const char *name) {
  for (uint32_t i = 0; i < r->chain[0].n_shapes; i++)
    if (strcmp(r->chain[0].shapes[i].name, name) == 0) return r->chain[0].shapes[i].value;
  return -1;
}

int smoe_ckpt_reader_region(const smoe_ckpt_reader_t *r, int i, smoe_ckpt_region_t *out) {
  if (i < 0 || (uint32_t)i >= r->chain[0].n_regions) return -1;
  const mregion_t *g = &r->chain[0].regions[i];
  memset(out, 0, sizeof *out);
  memcpy(out->name, g->name, sizeof out->name);
  out->cf = (smoe_cf_t)g->cf, out->bytes = g->bytes, out->elem = g->elem;
  return 0;
}

int64_t smoe_ckpt_reader_bytes(const smoe_ckpt_reader_t *r, const char *region) {
  for (uint32_t i = 0; i < r->chain[0].n_regions; i++)
    if (strcmp(r->chain[0].regions[i].name, region) == 0) return (int64_t)r->chain[0].regions[i].bytes;
  return -1;
}

int smoe_ckpt_reader_read(smoe_ckpt_reader_t *r, const char *region, size_t off, size_t n,
                          void *out, smoe_err_t *err) {
  const manifest_t *m = &r->chain[0];
  int i = 0;
  while (i < (int)m->n_regions && strcmp(m->regions[i].name, region) != 0) i++;
  if (i == (int)m->n_regions)
    return smoe_fail(err, "rank %d, checkpoint of step %lld: no region '%s'", r->rank,
                     (long long)m->step, region);
  const mregion_t *g = &m->regions[i];
  if (off > g->bytes || n > g->bytes - off)
    return smoe_fail(err, "rank %d, checkpoint of step %lld: bytes %zu..%zu of region '%s' (%llu "
                     "bytes)", r->rank, (long long)m->step, off, off + n, region,
                     (unsigned long long)g->bytes);
  uint8_t *o = out;
  while (n > 0) {
    uint32_t c = (uint32_t)(off / g->chunk_bytes);
    size_t at = off - (size_t)c * g->chunk_bytes, take = g->chunks[c].raw - at;
    if (take > n) take = n;
    if (r->region != i || r->chunk != c) {
      r->region = -1;
      if (decode_chunk(r->s, r->rank, r->chain, r->n, i, c, r->buf, r->tmp, err) != 0) return -1;
      r->region = i, r->chunk = c;
    }
    memcpy(o, r->buf + at, take);
    o += take, off += take, n -= take;
  }
  return 0;
}

/* Restores checkpoint `step` into the regions. -2 for a shape or layout
 * mismatch (no point in trying older checkpoints), -1 for a fault. */
static int restore_step(smoe_ckpt_t *ck, int64_t step, smoe_err_t *err) {
  manifest_t m;
  manifest_t probe;
  int found = manifest_read(ck->s, step, &probe, err);
  if (found != 1) {
    if (found == 0)
      smoe_fail(err, "rank %d: no manifest of step %lld (meta key 'm'+%lld)", ck->rank,
                (long long)step, (long long)step);
    return -1;
  }
  /* shapes first: a different model is a config error, not a corruption */
  char list[1024] = "";
  size_t at = 0;
  for (int i = 0; i < ck->n_shapes; i++) {
    int64_t was = INT64_MIN;
    for (uint32_t j = 0; j < probe.n_shapes; j++)
      if (strcmp(probe.shapes[j].name, ck->shapes[i].name) == 0) was = probe.shapes[j].value;
    if (was != ck->shapes[i].value && at < sizeof list - 1) {
      char v[32] = "absent";
      if (was != INT64_MIN) snprintf(v, sizeof v, "%lld", (long long)was);
      at += (size_t)snprintf(list + at, sizeof list - at, "%s%s = %lld (checkpoint: %s)",
                             at ? "; " : "", ck->shapes[i].name, (long long)ck->shapes[i].value, v);
    }
  }
  int layout = probe.n_regions == (uint32_t)ck->n_regions;
  for (int i = 0; layout && i < ck->n_regions; i++)
    layout = strcmp(probe.regions[i].name, ck->regions[i].name) == 0 &&
             probe.regions[i].bytes == ck->regions[i].bytes &&
             probe.regions[i].elem == ck->regions[i].elem;
  manifest_free(&probe);
  if (list[0])
    return smoe_fail(err, "the checkpoint of step %lld was made with other shapes than this run: %s",
                     (long long)step, list), -2;
  if (!layout)
    return smoe_fail(err, "rank %d: the checkpoint of step %lld has another state layout than this "
                     "build (precision or version differ)", ck->rank, (long long)step), -2;
  uint8_t *out = NULL;
  size_t total = 0;
  if (decode_chain(ck->s, ck->rank, step, &m, &out, &total, err) != 0) return -1;
  for (int i = 0; i < ck->n_regions; i++) {
    const smoe_ckpt_region_t *r = &ck->regions[i];
    (r->ops ? r->ops : &smoe_ops_cpu)->to_device(r->data, out + ck->offset[i], r->bytes);
  }
  memcpy(ck->base, out, total < ck->total ? total : ck->total); /* the pinned buffers stay */
  free(out);
  /* the next checkpoint is a delta on this one only if chunked the same way */
  ck->have_base = 1;
  for (int i = 0; i < ck->n_regions; i++)
    if (m.regions[i].chunk_bytes != ck->o.chunk_bytes || m.regions[i].cf != ck->regions[i].cf)
      ck->have_base = 0;
  ck->base_step = step;
  ck->base_full = m.full_step;
  ck->base_chain = m.chain_len;
  manifest_free(&m);
  return 0;
}

/* The newest step recorded globally complete whose manifest is gone, or -1. */
static int64_t lost_manifest(smoe_store_t *s, const steps_t *man, smoe_err_t *err) {
  steps_t glob;
  if (list_keys(s, 'g', &glob, err) != 0) return -1;
  int64_t lost = -1;
  for (int i = 0; i < glob.n; i++)
    if (!has_step(man, glob.v[i]) && glob.v[i] > lost) lost = glob.v[i];
  free(glob.v);
  return lost;
}

int smoe_ckpt_survey(smoe_store_t *s, smoe_ckpt_survey_t *out, smoe_err_t *err) {
  *out = (smoe_ckpt_survey_t){0, -1, -1, 0};
  steps_t man, glob;
  if (list_keys(s, 'm', &man, err) != 0) return -1;
  if (list_keys(s, 'g', &glob, err) != 0) {
    free(man.v);
    return -1;
  }
  out->count = man.n;
  for (int i = 0; i < man.n; i++)
    if (man.v[i] > out->newest) out->newest = man.v[i];
  manifest_t m;
  if (out->newest >= 0 && manifest_read(s, out->newest, &m, NULL) == 1) {
    out->G = (int)m.G;
    manifest_free(&m);
  }
  for (int i = 0; i < glob.n; i++)
    if (has_step(&man, glob.v[i]) && glob.v[i] > out->newest_global) out->newest_global = glob.v[i];
  free(man.v);
  free(glob.v);
  return 0;
}

int smoe_ckpt_check_markers(smoe_store_t *s, smoe_err_t *err) {
  steps_t man;
  if (list_keys(s, 'm', &man, err) != 0) return -1;
  int64_t lost = lost_manifest(s, &man, err);
  free(man.v);
  if (lost < 0) return 0;
  return smoe_fail(err, "%s: the checkpoint of step %lld is recorded globally complete but its "
                   "manifest (meta key 'm'+%lld) is missing", smoe_store_path(s), (long long)lost,
                   (long long)lost);
}

/* Deletes every checkpoint, placement record and gradient-log record after `step`. */
static int discard_after(smoe_ckpt_t *ck, int64_t step, smoe_err_t *err) {
  int rc = 0;
  uint8_t lo[META_KEY], hi[META_KEY];
  const smoe_cf_t fams[] = {SMOE_CF_PLACEMENT, SMOE_CF_SHARD, SMOE_CF_DENSE, SMOE_CF_DATA};
  put_be64(lo, (uint64_t)step + 1);
  memset(hi, 0xff, 8);
  for (int i = 0; i < 4 && rc == 0; i++) rc = smoe_store_delete_range(ck->s, fams[i], lo, 8, hi, 8, err);
  if (rc == 0) rc = smoe_glog_delete(ck->s, step + 1, INT64_MAX, err);
  for (int i = 0; i < 2 && rc == 0; i++) { /* markers, and manifests (last: their chunks are gone) */
    meta_key(lo, "gm"[i], step + 1);
    meta_key(hi, "gm"[i], -1);
    rc = smoe_store_delete_range(ck->s, SMOE_CF_META, lo, META_KEY, hi, META_KEY, err);
  }
  if (rc == 0) rc = smoe_store_flush(ck->s, err);
  return rc;
}

/* --- copies on another rank (checkpoint.redundancy) ------------------------ */

int smoe_ckpt_take_bundle(smoe_ckpt_t *ck, void **buf, size_t *n) {
  *buf = NULL, *n = 0;
  if (ck->bundle.n == 0) return 0;
  *buf = ck->bundle.p, *n = ck->bundle.n;
  ck->bundle = (wbuf_t){0};
  return 1;
}

/* Calls fn for each entry of bundle p (n bytes) after checking its frame,
 * checksum and every entry's bounds: 0, or -1 with err. */
typedef int (*entry_fn)(void *ctx, smoe_cf_t cf, const uint8_t *k, size_t klen, const uint8_t *v,
                        size_t vlen);
static int bundle_each(const void *p, size_t n, const char *what, int64_t *step, entry_fn fn,
                       void *ctx, smoe_err_t *err) {
  rbuf_t r = {p, n, 0, 0};
  if (n < BUNDLE_HEAD + 8 || memcmp(p, BUNDLE_MAGIC, 4) != 0)
    return smoe_fail(err, "%s: not a checkpoint copy (%zu bytes, no " BUNDLE_MAGIC " header)",
                     what, n);
  r.at = 4;
  uint32_t version = r_u32(&r);
  *step = (int64_t)r_u64(&r);
  uint32_t count = r_u32(&r);
  if (version != BUNDLE_VERSION)
    return smoe_fail(err, "%s: copy format version %u (this build reads %u)", what, version,
                     BUNDLE_VERSION);
  rbuf_t t = {(const uint8_t *)p + n - 8, 8, 0, 0};
  if (r_u64(&t) != smoe_codec_hash(p, n - 8))
    return smoe_fail(err, "%s: the copy of step %lld fails its checksum", what, (long long)*step);
  r.n = n - 8;
  for (uint32_t i = 0; i < count; i++) {
    uint8_t cf = r_u8(&r);
    uint32_t klen = r_u32(&r);
    uint64_t vlen = r_u64(&r);
    const uint8_t *k = r_take(&r, klen), *v = vlen <= r.n ? r_take(&r, (size_t)vlen) : NULL;
    if (r.bad || !v || cf >= SMOE_CF_COUNT)
      return smoe_fail(err, "%s: the copy of step %lld is malformed at entry %u of %u", what,
                       (long long)*step, i, count);
    if (fn(ctx, (smoe_cf_t)cf, k, klen, v, (size_t)vlen) != 0) return -1;
  }
  if (r.at != r.n)
    return smoe_fail(err, "%s: the copy of step %lld has %zu bytes after its %u entries", what,
                     (long long)*step, r.n - r.at, count);
  return 0;
}

/* Applying a bundle: pass 0 writes the chunks (without the write-ahead log,
 * one at a time), pass 1 collects the placement records and the meta keys
 * into one synced batch, written after the chunks are persisted: as a
 * checkpoint's own write, a manifest present means its bytes are durable. */
typedef struct {
  smoe_ckpt_t *ck;
  smoe_batch_t *b;
  int pass;
  int64_t log_step;
  size_t rec_bytes;
  smoe_err_t *err;
} apply_t;
static int apply_entry(void *ctx, smoe_cf_t cf, const uint8_t *k, size_t klen, const uint8_t *v,
                       size_t vlen) {
  apply_t *a = ctx;
  const int late = cf == SMOE_CF_META || cf == SMOE_CF_PLACEMENT;
  if (late != a->pass) return 0;
  if (cf == SMOE_CF_META && klen == strlen(SMOE_STORE_FORMAT_KEY) &&
      memcmp(k, SMOE_STORE_FORMAT_KEY, klen) == 0)
    return 0; /* the store's own header stays */
  if (cf == SMOE_CF_PLACEMENT && klen == 8 && (int64_t)get_be64(k) > a->log_step)
    a->log_step = (int64_t)get_be64(k), a->rec_bytes = vlen;
  if (a->pass == 1) {
    smoe_batch_put(a->b, cf, k, klen, v, vlen);
    return 0;
  }
  smoe_batch_clear(a->b);
  smoe_batch_put(a->b, cf, k, klen, v, vlen);
  return smoe_store_write(a->ck->s, a->b, SMOE_WRITE_NO_WAL, a->err);
}

int smoe_ckpt_apply(smoe_ckpt_t *ck, const void *buf, size_t n, int64_t *step, smoe_err_t *err) {
  reclaim(ck);
  apply_t a = {ck, smoe_batch_new(ck->s), 0, -1, 0, err};
  char what[SMOE_PATHLEN + 64];
  snprintf(what, sizeof what, "%s", smoe_store_path(ck->s));
  int rc = bundle_each(buf, n, what, step, apply_entry, &a, err);
  if (rc == 0) rc = smoe_store_persist(ck->s, err);
  if (rc == 0) {
    smoe_batch_clear(a.b);
    a.pass = 1;
    rc = bundle_each(buf, n, what, step, apply_entry, &a, err);
  }
  if (rc == 0) rc = smoe_store_write(ck->s, a.b, SMOE_WRITE_SYNC, err);
  smoe_batch_free(a.b);
  if (rc == 0 && a.log_step > ck->log_step) ck->log_step = a.log_step, ck->rec_bytes = a.rec_bytes;
  return rc;
}

smoe_ckpt_t *smoe_ckpt_open_copy(const char *dir, int rank, const smoe_ckpt_opts_t *o,
                                 smoe_err_t *err) {
  char copies[SMOE_PATHLEN + 16];
  smoe_ckpt_copy_dir(dir, copies, sizeof copies);
  smoe_store_t *s = smoe_store_open(copies, rank, err);
  if (!s) return NULL;
  smoe_ckpt_opts_t co = *o;
  co.copy = 0;
  return handle_new(s, rank, &co);
}

void smoe_ckpt_copy_write(smoe_ckpt_t *ck, const void *buf, size_t n) {
  int64_t step = -1;
  ck->write_rc = smoe_ckpt_apply(ck, buf, n, &step, &ck->write_err);
  if (ck->write_rc != 0)
    snprintf(ck->write_err.msg + strlen(ck->write_err.msg),
             sizeof ck->write_err.msg - strlen(ck->write_err.msg), " (the copy of rank %d's "
             "checkpoint)", ck->rank);
  ck->pending = step;
  ck->local = ck->write_rc == 0 ? 1 : -1;
}

int smoe_ckpt_copy_status(const smoe_ckpt_t *ck, smoe_err_t *err) {
  if (ck->local < 0 && err) *err = ck->write_err;
  return ck->local;
}

void smoe_ckpt_copy_dir(const char *dir, char *out, size_t n) {
  snprintf(out, n, "%s/" SMOE_CKPT_COPY_DIR, dir);
}

smoe_store_t *smoe_ckpt_open_rank(const char *dir, int rank, int *copy, smoe_err_t *err) {
  char copies[SMOE_PATHLEN + 16];
  smoe_ckpt_copy_dir(dir, copies, sizeof copies);
  *copy = !smoe_store_exists(dir, rank) && smoe_store_exists(copies, rank);
  return smoe_store_open_readonly(*copy ? copies : dir, rank, err);
}

/* Every key of a store but its header, as one bundle (restoring a lost
 * store from its copy). */
static int add_any(void *ctx, const void *k, size_t klen, const void *v, size_t vlen) {
  wbuf_t *b = ((wbuf_t **)ctx)[0];
  smoe_cf_t cf = (smoe_cf_t)(intptr_t)((void **)ctx)[1];
  if (cf == SMOE_CF_META && klen == strlen(SMOE_STORE_FORMAT_KEY) &&
      memcmp(k, SMOE_STORE_FORMAT_KEY, klen) == 0)
    return 0;
  bundle_add(b, cf, k, klen, v, vlen);
  return 0;
}
int smoe_ckpt_bundle_store(smoe_store_t *s, void **buf, size_t *n, smoe_err_t *err) {
  wbuf_t b = {0};
  smoe_ckpt_survey_t sv;
  if (smoe_ckpt_survey(s, &sv, err) != 0) return -1;
  bundle_begin(&b, sv.newest);
  int rc = 0;
  for (int cf = SMOE_CF_SHARD; cf < SMOE_CF_COUNT && rc == 0; cf++) { /* meta last */
    void *ctx[2] = {&b, (void *)(intptr_t)cf};
    rc = smoe_store_scan(s, (smoe_cf_t)cf, NULL, 0, add_any, ctx, err);
  }
  void *ctx[2] = {&b, (void *)(intptr_t)SMOE_CF_META};
  if (rc == 0) rc = smoe_store_scan(s, SMOE_CF_META, NULL, 0, add_any, ctx, err);
  bundle_end(&b);
  if (rc != 0) {
    free(b.p);
    return -1;
  }
  *buf = b.p, *n = b.n;
  return 0;
}

int smoe_ckpt_restore_copy(const char *dir, int rank, const void *buf, size_t n, smoe_err_t *err) {
  smoe_store_t *s = smoe_store_open(dir, rank, err);
  if (!s) return -1;
  smoe_ckpt_opts_t o = {0};
  smoe_ckpt_t *ck = handle_new(s, rank, &o);
  int64_t step;
  int rc = smoe_ckpt_apply(ck, buf, n, &step, err);
  smoe_ckpt_close(ck);
  return rc;
}

void smoe_ckpt_next_full(smoe_ckpt_t *ck) { ck->have_base = 0; }

int smoe_ckpt_holds(smoe_ckpt_t *ck, int64_t step) {
  manifest_t m;
  if (manifest_read(ck->s, step, &m, NULL) != 1) return 0;
  manifest_free(&m);
  return 1;
}

int smoe_ckpt_discard_after(smoe_ckpt_t *ck, int64_t step, smoe_err_t *err) {
  return discard_after(ck, step, err);
}

int smoe_ckpt_start_fresh(smoe_ckpt_t *ck, int *removed, smoe_err_t *err) {
  steps_t man;
  if (list_keys(ck->s, 'm', &man, err) != 0) return -1;
  *removed = man.n;
  free(man.v);
  return discard_after(ck, -1, err);
}

int smoe_ckpt_resume(smoe_ckpt_t *ck, smoe_comm_t *comm, int64_t want, int64_t ceiling,
                     smoe_ckpt_check_fn check, void *ctx, int64_t *step, smoe_err_t *err) {
  *step = -1;
  steps_t man;
  int rc = list_keys(ck->s, 'm', &man, err);
  if (smoe_comm_min_i64(comm, rc, SMOE_PHASE_OTHER) < 0) {
    free(man.v);
    return rc < 0 ? -1 : smoe_fail(err, "another rank could not list its checkpoints");
  }
  int64_t bound = ceiling;
  int failed = 0; /* a common checkpoint existed but could not be restored */
  for (;;) {
    int64_t cand = want;
    if (want < 0) { /* the newest step every rank has */
      int64_t mine = -1;
      for (int i = 0; i < man.n; i++)
        if (man.v[i] <= bound && man.v[i] > mine) mine = man.v[i];
      cand = smoe_comm_min_i64(comm, mine, SMOE_PHASE_OTHER);
      if (cand < 0) break;
      if (smoe_comm_min_i64(comm, has_step(&man, cand), SMOE_PHASE_OTHER) == 0) {
        bound = cand - 1;
        continue;
      }
    }
    smoe_err_t e = {{0}};
    int r = restore_step(ck, cand, &e);
    uint64_t fp = 0;
    if (r == 0 && check && check(ctx, cand, &fp, &e) != 0) r = -1;
    /* the worst result over ranks, and whether every rank holds the same
     * fingerprint (max of h and of -h: equal iff min == max) */
    int64_t v[3] = {-r, (int64_t)(fp >> 1), -(int64_t)(fp >> 1)};
    smoe_comm_allreduce_max_i64(comm, v, 3, SMOE_PHASE_OTHER);
    int all = (int)-v[0];
    if (all == 0 && v[1] != -v[2]) {
      all = -1;
      if (smoe_comm_rank(comm) == 0)
        fprintf(stderr, "swiftmoe: the ranks' placement records of step %lld differ\n",
                (long long)cand);
      if (r == 0)
        smoe_fail(&e, "the ranks' placement records of step %lld differ: their logs disagree on "
                  "the placement the checkpoint resumes with", (long long)cand);
      r = -1;
    }
    if (all == 0) {
      *step = cand;
      break;
    }
    if (r != 0) fprintf(stderr, "swiftmoe: [rank %d] cannot restore: %s\n", ck->rank, e.msg);
    if (want >= 0 || all == -2) {
      free(man.v);
      if (r != 0) *err = e;
      else smoe_fail(err, "another rank could not restore the checkpoint of step %lld (see its "
                     "message)", (long long)cand);
      return -1;
    }
    if (smoe_comm_rank(comm) == 0)
      fprintf(stderr, "swiftmoe: the checkpoint of step %lld cannot be restored on every rank: "
              "falling back to the previous globally complete one\n", (long long)cand);
    failed = 1;
    bound = cand - 1;
  }
  smoe_err_t e;
  int64_t lost = lost_manifest(ck->s, &man, &e);
  if (lost > *step)
    fprintf(stderr, "swiftmoe: [rank %d] the checkpoint of step %lld was recorded complete but its "
            "manifest (meta key 'm'+%lld) is missing: falling back to step %lld\n", ck->rank,
            (long long)lost, (long long)lost, (long long)*step);
  const int mine = man.n;
  free(man.v);
  if (*step < 0 && failed)
    return smoe_fail(err, "%s holds checkpoints, but none can be restored on every rank (see the "
                     "messages above); nothing was changed", smoe_store_path(ck->s));
  if (*step < 0) {
    /* Checkpoints that were never complete on every rank (a crash during the
     * first one) are unfinished writes: discarded. But once one was agreed
     * (a 'g' marker anywhere), every rank held a checkpoint: the missing ones
     * were lost, and the others' are the run's state, not to be thrown away. */
    steps_t glob;
    if (list_keys(ck->s, 'g', &glob, err) != 0) glob.n = 1; /* unreadable: keep everything */
    free(glob.v);
    int64_t agreed = glob.n;
    smoe_comm_allreduce_max_i64(comm, &agreed, 1, SMOE_PHASE_OTHER);
    if (agreed > 0)
      return smoe_fail(err, "no checkpoint is on every rank although some were complete on every "
                       "rank before (%s holds %d): a rank's checkpoints are lost; nothing was "
                       "changed", smoe_store_path(ck->s), mine);
    return discard_after(ck, -1, err);
  }
  ck->last_global = *step;
  ck->pending = -1;
  ck->local = 1;
  uint8_t k[META_KEY]; /* every rank restored it: globally complete, whatever was recorded */
  meta_key(k, 'g', *step);
  return smoe_store_put(ck->s, SMOE_CF_META, k, sizeof k, "", 0, err);
}

/* --- the placement log ------------------------------------------------------- */

int smoe_ckpt_log(smoe_ckpt_t *ck, const smoe_plog_t *p, smoe_err_t *err) {
  const size_t bound = smoe_plog_bound(p->L, p->E, p->G, p->S);
  if (bound > ck->rec.cap) { /* one buffer for every record: allocated once for the run's shapes */
    ck->rec.cap = bound;
    ck->rec.p = xrealloc(ck->rec.p, bound);
  }
  const size_t n = smoe_plog_encode(p, ck->rec.p, ck->rec.cap, err);
  ck->rec.n = n;
  if (n == 0) return -1;
  ck->rec_bytes = n, ck->log_step = p->step;
  uint8_t k[8];
  put_be64(k, (uint64_t)p->step);
  smoe_batch_put(ck->log, SMOE_CF_PLACEMENT, k, 8, ck->rec.p, n);
  return ++ck->log_n >= LOG_BATCH ? log_flush(ck, err) : 0;
}

void smoe_ckpt_log_last(const smoe_ckpt_t *ck, const void **rec, size_t *n) {
  *rec = ck->rec.p, *n = ck->rec.n;
}

/* Decodes the record stored under key `step`: 0, or -1 with err naming the
 * store, the step and what is wrong. */
static int plog_parse(smoe_store_t *s, int64_t step, const void *v, size_t n, smoe_plog_t *p,
                      smoe_err_t *err) {
  smoe_err_t e;
  if (smoe_plog_decode(p, v, n, &e) != 0)
    return smoe_fail(err, "%s: placement record of step %lld: %s", smoe_store_path(s),
                     (long long)step, e.msg);
  if (p->step != step) {
    int64_t says = p->step;
    smoe_plog_free(p);
    return smoe_fail(err, "%s: placement record of step %lld says step %lld", smoe_store_path(s),
                     (long long)step, (long long)says);
  }
  return 0;
}

int smoe_plog_read(smoe_store_t *s, int64_t step, smoe_plog_t *p, smoe_err_t *err) {
  uint8_t k[8];
  put_be64(k, (uint64_t)step);
  void *v = NULL;
  size_t n = 0;
  memset(p, 0, sizeof *p);
  int found = smoe_store_get(s, SMOE_CF_PLACEMENT, k, 8, &v, &n, err);
  if (found <= 0) return found;
  int rc = plog_parse(s, step, v, n, p, err);
  free(v);
  return rc == 0 ? 1 : -1;
}

typedef struct {
  smoe_store_t *s;
  int (*fn)(void *, const smoe_plog_t *);
  void (*bad)(void *, int64_t, const char *);
  void *ctx;
  smoe_err_t err; /* the first bad record */
  int64_t n;
} plog_scan_t;
static int plog_each(void *ctx, const void *k, size_t klen, const void *v, size_t vlen) {
  plog_scan_t *ps = ctx;
  int64_t step = klen == 8 ? (int64_t)get_be64(k) : -1;
  smoe_plog_t p;
  smoe_err_t e;
  int r = 0;
  ps->n++;
  if (klen != 8)
    r = smoe_fail(&e, "%s: a placement key of %zu bytes (8 expected)", smoe_store_path(ps->s),
                  klen);
  else if (plog_parse(ps->s, step, v, vlen, &p, &e) == 0) {
    r = ps->fn ? ps->fn(ps->ctx, &p) : 0;
    smoe_plog_free(&p);
    return r;
  }
  if (ps->bad) { /* verify: report it and go on */
    ps->bad(ps->ctx, step, e.msg);
    return 0;
  }
  ps->err = e;
  return -1;
}
int smoe_plog_scan(smoe_store_t *s, int (*fn)(void *ctx, const smoe_plog_t *rec), void *ctx,
                   smoe_err_t *err) {
  plog_scan_t ps = {s, fn, NULL, ctx, {{0}}, 0};
  int rc = smoe_store_scan(s, SMOE_CF_PLACEMENT, NULL, 0, plog_each, &ps, err);
  if (rc != 0 && ps.err.msg[0] && err) *err = ps.err; /* say what was wrong, not only where */
  return rc;
}
int64_t smoe_plog_verify(smoe_store_t *s, void (*bad)(void *ctx, int64_t step, const char *msg),
                         void *ctx, smoe_err_t *err) {
  plog_scan_t ps = {s, NULL, bad, ctx, {{0}}, 0};
  return smoe_store_scan(s, SMOE_CF_PLACEMENT, NULL, 0, plog_each, &ps, err) == 0 ? ps.n : -1;
}

typedef struct {
  int L, E, n;
  int64_t upto, last;
  double *sum;
  smoe_err_t err;
} mean_t;

static int add_loads(void *ctx, const smoe_plog_t *r) {
  mean_t *m = ctx;
  if (m->upto >= 0 && r->step > m->upto) return 1;
  if (r->L != m->L || r->E != m->E)
    return smoe_fail(&m->err, "the log's record of step %lld has L %d layers of E %d experts; this "
                     "run has L %d, E %d", (long long)r->step, r->L, r->E, m->L, m->E);
  for (size_t i = 0; i < (size_t)m->L * m->E; i++) m->sum[i] += (double)r->loads[i];
  m->n++, m->last = r->step;
  return 0;
}

int smoe_plog_mean_loads(const char *spec, int L, int E, double *loads, smoe_err_t *err) {
  char dir[SMOE_PATHLEN + 16], state[SMOE_PATHLEN + 32];
  snprintf(dir, sizeof dir, "%s", spec);
  mean_t m = {L, E, 0, -1, -1, loads, {{0}}};
  char *colon = strrchr(dir, ':');
  if (colon) {
    char *end;
    long long v = strtoll(colon + 1, &end, 10);
    if (*end || end == colon + 1 || v < 1)
      return smoe_fail(err, "%s: the step after ':' must be a number >= 1", spec);
    m.upto = v;
    *colon = '\0';
  }
  snprintf(state, sizeof state, "%s/state", dir); /* a run folder's, else dir itself */
  const char *where = smoe_store_exists(state, 0) ? state : dir;
  smoe_err_t e;
  smoe_store_t *s = smoe_store_open_readonly(where, 0, &e);
  if (!s) return smoe_fail(err, "%s: no placement log there: %s", spec, e.msg);
  memset(loads, 0, sizeof(double) * (size_t)L * E);
  int rc = smoe_plog_scan(s, add_loads, &m, &e);
  smoe_store_close(s);
  if (m.err.msg[0]) return smoe_fail(err, "%s: %s", spec, m.err.msg);
  if (rc != 0) return smoe_fail(err, "%s: %s", spec, e.msg);
  if (m.n == 0) return smoe_fail(err, "%s: the placement log is empty", spec);
  if (m.upto >= 0 && m.last != m.upto)
    return smoe_fail(err, "%s: the log has no record of step %lld (its records up to it end at "
                     "step %lld)", spec, (long long)m.upto, (long long)m.last);
  for (size_t i = 0; i < (size_t)L * E; i++) loads[i] /= m.n;
  return 0;
}

/* --- inspection -------------------------------------------------------------- */

int smoe_ckpt_list(smoe_store_t *s, smoe_ckpt_info_t **out, int *n, smoe_err_t *err) {
  *out = NULL;
  *n = 0;
  steps_t man, glob;
  if (list_keys(s, 'm', &man, err) != 0) return -1;
  if (list_keys(s, 'g', &glob, err) != 0) {
    free(man.v);
    return -1;
  }
  smoe_ckpt_info_t *v = xcalloc((size_t)man.n + 1, sizeof *v);
  int rc = 0;
  for (int i = 0; i < man.n && rc == 0; i++) {
    manifest_t m;
    if (manifest_read(s, man.v[i], &m, err) != 1) {
      rc = -1;
      break;
    }
    int chunks = 0;
    for (uint32_t j = 0; j < m.n_regions; j++) chunks += (int)m.regions[j].n_chunks;
    v[i] = (smoe_ckpt_info_t){m.step, m.base_step, m.full_step, (int)m.chain_len,
                              has_step(&glob, m.step), (int)m.rank, (int)m.G, m.raw, m.stored,
                              m.write_s, m.unix_time, chunks, m.digest};
    manifest_free(&m);
  }
  free(man.v);
  free(glob.v);
  if (rc != 0) {
    free(v);
    return -1;
  }
  *out = v;
  *n = man.n;
  return 0;
}

int smoe_ckpt_verify(smoe_store_t *s, int64_t step, smoe_err_t *err) {
  manifest_t m;
  uint8_t *out = NULL;
  size_t total = 0;
  if (decode_chain(s, smoe_store_rank(s), step, &m, &out, &total, err) != 0) return -1;
  manifest_free(&m);
  free(out);
  return 0;
}

/* --- kill points (test builds) ------------------------------------------------- */

#ifdef SMOE_KILL_POINTS
/* SMOE_KILL_AT=NAME[:N[:RANK]]: the Nth hit of NAME (on launch rank RANK only);
 * SMOE_KILL_RANDOM=P: any point, with probability P per hit. */
void smoe_kill_point(const char *name) {
  static int hits;
  static uint64_t rng;
  const char *at = getenv("SMOE_KILL_AT"), *p = getenv("SMOE_KILL_RANDOM");
  int die = 0;
  if (p) {
    if (!rng) rng = smoe_mix64((uint64_t)getpid() ^ (uint64_t)time(NULL) << 20);
    rng = smoe_mix64(rng);
    die = (double)(rng >> 11) / 9007199254740992.0 < atof(p);
  }
  size_t n = strlen(name);
  if (at && strncmp(at, name, n) == 0 && (at[n] == '\0' || at[n] == ':')) {
    int want = 1, rank = -1;
    if (at[n] == ':') sscanf(at + n + 1, "%d:%d", &want, &rank);
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (rank < 0 || (r && atoi(r) == rank)) die |= ++hits == want;
  }
  if (die) {
    fprintf(stderr, "swiftmoe: kill point %s: SIGKILL (test build)\n", name);
    raise(SIGKILL);
  }
}
#endif
