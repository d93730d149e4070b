/* saver.h: one rank's checkpoints during training. Which state a checkpoint
 * holds (the regions: the expert optimizer shard, this rank's 1/G slice of
 * the dense parameters and their moments, the balancing bias, the planner's
 * loads and the position), staging it, writing it on the loop's thread pool
 * (or at once), the agreement between ranks that it is complete everywhere,
 * and restoring it on resume. train.c decides when; ckpt/ does the storing.
 *
 * Every function marked "collective" is called by every rank at the same
 * point (it talks to the other ranks through comm). */
#ifndef SMOE_SAVER_H
#define SMOE_SAVER_H

#include "ckpt.h"
#include "gradlog.h"
#include "loop.h"
#include "model.h"
#include "policy.h"
#include "shards.h"

/* The regions of a checkpoint (smoe_saver_layout). */
#define SMOE_SAVER_REGIONS 9

typedef struct {
  smoe_ckpt_t *ck;
  smoe_loop_t *loop;
  int async, skip_busy;
  int rc; /* the last write's result, set when it finished */
  smoe_err_t err;
  int64_t pos[4]; /* region "position": seed, step, tokens, planner has loads */
  uint64_t seed;
  int L, E, G, S, rank;
  smoe_plog_t plan; /* on resume: the placement record the restored step runs with */
  /* checkpoint.redundancy = buddy (G > 1): after its write, each checkpoint's
   * bundle (ckpt.h) goes to rank g+1, and this rank keeps rank g-1's in
   * `copy`; a checkpoint is locally complete once this rank's write, its
   * bundle's send and the copy it keeps of g-1's are all done */
  smoe_comm_t *comm;
  smoe_ckpt_t *copy;          /* rank g-1's checkpoints, or NULL */
  smoe_comm_msg_t *out, *in;  /* the bundle going to g+1, the one coming from g-1 */
  void *out_buf, *in_buf;
  size_t in_n;
  int in_state;               /* of g-1's bundle: 0 awaited, 1 received, 2 being written, 3 done */
  /* checkpoint.log_gradients = on: the gradient log (gradlog.h), the live
   * regions a replay applies its records to, and where a record's gradients
   * go on the backend for it (the step's own gradient buffers) */
  smoe_gradlog_t *gl;
  smoe_ckpt_region_t live[SMOE_SAVER_REGIONS];
  void *scratch[2];
  int64_t replayed;           /* on resume: records replayed onto the checkpoint */
  int64_t replay_base;        /* and the checkpoint's step */
} smoe_saver_t;

/* A digest of the whole config as written (what changed, not only shapes);
 * every manifest records the one its run used. */
uint64_t smoe_saver_config_digest(const smoe_config_t *c);

/* What a checkpoint of rank g of a G-rank run of config c holds (S slots
 * per rank, the expert optimizer replicated or sharded, n_dense dense
 * values): the regions' names, families, sizes and element sizes (data and
 * ops left NULL), and the shapes a resume checks. One definition for the
 * saver and for resharding. */
#define SMOE_SAVER_SHAPES 12
void smoe_saver_layout(const smoe_config_t *c, int G, int g, int S, int replicated, size_t n_dense,
                       smoe_ckpt_region_t r[SMOE_SAVER_REGIONS],
                       smoe_ckpt_shape_t shapes[SMOE_SAVER_SHAPES]);
/* The checkpoint options of config c. */
smoe_ckpt_opts_t smoe_saver_opts(const smoe_config_t *c);

/* The folder of the ranks' state stores: checkpoint.dir, or out_dir/state. */
void smoe_saver_dir(const smoe_config_t *c, const char *out_dir, char *dir, size_t n);

/* Opens this rank's store (creating it) and the event loop; the regions
 * point into m, sh, pol, dm and dv, which must outlive the saver. */
/* The staging bytes smoe_saver_open's checkpoint takes (smoe_ckpt_staging_bytes)
 * for shards of shard_n elements per buffer and a dense slice of dense_len. */
size_t smoe_saver_staging_plan(const smoe_config_t *c, size_t shard_n, size_t dense_len);
int smoe_saver_open(smoe_saver_t *sv, const smoe_config_t *c, const char *out_dir, smoe_model_t *m,
                    smoe_shards_t *sh, smoe_policy_t *pol, real *dm, real *dv, smoe_err_t *err);
/* Waits for a write in flight, closes the store. */
void smoe_saver_close(smoe_saver_t *sv);

/* Copies the state after `step` steps into the staging buffer (nothing is
 * written yet: smoe_saver_write). No write may be pending: see settle.
 * Returns the seconds it took. */
double smoe_saver_stage(smoe_saver_t *sv, int64_t step, int64_t tokens, const smoe_policy_t *pol);
/* Writes the staged checkpoint: on the thread pool (async), or here (sync).
 * Returns the seconds the caller was blocked. */
double smoe_saver_write(smoe_saver_t *sv, int sync);

/* This rank's status of the pending checkpoint (smoe_ckpt_local_status, and
 * with copies also its bundle sent and g-1's kept), after moving the copies
 * along: a send completed, a bundle received and handed to the writer.
 * Called at every step boundary (main thread). */
int smoe_saver_status(smoe_saver_t *sv);

/* Every rank knows `status`, the minimum over ranks of the pending
 * checkpoint's smoe_ckpt_local_status: 1 records it globally complete and
 * prunes (*global = its step), -1 fails the run naming the step, 0 (still
 * being written somewhere) leaves it pending. *global = -1 otherwise. */
int smoe_saver_agreed(smoe_saver_t *sv, int status, int64_t *global, smoe_err_t *err);
/* Collective: waits until this rank's pending write (if any) has finished,
 * then agrees on it as above. After it nothing is pending, so every
 * checkpoint written is agreed (or reported failed) before the next one is
 * staged. *stall += the seconds waited. */
int smoe_saver_settle(smoe_saver_t *sv, smoe_comm_t *comm, int64_t *global, double *stall,
                      smoe_err_t *err);

/* The gradient log (sv->gl set). After step `step` (the state after it) and
 * its placement record (smoe_ckpt_log: the placement the next step runs
 * with), completes the record the step began (its on_grads hook calls
 * smoe_gradlog_grads) with the regions the step replaced and that placement
 * record, and queues it for the writer. */
void smoe_saver_log_post(smoe_saver_t *sv, int64_t step, int64_t tokens, const smoe_policy_t *pol);

/* Collective: resumes from checkpoint `want` (-1: the newest
 * every rank completed, falling back past damaged ones). The placement
 * record of the step is read and checked on every rank (checksum, shapes,
 * a valid placement, the same on every rank) before the step is accepted.
 * Then the dense slices are all-gathered, the placement applied and the
 * replicas rebuilt by one weights-to-slots exchange. *start = the resumed
 * step, or 0 when there is no checkpoint anywhere.
 * With the gradient log, the step resumed is the newest every rank has
 * logged (want = -1; or exactly `want`): the newest checkpoint at or before
 * it is restored, then the log's records after it are replayed in order
 * (smoe_glog_apply: the step's AdamW), each read and checked on every rank
 * before any rank applies it; a record missing or damaged on some rank ends
 * the replay at the step before it (said on stderr; with want >= 0 the resume
 * fails instead). sv->replayed = the records applied, sv->replay_base = the
 * checkpoint's step. */
int smoe_saver_resume(smoe_saver_t *sv, smoe_comm_t *comm, int64_t want, smoe_model_t *m,
                      smoe_shards_t *sh, smoe_policy_t *pol, real *dm, real *dv, int64_t *start,
                      smoe_err_t *err);

#endif
