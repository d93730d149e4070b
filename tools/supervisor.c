/* supervisor.c: `swiftmoe run` (placeholder; being written). */
#include "supervisor.h"

#include <stdio.h>

int smoe_supervise(int argc, char **argv, const char *self) {
  (void)argc, (void)argv, (void)self;
  fprintf(stderr, "swiftmoe run: not built yet\n");
  return 2;
}
