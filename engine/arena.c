/* arena.c: scratch memory in stack order (arena.h). */
#include "arena.h"

#include <string.h>

enum { ALIGN = 16 };

/* A take that did not fit: its own block. Once there is one, every take gets
 * its own block until they are given back, so takes stay in stack order: the
 * main block's, then the blocks, newest first in the list. */
typedef struct over_block {
  struct over_block *next;
  size_t at, n;       /* its place in the stack (the mark before it), its bytes */
  max_align_t data[]; /* the take */
} over_block_t;

static size_t round_up(size_t n) {
  return (n + ALIGN - 1) / ALIGN * ALIGN;
}

void *smoe_arena_take(smoe_arena_t *a, size_t n) {
  n = round_up(n ? n : 1);
  void *p;
  if (!a->over && n <= a->cap - a->used) {
    p = a->base + a->used;
    a->used += n;
  } else {
    over_block_t *b = xmalloc(sizeof *b + n);
    b->next = a->over, b->at = a->used + a->over_used, b->n = n;
    a->over = b;
    a->over_used += n;
    a->grows++;
    p = b->data;
  }
  if (a->used + a->over_used > a->peak) a->peak = a->used + a->over_used;
  return p;
}

void *smoe_arena_zero(smoe_arena_t *a, size_t n, size_t size) {
  size_t bytes = smoe_mul(n, size);
  return memset(smoe_arena_take(a, bytes), 0, bytes);
}

void smoe_arena_release(smoe_arena_t *a, size_t mark) {
  over_block_t *b = a->over;
  while (b && b->at >= mark) { /* the blocks taken since mark */
    over_block_t *next = b->next;
    a->over_used -= b->n;
    free(b);
    b = next;
  }
  a->over = b;
  if (mark < a->used) a->used = mark; /* blocks all lie above the main block's takes */
  if (a->used == 0 && !a->over && a->peak > a->cap) { /* all given back: grow to the peak */
    free(a->base);
    a->cap = round_up(a->peak);
    a->base = xmalloc(a->cap);
    a->grows++;
  }
}

void smoe_arena_free(smoe_arena_t *a) {
  smoe_arena_release(a, 0);
  free(a->base);
  memset(a, 0, sizeof *a);
}
