/* draw.h: the Cairo plumbing every picture of the CLI shares (the placement
 * heatmap, plans_plot.h; the comparison's line charts, lines_plot.h): one
 * drawing function paints onto a cairo_t, and the same function writes the
 * SVG and the PNG, so the two are the same picture at the same size (one
 * SVG user unit is one PNG pixel). */
#ifndef SMOE_DRAW_H
#define SMOE_DRAW_H

#include <cairo.h>

#include "common.h"

/* Paints the picture onto cr (W x H units); returns a Cairo status. */
typedef int (*smoe_draw_fn)(cairo_t *cr, const void *ctx);

/* Writes paint's picture to path as SVG (png = 0) or PNG (png = 1), W x H
 * px. Returns 0, or -1 with err naming the file and Cairo's message. */
int smoe_draw_file(const char *path, int png, int W, int H, smoe_draw_fn paint, const void *ctx,
                   smoe_err_t *err);

void smoe_draw_font(cairo_t *cr, double size, int bold);
void smoe_draw_text(cairo_t *cr, double x, double y, const char *s);
double smoe_draw_text_w(cairo_t *cr, const char *s);

#endif
