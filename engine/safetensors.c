/* safetensors.c: the safetensors reader (validating) and writer. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define MAX_HEADER (100u << 20) /* the format's own limit: 100 MB of JSON */

static const struct {
  const char *name;
  size_t size;
} dtypes[SMOE_DTYPE_COUNT] = {{"F32", 4}, {"BF16", 2}, {"F16", 2}, {"F64", 8}};

const char *smoe_dtype_name(smoe_dtype_t d) { return dtypes[d].name; }
size_t smoe_dtype_size(smoe_dtype_t d) { return dtypes[d].size; }

struct smoe_st {
  FILE *f;
  char *label;
  uint64_t data_start, data_size;
  smoe_st_tensor_t *t;
  int n;
  cJSON *metadata; /* detached __metadata__ object, or NULL */
};

uint16_t smoe_f32_to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1);                                            /* nearest even */
  return (uint16_t)(u >> 16);
}

float smoe_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, 4);
  return x;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13); /* inf / NaN */
  } else if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        man <<= 1;
        e++;
      } while (!(man & 0x400));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float x;
  memcpy(&x, &u, 4);
  return x;
}

static int dtype_of(const char *s, smoe_dtype_t *d) {
  for (int i = 0; i < SMOE_DTYPE_COUNT; i++)
    if (strcmp(s, dtypes[i].name) == 0) return *d = (smoe_dtype_t)i, 0;
  return -1;
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static int json_u64(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return -1;
  double v = j->valuedouble;
  if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(uint64_t)v) return -1;
  *out = (uint64_t)v;
  return 0;
}

static int by_begin(const void *a, const void *b) {
  const smoe_st_tensor_t *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

void smoe_st_close(smoe_st_t *st) {
  if (!st) return;
  if (st->f) fclose(st->f);
  for (int i = 0; i < st->n; i++) free(st->t[i].name);
  free(st->t);
  free(st->label);
  cJSON_Delete(st->metadata);
  free(st);
}

/* Parses one tensor entry; returns 0 or an error message in err. */
static int parse_entry(smoe_st_t *st, const cJSON *e, smoe_st_tensor_t *t, smoe_err_t *err) {
  const char *name = e->string;
  if (!cJSON_IsObject(e))
    return smoe_fail(err, "%s: tensor '%s': entry is not a JSON object", st->label, name);
  const cJSON *dt = NULL, *shape = NULL, *offs = NULL, *c;
  cJSON_ArrayForEach(c, e) {
    if (strcmp(c->string, "dtype") == 0) dt = c;
    else if (strcmp(c->string, "shape") == 0) shape = c;
    else if (strcmp(c->string, "data_offsets") == 0) offs = c;
    else return smoe_fail(err, "%s: tensor '%s': unknown field '%s'", st->label, name, c->string);
  }
  if (!dt || !shape || !offs)
    return smoe_fail(err, "%s: tensor '%s': needs dtype, shape and data_offsets", st->label, name);
  if (!cJSON_IsString(dt) || dtype_of(dt->valuestring, &t->dtype) != 0)
    return smoe_fail(err, "%s: tensor '%s': unsupported dtype %s (supported: F32, BF16, F16, F64)",
                     st->label, name, cJSON_IsString(dt) ? dt->valuestring : "(not a string)");
  if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > SMOE_ST_MAXDIM)
    return smoe_fail(err, "%s: tensor '%s': shape must be a list of at most %d sizes", st->label,
                     name, SMOE_ST_MAXDIM);
  t->ndim = 0;
  t->numel = 1;
  cJSON_ArrayForEach(c, shape) {
    uint64_t v;
    if (json_u64(c, &v) != 0)
      return smoe_fail(err, "%s: tensor '%s': shape entries must be non-negative integers",
                       st->label, name);
    if (v != 0 && t->numel > UINT64_MAX / v)
      return smoe_fail(err, "%s: tensor '%s': shape overflows", st->label, name);
    t->numel *= v;
    t->shape[t->ndim++] = (int64_t)v;
  }
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
      json_u64(cJSON_GetArrayItem(offs, 0), &t->begin) != 0 ||
      json_u64(cJSON_GetArrayItem(offs, 1), &t->end) != 0 || t->begin > t->end)
    return smoe_fail(err, "%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end",
                     st->label, name);
  uint64_t size = dtypes[t->dtype].size;
  if (t->numel > UINT64_MAX / size || t->numel * size != t->end - t->begin)
    return smoe_fail(err,
                     "%s: tensor '%s': data_offsets span %llu bytes but %s shape needs %llu x %zu",
                     st->label, name, (unsigned long long)(t->end - t->begin),
                     dtypes[t->dtype].name, (unsigned long long)t->numel, (size_t)size);
  if (t->end > st->data_size)
    return smoe_fail(err,
                     "%s: tensor '%s': data_offsets end at %llu, past the end of the data (%llu "
                     "bytes; truncated file?)",
                     st->label, name, (unsigned long long)t->end, (unsigned long long)st->data_size);
  t->name = strdup(name);
  if (!t->name) return smoe_fail(err, "out of memory");
  return 0;
}

