/* lines_plot.h: a line chart (`swiftmoe compare`'s loss, time, drop and
 * imbalance curves): one line per series, axes with round ticks, a legend,
 * an optional horizontal reference line. SVG and PNG from the same drawing
 * code (draw.h), as the placement heatmap. */
#ifndef SMOE_LINES_PLOT_H
#define SMOE_LINES_PLOT_H

#include "common.h"

typedef struct {
  const char *name;
  int n;
  const double *x, *y; /* points in x order; a NaN y leaves a gap */
  int dashed;
} smoe_series_t;

typedef struct {
  const char *title, *xlabel, *ylabel;
  const smoe_series_t *s;
  int ns;
  double hline;            /* a reference level (NaN: none) */
  const char *hline_label;
} smoe_lines_view_t;

/* Writes the chart to path as SVG (png = 0) or PNG (png = 1). Returns 0, or
 * -1 with err (no finite point, or the file). */
int smoe_lines_plot(const smoe_lines_view_t *v, const char *path, int png, smoe_err_t *err);

#endif
