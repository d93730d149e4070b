/* lines_plot.c: a line chart (lines_plot.h). */
#include "lines_plot.h"

#include <math.h>
#include <stdio.h>

#include "draw.h"

#define W 820
#define H 480
#define LEFT 70
#define TOP 40
#define PLOT_W 540
#define PLOT_H 370
#define LEGEND_X (LEFT + PLOT_W + 16)

/* Tableau 10, a categorical palette readable in print and by most colour
 * vision deficiencies */
static const unsigned PALETTE[10] = {0x4e79a7, 0xf28e2b, 0xe15759, 0x76b7b2, 0x59a14f,
                                     0xedc948, 0xb07aa1, 0xff9da7, 0x9c755f, 0xbab0ac};

typedef struct {
  const smoe_lines_view_t *v;
  double x0, x1, y0, y1; /* the axes' ranges */
} chart_t;

/* A round tick step giving about n ticks over span. */
static double tick_step(double span, int n) {
  double raw = span / n, m = pow(10, floor(log10(raw))), f = raw / m;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * m;
}

static double px(const chart_t *c, double x) {
  return LEFT + (x - c->x0) / (c->x1 - c->x0) * PLOT_W;
}
static double py(const chart_t *c, double y) {
  return TOP + PLOT_H - (y - c->y0) / (c->y1 - c->y0) * PLOT_H;
}

static void colour(cairo_t *cr, int i) {
  unsigned c = PALETTE[i % 10];
  cairo_set_source_rgb(cr, (c >> 16) / 255.0, ((c >> 8) & 255) / 255.0, (c & 255) / 255.0);
}

static void axes(cairo_t *cr, const chart_t *c) {
  char buf[32];
  cairo_set_line_width(cr, 1);
  smoe_draw_font(cr, 10, 0);
  const double xs = tick_step(c->x1 - c->x0, 8), ys = tick_step(c->y1 - c->y0, 6);
  for (double x = ceil(c->x0 / xs) * xs; x <= c->x1 + 1e-9 * xs; x += xs) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px(c, x), TOP), cairo_line_to(cr, px(c, x), TOP + PLOT_H), cairo_stroke(cr);
    snprintf(buf, sizeof buf, "%g", fabs(x) < 1e-12 * xs ? 0 : x);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    smoe_draw_text(cr, px(c, x) - smoe_draw_text_w(cr, buf) / 2, TOP + PLOT_H + 14, buf);
  }
  for (double y = ceil(c->y0 / ys) * ys; y <= c->y1 + 1e-9 * ys; y += ys) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, LEFT, py(c, y)), cairo_line_to(cr, LEFT + PLOT_W, py(c, y)), cairo_stroke(cr);
    snprintf(buf, sizeof buf, "%g", fabs(y) < 1e-12 * ys ? 0 : y);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    smoe_draw_text(cr, LEFT - 6 - smoe_draw_text_w(cr, buf), py(c, y) + 3.5, buf);
  }
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, LEFT, TOP, PLOT_W, PLOT_H), cairo_stroke(cr);
  smoe_draw_font(cr, 11, 0);
  smoe_draw_text(cr, LEFT + PLOT_W / 2.0 - smoe_draw_text_w(cr, c->v->xlabel) / 2, H - 32,
                 c->v->xlabel);
  cairo_save(cr);
  cairo_translate(cr, 16, TOP + PLOT_H / 2.0 + smoe_draw_text_w(cr, c->v->ylabel) / 2);
  cairo_rotate(cr, -M_PI / 2);
  smoe_draw_text(cr, 0, 0, c->v->ylabel);
  cairo_restore(cr);
  smoe_draw_font(cr, 13, 1);
  smoe_draw_text(cr, LEFT, 24, c->v->title);
}

static int paint(cairo_t *cr, const void *ctx) {
  const chart_t *c = ctx;
  const smoe_lines_view_t *v = c->v;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  axes(cr, c);
  cairo_save(cr);
  cairo_rectangle(cr, LEFT, TOP, PLOT_W, PLOT_H);
  cairo_clip(cr);
  if (isfinite(v->hline)) {
    static const double dots[] = {2, 3};
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_dash(cr, dots, 2, 0);
    cairo_move_to(cr, LEFT, py(c, v->hline)), cairo_line_to(cr, LEFT + PLOT_W, py(c, v->hline));
    cairo_stroke(cr);
  }
  cairo_set_line_width(cr, 1.6);
  for (int i = 0; i < v->ns; i++) {
    static const double dash[] = {6, 3};
    cairo_set_dash(cr, dash, v->s[i].dashed ? 2 : 0, 0);
    colour(cr, i);
    int open = 0;
    for (int k = 0; k < v->s[i].n; k++) {
      double x = v->s[i].x[k], y = v->s[i].y[k];
      if (!isfinite(x) || !isfinite(y)) {
        open = 0;
        continue;
      }
      if (open)
        cairo_line_to(cr, px(c, x), py(c, y));
      else
        cairo_move_to(cr, px(c, x), py(c, y)), open = 1;
    }
    cairo_stroke(cr);
  }
  cairo_restore(cr);
  smoe_draw_font(cr, 10, 0);
  for (int i = 0; i < v->ns; i++) {
    const double y = TOP + 8 + 16 * i;
    static const double dash[] = {6, 3};
    cairo_set_dash(cr, dash, v->s[i].dashed ? 2 : 0, 0);
    colour(cr, i);
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, LEGEND_X, y), cairo_line_to(cr, LEGEND_X + 22, y), cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    smoe_draw_text(cr, LEGEND_X + 28, y + 3.5, v->s[i].name);
  }
  if (isfinite(v->hline) && v->hline_label) {
    static const double dots[] = {2, 3};
    const double y = TOP + 8 + 16 * v->ns;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1);
    cairo_set_dash(cr, dots, 2, 0);
    cairo_move_to(cr, LEGEND_X, y), cairo_line_to(cr, LEGEND_X + 22, y), cairo_stroke(cr);
    smoe_draw_text(cr, LEGEND_X + 28, y + 3.5, v->hline_label);
  }
  return cairo_status(cr);
}

int smoe_lines_plot(const smoe_lines_view_t *v, const char *path, int png, smoe_err_t *err) {
  chart_t c = {v, INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (int i = 0; i < v->ns; i++)
    for (int k = 0; k < v->s[i].n; k++) {
      double x = v->s[i].x[k], y = v->s[i].y[k];
      if (!isfinite(x) || !isfinite(y)) continue;
      c.x0 = fmin(c.x0, x), c.x1 = fmax(c.x1, x), c.y0 = fmin(c.y0, y), c.y1 = fmax(c.y1, y);
    }
  if (!(c.x0 <= c.x1)) return smoe_fail(err, "%s: \"%s\" has no point to draw", path, v->title);
  if (isfinite(v->hline)) c.y0 = fmin(c.y0, v->hline), c.y1 = fmax(c.y1, v->hline);
  if (c.x1 - c.x0 < 1e-12) c.x0 -= 0.5, c.x1 += 0.5;
  if (c.y1 - c.y0 < 1e-12) c.y0 -= 0.5, c.y1 += 0.5;
  const double pad = 0.04 * (c.y1 - c.y0);
  c.y0 -= pad, c.y1 += pad;
  return smoe_draw_file(path, png, W, H, paint, &c, err);
}