static int parse_header(smoe_st_t *st, const char *json, size_t len, smoe_err_t *err) {
  const char *end = json;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  /* after the object only padding may follow (the format pads with spaces);
   * cJSON alone stops at the object's '}' and accepts anything after it */
  while (root && end < json + len && *end && strchr(" \t\n\r", *end)) end++;
  if (root && end != json + len) {
    cJSON_Delete(root);
    return smoe_fail(err, "%s: header has bytes after its JSON object (offset %zu)", st->label,
                     (size_t)(end - json));
  }
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return smoe_fail(err, "%s: header is not a JSON object", st->label);
  }
  int n = 0, rc = 0;
  cJSON *c;
  cJSON_ArrayForEach(c, root) n += strcmp(c->string, "__metadata__") != 0;
  st->t = xcalloc((size_t)n, sizeof *st->t);
  cJSON_ArrayForEach(c, root) {
    if (strcmp(c->string, "__metadata__") == 0) {
      const cJSON *kv;
      if (!cJSON_IsObject(c)) rc = smoe_fail(err, "%s: __metadata__ is not an object", st->label);
      cJSON_ArrayForEach(kv, c) if (rc == 0 && !cJSON_IsString(kv)) rc =
          smoe_fail(err, "%s: __metadata__ value '%s' is not a string", st->label, kv->string);
      if (rc == 0 && !st->metadata) st->metadata = cJSON_Duplicate(c, 1);
    } else {
      for (int i = 0; rc == 0 && i < st->n; i++)
        if (strcmp(st->t[i].name, c->string) == 0)
          rc = smoe_fail(err, "%s: tensor '%s' appears twice", st->label, c->string);
      if (rc == 0) rc = parse_entry(st, c, &st->t[st->n], err);
      if (rc == 0) st->n++;
    }
    if (rc) break;
  }
  cJSON_Delete(root);
  if (rc) return rc;
  /* the tensors must tile the data exactly: sorted by offset, each begins
   * where the previous ended, the last ends at the end of the file */
  smoe_st_tensor_t *s = xmalloc(sizeof *s * (size_t)(n ? n : 1));
  memcpy(s, st->t, sizeof *s * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, by_begin);
  uint64_t at = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    if (s[i].begin < at)
      rc = smoe_fail(err, "%s: tensors '%s' and '%s' overlap", st->label, s[i - 1].name, s[i].name);
    else if (s[i].begin > at)
      rc = smoe_fail(err, "%s: %llu unused bytes before tensor '%s'", st->label,
                     (unsigned long long)(s[i].begin - at), s[i].name);
    at = s[i].end;
  }
  if (rc == 0 && at != st->data_size)
    rc = smoe_fail(err, "%s: %llu bytes after the last tensor are not described by the header",
                   st->label, (unsigned long long)(st->data_size - at));
  free(s);
  return rc;
}

smoe_st_t *smoe_st_open_stream(FILE *f, uint64_t size, const char *label, smoe_err_t *err) {
  smoe_st_t *st = xcalloc(1, sizeof *st);
  st->f = f;
  st->label = strdup(label);
  unsigned char lenbuf[8];
  uint64_t n = 0;
  if (size < 8 || fread(lenbuf, 1, 8, f) != 8) {
    smoe_fail(err, "%s: too short for a safetensors file (%llu bytes)", label,
              (unsigned long long)size);
    goto fail;
  }
  for (int i = 7; i >= 0; i--) n = n << 8 | lenbuf[i];
  if (n < 2 || n > MAX_HEADER || n > size - 8) {
    smoe_fail(err, "%s: bad header length %llu (file holds %llu bytes after the length)", label,
              (unsigned long long)n, (unsigned long long)(size - 8));
    goto fail;
  }
  char *json = xmalloc((size_t)n);
  if (fread(json, 1, (size_t)n, f) != n) {
    free(json);
    smoe_fail(err, "%s: cannot read the %llu-byte header", label, (unsigned long long)n);
    goto fail;
  }
  st->data_start = 8 + n;
  st->data_size = size - 8 - n;
  int rc = json[0] == '{' ? parse_header(st, json, (size_t)n, err)
                          : smoe_fail(err, "%s: header does not start with '{'", label);
  free(json);
  if (rc == 0) return st;
fail:
  smoe_st_close(st);
  return NULL;
}

