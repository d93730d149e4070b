/* gradlog.h: one rank's gradient log during training (checkpoint.log_gradients;
 * the format is ckpt/glog.h). Every step hands it what its optimizer applies:
 * inside the step, after clipping, the gradient slices are copied into a free
 * staging buffer (smoe_gradlog_grads); after the step, the regions it
 * replaced and its placement record complete the record, which is queued
 * (smoe_gradlog_post). A writer thread of its own writes the queued records in
 * step order, each in one synced batch, so the log lags training by at most
 * `buffers` steps: when every buffer is queued, the next step waits in
 * smoe_gradlog_grads for the oldest write to finish (never longer than that
 * write). A crash loses at most the queued steps. The writer's first failure
 * stops the log (what it names is kept for smoe_gradlog_durable's caller). */
#ifndef SMOE_GRADLOG_H
#define SMOE_GRADLOG_H

#include "backend.h"
#include "glog.h"
#include "store.h"

typedef struct smoe_gradlog smoe_gradlog_t;

/* What a record holds: the parts' shapes (region indices, elements; grads
 * unused) and the whole regions' (region indices, bytes), as r's fields. */
smoe_gradlog_t *smoe_gradlog_open(smoe_store_t *s, int buffers, int level, size_t chunk_bytes,
                                  const smoe_glog_rec_t *shape);
/* Writes what is queued, stops the writer, frees. NULL is a no-op. */
void smoe_gradlog_close(smoe_gradlog_t *g);

/* Inside step `step` (the record's step is step + 1): a staging buffer (waited
 * for when none is free), the scalars, and grads[i] (n of part i's elements,
 * in ops' memory) copied to the host. Returns the seconds the call took. */
double smoe_gradlog_grads(smoe_gradlog_t *g, int64_t step, const smoe_adamw_t *o, double clip,
                          double norm, const smoe_ops_t *ops, const real *const *grads);
/* After the step: whole[i] (host, the shape's bytes) and the placement
 * record `plan` (plog encoding) into the buffer, which is queued. */
void smoe_gradlog_post(smoe_gradlog_t *g, const void *const *whole, const void *plan,
                       size_t plan_n);
/* The newest step whose record is on disk with every record before it, or
 * -1; *failed = 1 (err set) once a write failed. */
int64_t smoe_gradlog_durable(smoe_gradlog_t *g, int *failed, smoe_err_t *err);
/* Blocks until every queued record is written; returns the seconds waited. */
double smoe_gradlog_drain(smoe_gradlog_t *g);
/* Counters since open: records and their raw and stored bytes, seconds the
 * writer spent encoding and writing. */
void smoe_gradlog_counts(smoe_gradlog_t *g, int64_t *records, uint64_t *raw, uint64_t *stored,
                         double *write_s);

#endif
