/* reshard.h: a checkpoint re-sliced for another number of ranks, offline
 * (`swiftmoe ckpt reshard`). Every piece of state is a fixed function of
 * (expert or dense offset, slice, G): rank g holds slice g of each expert's
 * master weights and Adam moments and of the dense vectors, every rank the
 * same selection bias, planner loads and data position. So resharding is
 * pure re-slicing: each new rank's slices are read from the old ranks that
 * hold them (ckpt.h's reader, one decoded chunk per old rank in memory) and
 * streamed into the new store a piece at a time (smoe_ckpt_stream_*: one
 * chunk in memory), so memory is a few chunks per old rank whatever the
 * state's size; written as a full checkpoint of the same step, marked complete everywhere,
 * with a placement record for the new world planned by the run's policy from
 * the restored planner loads. */
#ifndef SMOE_RESHARD_H
#define SMOE_RESHARD_H

#include "config.h"

typedef struct {
  int64_t step;       /* the checkpoint resharded */
  int G_from, G_to, S_to;
  double seconds;
  size_t bytes_read;  /* decoded state bytes read from the old stores */
  size_t bytes_written; /* raw state bytes of the new checkpoints */
  size_t buffers;     /* the writer's buffers (the pieces streamed, a chunk and its
                         encoding); the readers' are a decoded chunk per old rank */
} smoe_reshard_result_t;

/* Reshards checkpoint `step` (-1: the newest complete on every rank) of the
 * run whose stores are in src_state, for config c (its run's config: shapes,
 * policy, checkpoint options; c->slots_per_rank as the new run will use it)
 * on M ranks, into dst_state/rank-0 .. rank-(M-1), which must not exist.
 * Errors in one line: a missing or incomplete source, an M that does not
 * fit (G S < E, the global batch not divisible by M), a corrupted chunk
 * (naming rank, step and key; what was written is removed). */
/* only >= 0: write that new rank's store alone (each rank of a resumed job
 * its own, in parallel: it reads only the chunks holding its slices); -1:
 * every new rank's. */
int smoe_reshard(const smoe_config_t *c, const char *src_state, const char *dst_state, int M,
                 int64_t step, int only, smoe_reshard_result_t *res, smoe_err_t *err);

/* Removes dir and everything in it (a folder resharding made). */
void smoe_reshard_remove(const char *dir);

#endif
