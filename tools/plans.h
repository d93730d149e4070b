/* plans.h: the placement log read back for people and scripts:
 * `swiftmoe ckpt plans` (summary, table, csv, json, svg, png; --follow) and
 * `swiftmoe ckpt replay` (the determinism audit and what other policies
 * would have done). Read-only: the stores are opened without a lock, safe beside a
 * running job. */
#ifndef SMOE_PLANS_H
#define SMOE_PLANS_H

#include <stdint.h>

#include "common.h"
#include "config.h"
#include "store.h"

/* A run's state stores: DIR/rank-0 .. rank-(n-1), DIR a run folder's state/
 * or a checkpoint.dir; every one present, or its copy (DIR/copy/rank-r, kept
 * by the next rank: checkpoint.redundancy) read in its place. */
typedef struct {
  smoe_store_t **s;
  smoe_store_t **copy; /* (n) the copy of rank r's store, or NULL */
  int *from_copy;      /* (n) s[r] is that copy: rank r's own store is gone */
  int n;
  char dir[SMOE_PATHLEN + 16];
} smoe_stores_t;

/* Opens every rank's store read-only (arg: a run folder or its state
 * folder), and the copies there are. Returns 0, or -1 with err naming the
 * folder and what is missing. */
int smoe_stores_open(const char *arg, smoe_stores_t *st, smoe_err_t *err);
void smoe_stores_close(smoe_stores_t *st);

/* The records of steps lo..hi (inclusive; hi < 0: to the end), in step order. */
typedef struct {
  int n, L, E, G, S;
  int64_t *steps;   /* (n) */
  int64_t *loads;   /* (n, L, E) tokens routed to each expert in step steps[i] - 1 */
  int *replicas;    /* (n, L, E) planned for step steps[i] */
  int *slot_expert; /* (n, L, G, S) planned for step steps[i] */
  int64_t *src;     /* (n, L, G, E) tokens rank q routed to e (every rank's own counts),
                       or NULL when not loaded */
} smoe_plans_t;

/* Loads rank 0's records of steps lo..hi, and with sources every rank's own
 * counts (sources = 2: required, an error naming the rank and step that
 * lacks them; 1: where every rank has them, else src = NULL). Returns 0, or
 * -1 with err (an unreadable record, a log whose shapes change, no records
 * in the range). */
int smoe_plans_load(const smoe_stores_t *st, int64_t lo, int64_t hi, int sources, smoe_plans_t *p,
                    smoe_err_t *err);
void smoe_plans_free(smoe_plans_t *p);

/* The run's resolved config: config.ini in the run folder (arg, or the
 * folder above a state folder). Returns 1 found, 0 not found (c holds the
 * defaults), -1 unreadable (err). */
int smoe_plans_config(const char *arg, smoe_config_t *c, smoe_err_t *err);

/* The subcommands; argv: the arguments after "plans" / "replay". */
int smoe_plans_command(int argc, char **argv);
int smoe_replay_command(int argc, char **argv);

#endif