smoe_st_t *smoe_st_open(const char *path, smoe_err_t *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    smoe_fail(err, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  off_t size;
  if (fseeko(f, 0, SEEK_END) != 0 || (size = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
    smoe_fail(err, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    return NULL;
  }
  return smoe_st_open_stream(f, (uint64_t)size, path, err);
}

int smoe_st_count(const smoe_st_t *st) { return st->n; }
const smoe_st_tensor_t *smoe_st_tensor(const smoe_st_t *st, int i) { return &st->t[i]; }

const smoe_st_tensor_t *smoe_st_find(const smoe_st_t *st, const char *name) {
  for (int i = 0; i < st->n; i++)
    if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
  return NULL;
}

const char *smoe_st_metadata(const smoe_st_t *st, const char *key) {
  const cJSON *v = st->metadata ? cJSON_GetObjectItemCaseSensitive(st->metadata, key) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

int smoe_st_read(smoe_st_t *st, const smoe_st_tensor_t *t, real *dst, smoe_err_t *err) {
  enum { CHUNK = 1 << 16 };
  const size_t es = dtypes[t->dtype].size;
  unsigned char *buf = xmalloc(CHUNK * 8);
  if (fseeko(st->f, (off_t)(st->data_start + t->begin), SEEK_SET) != 0) {
    free(buf);
    return smoe_fail(err, "%s: cannot seek to tensor '%s': %s", st->label, t->name,
                     strerror(errno));
  }
  for (uint64_t i = 0; i < t->numel;) {
    size_t m = t->numel - i < CHUNK ? (size_t)(t->numel - i) : CHUNK;
    if (fread(buf, es, m, st->f) != m) {
      free(buf);
      return smoe_fail(err, "%s: tensor '%s' is truncated", st->label, t->name);
    }
    for (size_t j = 0; j < m; j++) {
      const unsigned char *p = buf + j * es;
      uint16_t h;
      float x;
      double d;
      switch (t->dtype) {
        case SMOE_F32: memcpy(&x, p, 4), dst[i + j] = (real)x; break;
        case SMOE_BF16: memcpy(&h, p, 2), dst[i + j] = (real)smoe_bf16_to_f32(h); break;
        case SMOE_F16: memcpy(&h, p, 2), dst[i + j] = (real)f16_to_f32(h); break;
        default: memcpy(&d, p, 8), dst[i + j] = (real)d; break;
      }
    }
    i += m;
  }
  free(buf);
  return 0;
}

int smoe_st_write(const char *path, const smoe_st_entry_t *entries, int n, smoe_dtype_t dtype,
                  const char *const *metadata, smoe_err_t *err) {
  if (dtype != SMOE_F32 && dtype != SMOE_BF16 && dtype != SMOE_F64)
    return smoe_fail(err, "cannot write %s as %s: the writer stores F32, BF16 or F64", path,
                     (unsigned)dtype < SMOE_DTYPE_COUNT ? dtypes[dtype].name : "an unknown dtype");
  const size_t es = dtypes[dtype].size;
  cJSON *root = cJSON_CreateObject();
  if (metadata && metadata[0]) {
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; metadata[i] && metadata[i + 1]; i += 2)
      cJSON_AddStringToObject(m, metadata[i], metadata[i + 1]);
  }
  uint64_t at = 0;
  for (int i = 0; i < n; i++) {
    cJSON *t = cJSON_AddObjectToObject(root, entries[i].name);
    cJSON_AddStringToObject(t, "dtype", dtypes[dtype].name);
    cJSON *shape = cJSON_AddArrayToObject(t, "shape");
    uint64_t numel = 1;
    for (int d = 0; d < entries[i].ndim; d++) {
      cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)entries[i].shape[d]));
      numel *= (uint64_t)entries[i].shape[d];
    }
    cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)at));
    at += numel * es;
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)at));
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  size_t jl = strlen(json), padded = (jl + 7) / 8 * 8; /* data 8-byte aligned */
  char tmp[SMOE_PATHLEN + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(json);
    return smoe_fail(err, "cannot write %s: %s", tmp, strerror(errno));
  }
  unsigned char lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  int ok = fwrite(lenbuf, 1, 8, f) == 8 && fwrite(json, 1, jl, f) == jl;
  for (size_t i = jl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
  free(json);
  enum { CHUNK = 1 << 16 };
  unsigned char *buf = xmalloc(CHUNK * 8);
  for (int i = 0; ok && i < n; i++) {
    uint64_t numel = 1;
    for (int d = 0; d < entries[i].ndim; d++) numel *= (uint64_t)entries[i].shape[d];
    const real *data = entries[i].data ? entries[i].data : entries[i].fetch(entries[i].arg, i);
    for (uint64_t k = 0; ok && k < numel; k += CHUNK) {
      size_t m = numel - k < CHUNK ? (size_t)(numel - k) : CHUNK;
      for (size_t j = 0; j < m; j++) {
        real v = data[k + j];
        float x = (float)v;
        uint16_t h;
        double d = (double)v;
        switch (dtype) {
          case SMOE_F32: memcpy(buf + 4 * j, &x, 4); break;
          case SMOE_BF16: h = smoe_f32_to_bf16(x), memcpy(buf + 2 * j, &h, 2); break;
          case SMOE_F64: memcpy(buf + 8 * j, &d, 8); break;
          default: ok = 0; break; /* F16 output is not offered */
        }
      }
      ok = ok && fwrite(buf, es, m, f) == m;
    }
  }
  free(buf);
  int saved = errno;
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
  if (!ok) saved = errno;
  if (fclose(f) != 0 && ok) ok = 0, saved = errno;
  if (!ok || rename(tmp, path) != 0) {
    if (ok) saved = errno;
    unlink(tmp);
    return smoe_fail(err, "cannot write %s: %s", path, saved ? strerror(saved) : "write failed");
  }
  return 0;
}
