/* store_tool: damages a rank's state store on purpose, for the corruption
 * tests (a test-only tool; users have `swiftmoe ckpt`).
 *   store_tool DIR RANK delete-manifest STEP */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

int main(int argc, char **argv) {
  if (argc != 5 || strcmp(argv[3], "delete-manifest") != 0) {
    fprintf(stderr, "usage: store_tool DIR RANK delete-manifest STEP\n");
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
  for (int i = 0; i < 8; i++) k[1 + i] = (unsigned char)(step >> (56 - 8 * i));
  int rc = smoe_store_delete(s, SMOE_CF_META, k, sizeof k, &err) || smoe_store_flush(s, &err);
  if (rc) fprintf(stderr, "store_tool: %s\n", err.msg);
  smoe_store_close(s);
  return rc ? 1 : 0;
}
