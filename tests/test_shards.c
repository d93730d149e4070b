/* test_shards.c: the memory the expert shards report (summary.json's
 * expert_optimizer_bytes_per_rank) is what the allocator handed out.
 *
 * smoe_shards_init's own count (sh.bytes) is compared with the allocator's
 * count of bytes in use, read before and after: glibc's mallinfo2 (arena
 * bytes plus mmapped blocks), or AddressSanitizer's allocator in the
 * sanitizer build. Each of the six buffers may be rounded up by the
 * allocator (a page for an mmapped block), nothing more; a buffer missing
 * from the count, or counted twice, is megabytes off. */
#define _GNU_SOURCE
#include <malloc.h>
#include <string.h>

/* cmocka.h needs these four first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "comm.h"
#include "shards.h"

#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(
    void); /* libasan's (its header is not always installed) */
static size_t in_use(void) {
  return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}
#endif

#define SLACK_PER_BUFFER 4096 /* page rounding of an mmapped block, or a chunk header */

static void check(int L, int E, size_t P, int S, int replicated) {
  smoe_comm_t *c = smoe_comm_local();
  smoe_shards_t sh;
  size_t before = in_use();
  smoe_shards_init(&sh, &smoe_ops_cpu, L, E, P, S, c, replicated);
  size_t after = in_use();
  size_t used = after - before;
  print_message("L %d E %d P %zu S %d %s: reported %zu bytes, the allocator %zu\n", L, E, P, S,
                replicated ? "replicated" : "sharded", sh.bytes, used);
  /* the six buffers: master | m | v (3n), grad (n), send, recv, the exchange counts and
   * (rank 0) one gathered expert */
  assert_true(sh.bytes >= 4 * sh.n * sizeof(real));
  assert_true(used >= sh.bytes);
  assert_true(used - sh.bytes <= 6 * SLACK_PER_BUFFER);
  smoe_shards_free(&sh);
  /* all of it was the shards' (the small counts block may stay in glibc's
   * per-thread cache once freed, still counted in use) */
  size_t freed = after - in_use();
  assert_true(freed <= used && used - freed <= SLACK_PER_BUFFER);
  smoe_comm_finalize(c);
}

static void test_bytes_match_allocator(void **state) {
  (void)state;
  check(4, 8, 3 * 128 * 256, 4, 0); /* the demo model's experts at G = 1: 37.7 MB */
  check(2, 8, 3 * 32 * 48, 4, 1);   /* small, replicated */
  check(3, 5, 1000, 7, 0);          /* odd sizes */
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_bytes_match_allocator)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
