/* store_tool: damages a rank's state store on purpose, for the corruption
 * tests (a test-only tool; users have `swiftmoe ckpt`).
 *   store_tool DIR RANK delete-manifest STEP
 *   store_tool DIR RANK plan STEP expert|swap|length|flip
 *     alters the placement record of STEP: an expert out of range, or the
 *     first two slots of rank 1 swapped (both written with a valid checksum:
 *     only the placement check, or the ranks' cross-check, can find them),
 *     one byte cut off, or one byte flipped.
 *   store_tool DIR RANK flip-chunk STEP REGION   a byte of a checkpoint chunk
 *   store_tool DIR RANK flip-log STEP PART       a byte of a gradient-log chunk */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plog.h"
#include "store.h"

static void be64(unsigned char *k, unsigned long long v) {
  for (int i = 0; i < 8; i++) k[i] = (unsigned char)(v >> (56 - 8 * i));
}

/* Rewrites the record under k as `how` says. */
static int damage_plan(smoe_store_t *s, const unsigned char *k, const char *how, smoe_err_t *err) {
  void *v = NULL;
  size_t n = 0;
  int found = smoe_store_get(s, SMOE_CF_PLACEMENT, k, 8, &v, &n, err);
  if (found <= 0) return found == 0 ? smoe_fail(err, "no placement record under that step") : -1;
  unsigned char *b = v;
  if (strcmp(how, "expert") == 0 || strcmp(how, "swap") == 0) {
    smoe_plog_t p;
    if (smoe_plog_decode(&p, v, n, err) != 0) return -1;
    int *se = p.slot_expert;
    if (how[0] == 'e') {
      se[0] = p.E + 3;
    } else if (p.G > 1 && p.S > 1) {
      int t = se[p.S];
      se[p.S] = se[p.S + 1], se[p.S + 1] = t;
    }
    free(v); /* re-encoded whole: a version 3 record's length follows its contents */
    v = b = xmalloc(smoe_plog_bound(p.L, p.E, p.G, p.S));
    n = smoe_plog_encode(&p, b, smoe_plog_bound(p.L, p.E, p.G, p.S), err);
    smoe_plog_free(&p);
    if (n == 0) {
      free(v);
      return -1;
    }
  } else if (strcmp(how, "length") == 0) {
    n--;
  } else if (strcmp(how, "flip") == 0) {
    b[n / 2] ^= 0x10;
  } else {
    return smoe_fail(err, "unknown damage '%s' (expert, swap, length or flip)", how);
  }
  int rc = smoe_store_put(s, SMOE_CF_PLACEMENT, k, 8, v, n, err);
  free(v);
  return rc;
}

/* Flips a byte in the middle of chunk 0 of region `region` (its index in
 * the saver's list: 0 = master, in the shard family) of checkpoint k's step;
 * or, in the grads family, of part `region` of the step's gradient-log record
 * (0 = the expert gradients). */
static int flip_chunk(smoe_store_t *s, smoe_cf_t cf, const unsigned char *step_key, int region,
                      smoe_err_t *err) {
  unsigned char k[13];
  memcpy(k, step_key, 8);
  k[8] = (unsigned char)region;
  memset(k + 9, 0, 4);
  void *v = NULL;
  size_t n = 0;
  int found = smoe_store_get(s, cf, k, sizeof k, &v, &n, err);
  if (found <= 0) return found == 0 ? smoe_fail(err, "no chunk 0 of region %d at that step", region) : -1;
  ((unsigned char *)v)[n / 2] ^= 0x10;
  int rc = smoe_store_put(s, cf, k, sizeof k, v, n, err);
  free(v);
  return rc;
}

int main(int argc, char **argv) {
  int plan = argc == 6 && strcmp(argv[3], "plan") == 0;
  int chunk = argc == 6 && strcmp(argv[3], "flip-chunk") == 0;
  int glog = argc == 6 && strcmp(argv[3], "flip-log") == 0;
  if (!plan && !chunk && !glog && (argc != 5 || strcmp(argv[3], "delete-manifest") != 0)) {
    fprintf(stderr,
            "usage: store_tool DIR RANK delete-manifest STEP\n"
            "       store_tool DIR RANK plan STEP expert|swap|length|flip\n"
            "       store_tool DIR RANK flip-chunk STEP REGION\n"
            "       store_tool DIR RANK flip-log STEP PART\n");
    return 2;
  }
  smoe_err_t err;
  smoe_store_t *s = smoe_store_open(argv[1], atoi(argv[2]), &err);
  if (!s) {
    fprintf(stderr, "store_tool: %s\n", err.msg);
    return 1;
  }
  unsigned long long step = strtoull(argv[4], NULL, 10);
  unsigned char k[9] = {'m'};
  be64(k + 1, step);
  int rc = plan    ? damage_plan(s, k + 1, argv[5], &err)
           : chunk ? flip_chunk(s, SMOE_CF_SHARD, k + 1, atoi(argv[5]), &err)
           : glog  ? flip_chunk(s, SMOE_CF_GRADS, k + 1, atoi(argv[5]), &err)
                   : smoe_store_delete(s, SMOE_CF_META, k, sizeof k, &err);
  if (rc == 0) rc = smoe_store_flush(s, &err);
  if (rc) fprintf(stderr, "store_tool: %s\n", err.msg);
  smoe_store_close(s);
  return rc ? 1 : 0;
}
