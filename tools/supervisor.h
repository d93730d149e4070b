/* supervisor.h: `swiftmoe run`, the restart supervisor (a libuv process, no MPI). */
#ifndef SMOE_SUPERVISOR_H
#define SMOE_SUPERVISOR_H

/* argv: the arguments after "run" (argc of them); self: argv[0] of swiftmoe.
 * Returns the process exit code. */
int smoe_supervise(int argc, char **argv, const char *self);

#endif
