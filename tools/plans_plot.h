/* plans_plot.h: the placement log as a picture (`swiftmoe ckpt plans
 * --format svg|png`): one heatmap panel per layer, experts down, steps
 * across (aggregated into at most max_cols columns), the colour the
 * expert's share of its layer's load, each expert's replica count written
 * over its cells where they are large enough to read, axes, a colour scale
 * and a title. Drawn with Cairo: the SVG and PNG come from the same drawing
 * code. */
#ifndef SMOE_PLANS_PLOT_H
#define SMOE_PLANS_PLOT_H

#include <stdint.h>

#include "common.h"

typedef struct {
  int n, L, E;            /* records, layers, experts */
  const int64_t *steps;    /* (n) the step of each record, ascending */
  const int64_t *loads;    /* (n, L, E) tokens routed to each expert */
  const int *replicas;     /* (n, L, E) replicas planned for each expert */
  const int *layers;       /* (n_layers) which layers to draw, in order */
  int n_layers;
  const char *title;       /* e.g. "runs/demo: expert load share, swiftmoe, G = 4" */
} smoe_plans_view_t;

/* Writes the heatmap to path as SVG (png = 0) or PNG (png = 1). Returns 0,
 * or -1 with err naming the file and Cairo's message. */
int smoe_plans_plot(const smoe_plans_view_t *v, const char *path, int png, smoe_err_t *err);

#endif
