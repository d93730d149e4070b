/* safetensors.h: reader and writer of the safetensors format (HF's weight
 * files): an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
 *  ..., "__metadata__": {"k": "v"}}, then the tensor bytes (offsets are
 * relative to the end of the header), little-endian, row-major.
 *
 * Opening validates the whole header against the file size before any tensor
 * is read: known dtypes, shapes whose byte size matches their offsets (with
 * overflow checks), offsets inside the file, no two tensors overlapping and
 * no unused bytes (the format's own rules). A malformed file is an error
 * naming the file, the tensor and the rule, never a crash. */
#ifndef SMOE_SAFETENSORS_H
#define SMOE_SAFETENSORS_H

#include "common.h"

typedef enum { SMOE_F32 = 0, SMOE_BF16, SMOE_F16, SMOE_F64, SMOE_DTYPE_COUNT } smoe_dtype_t;

const char *smoe_dtype_name(smoe_dtype_t d);
size_t smoe_dtype_size(smoe_dtype_t d);

#define SMOE_ST_MAXDIM 8

typedef struct {
  char *name;
  smoe_dtype_t dtype;
  int ndim;
  int64_t shape[SMOE_ST_MAXDIM];
  uint64_t begin, end; /* byte range after the header */
  uint64_t numel;
} smoe_st_tensor_t;

typedef struct smoe_st smoe_st_t;

/* Opens and validates path. NULL with err set on any problem. */
smoe_st_t *smoe_st_open(const char *path, smoe_err_t *err);
/* The same over an open stream of `size` bytes (tests and the fuzzer use
 * fmemopen); takes ownership of f; `label` names it in errors. */
smoe_st_t *smoe_st_open_stream(FILE *f, uint64_t size, const char *label, smoe_err_t *err);
void smoe_st_close(smoe_st_t *st);

int smoe_st_count(const smoe_st_t *st);
const smoe_st_tensor_t *smoe_st_tensor(const smoe_st_t *st, int i);
const smoe_st_tensor_t *smoe_st_find(const smoe_st_t *st, const char *name);
/* The __metadata__ value of key, or NULL. */
const char *smoe_st_metadata(const smoe_st_t *st, const char *key);

/* Reads tensor t converted to `real` into dst (t->numel elements). */
int smoe_st_read(smoe_st_t *st, const smoe_st_tensor_t *t, real *dst, smoe_err_t *err);

/* One tensor to write: data is `real`, stored as dtype. With data NULL the
 * writer calls fetch(arg, i) for it (i: the entry's index) just before
 * writing its bytes, in entry order: tensors streamed one at a time. */
typedef struct {
  const char *name;
  int ndim;
  int64_t shape[SMOE_ST_MAXDIM];
  const real *data;
  const real *(*fetch)(void *arg, int i);
  void *arg;
} smoe_st_entry_t;

/* Writes entries (in order) as dtype to path, through path.tmp + fsync +
 * rename, so a crash never leaves a partial file under path. metadata: NULL
 * or pairs of strings, NULL-terminated. */
int smoe_st_write(const char *path, const smoe_st_entry_t *entries, int n, smoe_dtype_t dtype,
                  const char *const *metadata, smoe_err_t *err);

/* float <-> bfloat16 (round to nearest even; NaN stays NaN). */
uint16_t smoe_f32_to_bf16(float x);
float smoe_bf16_to_f32(uint16_t h);

#endif
