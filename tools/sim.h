/* sim.h: `swiftmoe sim` (a policy's step time on a described cluster, from a
 * run's placement log or synthetic loads) and the projection `swiftmoe
 * compare` uses. The cost model is engine/cost.h; the policies' replay on
 * the loads is engine/whatif.h's fluid replay. */
#ifndef SMOE_SIM_H
#define SMOE_SIM_H

#include <stdint.h>

#include "common.h"
#include "cost.h"
#include "whatif.h"

/* The loads a simulation replays: a rescaled trace, or synthetic skew. */
typedef struct {
  int n, L, E, K;      /* steps, layers, experts, experts per token (the scenario's) */
  int64_t *counts;     /* (n, L, E) a trace's rows, or NULL: synthetic */
  double zipf, drift;  /* synthetic */
  uint64_t seed;
} smoe_sim_loads_t;

/* A run's placement log (DIR: a run folder or its state folder) rescaled to
 * sc (its G, E, top-k, layers and tokens per step stay): scenario layer l
 * replays trace layer l mod L_t; scenario expert e takes the load share of
 * trace expert e mod E_t, split evenly among the scenario experts that take
 * it when E > E_t (a hot expert becomes E / E_t equally hot ones), or the
 * sum of trace experts e, e + E, ... when E < E_t; each step's rows are
 * those shares of sc's G N K rows (largest remainders); at most max_steps
 * records (<= 0: all). Returns 0, or -1 with err. */
int smoe_sim_trace(const char *dir, smoe_scenario_t *sc, int max_steps, smoe_sim_loads_t *out,
                   smoe_err_t *err);
void smoe_sim_loads_free(smoe_sim_loads_t *l);

/* --calibration FILE: smoe_scenario_calibrate on the file's text. */
int smoe_sim_calibrate(smoe_scenario_t *sc, const char *path, char *said, size_t n,
                       smoe_err_t *err);

typedef struct {
  smoe_whatif_result_t r;  /* imbalance, drops, bytes (whatif.h) */
  smoe_cost_parts_t mean;  /* each part's mean over the steps */
  double step_max;         /* the slowest step */
  double memory;           /* the most bytes on one GPU in any step */
  double replan_mean;      /* eplb, flexmoe: mean step time of the steps that moved replicas */
  double normal_mean;      /* ... and of the others (0 where there were none) */
  int64_t replan_steps;
  double migration_bytes;  /* per step: weights and state moved */
  double seconds;          /* the simulation's own wall time */
} smoe_sim_result_t;

/* Replays policy p on loads under sc. Returns 0, or -1 with err. */
int smoe_sim_run(const smoe_scenario_t *sc, const smoe_sim_loads_t *loads,
                 const smoe_whatif_policy_t *p, smoe_sim_result_t *out, smoe_err_t *err);

/* How a policy keeps its expert state, for the cost model. */
smoe_cost_sync_t smoe_sim_sync(const smoe_whatif_policy_t *p);

int smoe_sim_command(int argc, char **argv);

#endif
