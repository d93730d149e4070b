/* arena.h: scratch memory taken and given back in stack order.
 *
 * A function that needs temporary arrays takes them from an arena and gives
 * them back before it returns (mark, take, release to the mark), as it would
 * malloc and free them. The arena holds one block; a take that does not fit
 * is served by a block of its own (malloc), and when everything has been
 * given back (a release to 0) those blocks are freed and the main block is
 * reallocated to the most ever held at once. So a sequence of takes that
 * repeats (a training step: sizes follow from the dimensions) allocates only
 * the first time. Not thread-safe: take per-thread scratch before an OpenMP
 * region. The owner zero-initialises the struct and calls smoe_arena_free. */
#ifndef SMOE_ARENA_H
#define SMOE_ARENA_H

#include "common.h"

typedef struct {
  char *base;       /* the block */
  size_t cap, used; /* its bytes, and the bytes taken from it */
  void *over;       /* blocks of takes that did not fit (a list), freed at release to 0 */
  size_t over_used; /* bytes taken from them */
  size_t peak;      /* the most bytes taken at once */
  int64_t grows;    /* blocks allocated so far (main and overflow) */
} smoe_arena_t;

/* n bytes (16-byte aligned, uninitialised), until the next release to a
 * mark taken before this call. */
void *smoe_arena_take(smoe_arena_t *a, size_t n);
/* n * size bytes, zeroed. */
void *smoe_arena_zero(smoe_arena_t *a, size_t n, size_t size);
static inline size_t smoe_arena_mark(const smoe_arena_t *a) {
  return a->used + a->over_used;
}
/* Gives back everything taken since mark. */
void smoe_arena_release(smoe_arena_t *a, size_t mark);
void smoe_arena_free(smoe_arena_t *a);

#endif
