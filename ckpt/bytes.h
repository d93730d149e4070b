/* bytes.h: big-endian keys and a growable little-endian writer / bounds-checked
 * reader, for the formats of ckpt/ (manifests, bundles, gradient-log records). */
#ifndef SMOE_BYTES_H
#define SMOE_BYTES_H

#include <stdint.h>
#include <string.h>

#include "common.h"

static inline void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* meta keys: 'm' | be64 step (manifest), 'g' | be64 step (globally complete),
 * 'l' | be64 step (a gradient-log record, glog.h) */
#define META_KEY 9
static inline void meta_key(uint8_t *k, char kind, int64_t step) {
  k[0] = (uint8_t)kind;
  put_be64(k + 1, (uint64_t)step);
}

/* chunk keys: be64 step | u8 region | be32 chunk */
#define CHUNK_KEY 13
static inline void chunk_key(uint8_t *k, int64_t step, int region, uint32_t chunk) {
  put_be64(k, (uint64_t)step);
  k[8] = (uint8_t)region;
  for (int i = 0; i < 4; i++) k[9 + i] = (uint8_t)(chunk >> (24 - 8 * i));
}

typedef struct {
  uint8_t *p;
  size_t n, cap;
} wbuf_t;

static inline void w_bytes(wbuf_t *w, const void *src, size_t n) {
  if (w->n + n > w->cap) {
    w->cap = (w->n + n) * 2 + 64;
    w->p = xrealloc(w->p, w->cap);
  }
  memcpy(w->p + w->n, src, n);
  w->n += n;
}
static inline void w_u64(wbuf_t *w, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
  w_bytes(w, b, 8);
}
static inline void w_u32(wbuf_t *w, uint32_t v) {
  uint8_t b[4];
  for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
  w_bytes(w, b, 4);
}
static inline void w_u8(wbuf_t *w, uint8_t v) { w_bytes(w, &v, 1); }
static inline void w_f64(wbuf_t *w, double d) {
  uint64_t v;
  memcpy(&v, &d, 8);
  w_u64(w, v);
}

typedef struct {
  const uint8_t *p;
  size_t n, at;
  int bad; /* ran past the end */
} rbuf_t;

static inline const uint8_t *r_take(rbuf_t *r, size_t n) {
  if (r->bad || n > r->n - r->at) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p + r->at;
  r->at += n;
  return p;
}
static inline uint64_t r_u64(rbuf_t *r) {
  const uint8_t *p = r_take(r, 8);
  uint64_t v = 0;
  if (p)
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static inline uint32_t r_u32(rbuf_t *r) {
  const uint8_t *p = r_take(r, 4);
  return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
           : 0;
}
static inline uint8_t r_u8(rbuf_t *r) {
  const uint8_t *p = r_take(r, 1);
  return p ? p[0] : 0;
}
static inline double r_f64(rbuf_t *r) {
  uint64_t v = r_u64(r);
  double d;
  memcpy(&d, &v, 8);
  return d;
}

/* A growing list of steps (ascending when filled from a key scan). */
typedef struct {
  int64_t *v;
  int n, cap;
} steps_t;
static inline void steps_add(steps_t *st, int64_t step) {
  if (st->n == st->cap) {
    st->cap = st->cap * 2 + 16;
    st->v = xrealloc(st->v, sizeof(int64_t) * (size_t)st->cap);
  }
  st->v[st->n++] = step;
}

#endif
