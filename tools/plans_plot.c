/* plans_plot.c: the placement log as a heatmap (plans_plot.h), drawn with
 * Cairo. One function, draw(), paints the whole picture onto a cairo_t; the
 * SVG and the PNG both go through it (draw.h), so they are the same picture
 * at the same size.
 *
 * Layout, top to bottom: a header (title, the colour scale as a bar with
 * tick labels, a legend), then one panel per drawn layer: the layer's name
 * and expert labels in the left margin, the heatmap (row per expert, column
 * per group of consecutive records), step labels under it.
 *
 * Each panel's heatmap, replica marks included, is painted pixel by pixel
 * into its own image surface and placed at scale 1. That keeps the SVG
 * bounded (one embedded PNG per panel instead of a rectangle per cell) and
 * gives the tests something to count: the SVG holds exactly one <image> per
 * panel and no other image (the colour bar is a vector gradient, the text is
 * glyph outlines). The one drawing per cell outside the images, replica
 * counts written as numbers, is used only up to MAX_NUMBERS cells. */
#include "plans_plot.h"

#include "draw.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 600      /* at most this many columns; more records are grouped */
#define MAX_CELLS 750000  /* and at most this many cells over all panels (see below) */
#define PLOT_W 600        /* the heatmap's target width in px */
#define MAX_CELL_W 24     /* widest column, when there are few records */
#define MAX_H 32767       /* Cairo's largest image surface side */
#define MAX_NUMBERS 20000 /* most cells with a written replica count */
#define LEFT 96           /* left margin: layer name and expert labels */
#define RIGHT 24
#define HEAD_H 78    /* title, colour bar, legend */
#define BELOW 26     /* under a heatmap: ticks, step labels, gap */
#define MAX_TICKS 16 /* step labels under a panel */
#define BAR_W 240    /* colour bar */
#define BAR_H 12
#define BAR_Y 34
#define LEGEND_X (LEFT + BAR_W + 28)

/* Viridis sampled at 8 evenly spaced points (van der Walt and Smith's
 * colour map, CC0): dark purple for 0, yellow for the top of the scale;
 * lightness rises monotonically. */
static const double STOPS[8][3] = {
    {0x44, 0x01, 0x54}, {0x46, 0x33, 0x7e}, {0x36, 0x5c, 0x8d}, {0x27, 0x7f, 0x8e},
    {0x1f, 0xa1, 0x87}, {0x4a, 0xc1, 0x6d}, {0x9f, 0xda, 0x3a}, {0xfd, 0xe7, 0x25},
};

typedef struct {
  int C, g;                     /* columns, records per column (the last may hold fewer) */
  int cw, rh;                   /* column width, expert row height, in px */
  int plot_w, W, H;             /* heatmap width, picture size, in px */
  int numbers;                  /* 1: replica counts written in the cells */
  int dots;                     /* 1: cells with more than dot_over replicas marked */
  int dot_over;                 /* the mean replica count, rounded down (at least 1) */
  int clipped;                  /* 1: some shares lie above top (drawn as top) */
  float *share;                 /* (n_layers, C, E) expert's share of its layer's tokens */
  int *reps;                    /* (n_layers, C, E) replicas, mean over the column, rounded */
  double top;                   /* the colour scale's end: the 99th percentile of the shares */
  uint32_t lut[256];            /* 0x00RRGGBB of the ramp at i / 255 */
  int nt;                       /* step ticks: */
  int tick_col[MAX_TICKS];      /* the column that reaches the step */
  int64_t tick_step[MAX_TICKS]; /* a round step number */
} layout_t;

/* The ramp at x in [0, 1], components in [0, 1]. */
static void ramp(double x, double rgb[3]) {
  if (!(x > 0)) x = 0; /* also NaN */
  if (x > 1) x = 1;
  double p = x * 7;
  int i = (int)p;
  if (i > 6) i = 6;
  double f = p - i;
  for (int k = 0; k < 3; k++) rgb[k] = ((1 - f) * STOPS[i][k] + f * STOPS[i + 1][k]) / 255;
}

static int luma_is_light(uint32_t px) {
  double r = (px >> 16) & 255, g = (px >> 8) & 255, b = px & 255;
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 128;
}

static uint32_t cell_px(const layout_t *lo, float share) {
  double x = share / lo->top;
  if (!(x > 0)) x = 0;
  if (x > 1) x = 1;
  return lo->lut[(int)(x * 255 + 0.5)];
}

static int by_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Smallest of 1, 2, 5, 10, 20, 50, ... that is >= k. */
static int64_t nice_at_least(int64_t k) {
  for (int64_t m = 1;; m *= 10) {
    if (k <= m) return m;
    if (k <= 2 * m) return 2 * m;
    if (k <= 5 * m) return 5 * m;
    if (m > INT64_MAX / 100) return k;
  }
}

/* Legend line 2 and 3 (line 1 is fixed). */
static void legend_lines(const layout_t *lo, char *l2, char *l3, size_t n) {
  if (lo->numbers)
    snprintf(l2, n, "number: replicas planned for the next step");
  else if (lo->dots)
    snprintf(l2, n, "dot: more than %d replica%s planned for the next step", lo->dot_over,
             lo->dot_over == 1 ? "" : "s");
  else
    snprintf(l2, n, "replicas: not drawn (rows under 3 px)");
  if (lo->g > 1)
    snprintf(l3, n, "rows: experts; columns: %d records each (replicas: mean)", lo->g);
  else
    snprintf(l3, n, "rows: experts; columns: steps");
}

static const char *LEGEND_1 = "colour: expert's share of its layer's tokens";

static const char *title_of(const smoe_plans_view_t *v) {
  return v->title ? v->title : "expert load share";
}

/* Sizes, aggregation and the colour scale. On success the caller frees
 * lo->share and lo->reps. */
static int layout(const smoe_plans_view_t *v, const char *path, layout_t *lo, smoe_err_t *err) {
  memset(lo, 0, sizeof *lo);
  if (v->n <= 0 || v->n_layers <= 0)
    return smoe_fail(err, "%s: nothing to draw (%d records, %d layers)", path, v->n, v->n_layers);
  if (v->L <= 0 || v->E <= 0 || !v->steps || !v->loads || !v->replicas || !v->layers)
    return smoe_fail(err, "%s: nothing to draw (L = %d, E = %d)", path, v->L, v->E);
  for (int i = 0; i < v->n_layers; i++)
    if (v->layers[i] < 0 || v->layers[i] >= v->L)
      return smoe_fail(err, "%s: layer %d is not in the log (layers 0..%d)", path, v->layers[i],
                       v->L - 1);
  int n = v->n, L = v->L, E = v->E, nl = v->n_layers;
  /* Columns: at most MAX_COLS, and at most MAX_CELLS cells in all. On
   * uniform noise, the worst case for compression, a cell took about 6 bytes
   * of SVG and 5 of PNG (1000 records x 40 layers x 256 experts: 4.6 and
   * 3.7 MB; the smooth loads of tests/plans_plot_dump: 1.9 and 1.6 MB). */
  int64_t most_cols = MAX_CELLS / ((int64_t)nl * E);
  if (most_cols > MAX_COLS) most_cols = MAX_COLS;
  if (most_cols < 1) most_cols = 1;
  lo->g = (int)((n + most_cols - 1) / most_cols);
  lo->C = (n + lo->g - 1) / lo->g;
  lo->cw = PLOT_W / lo->C;
  if (lo->cw > MAX_CELL_W) lo->cw = MAX_CELL_W;
  if (lo->cw < 1) lo->cw = 1;
  lo->plot_w = lo->C * lo->cw;

  /* rows of 3..12 px, thinner if the picture would pass Cairo's limit */
  lo->rh = 480 / E;
  if (lo->rh > 12) lo->rh = 12;
  if (lo->rh < 3) lo->rh = 3;
  int64_t per_row = (int64_t)nl * E, fixed = HEAD_H + (int64_t)nl * BELOW;
  while (lo->rh > 1 && fixed + per_row * lo->rh > MAX_H) lo->rh--;
  if (fixed + per_row > MAX_H) {
    int64_t most = (MAX_H - HEAD_H) / (E + BELOW);
    return smoe_fail(err,
                     "%s: %d layers of %d experts do not fit in one picture (%d px high at most): "
                     "draw at most %lld layers",
                     path, nl, E, MAX_H, (long long)most);
  }
  lo->H = (int)(fixed + per_row * lo->rh);

  /* step ticks: the first step, then round numbers about 90 px apart, each
   * at the first column whose records reach it */
  int64_t s0 = v->steps[0], s1 = v->steps[n - 1];
  int want = lo->plot_w / 90 + 1;
  if (want < 2) want = 2;
  lo->nt = 1;
  lo->tick_col[0] = 0;
  lo->tick_step[0] = s0;
  if (s1 > s0) {
    int64_t d = nice_at_least((s1 - s0 + want - 2) / (want - 1));
    int64_t x = s0 - ((s0 % d) + d) % d + d; /* the first multiple of d above s0 */
    for (int t = 0; x <= s1 && lo->nt < MAX_TICKS; x += d) {
      while (v->steps[t] < x) t++; /* stops at n - 1 at the latest: x <= s1 */
      lo->tick_col[lo->nt] = t / lo->g;
      lo->tick_step[lo->nt++] = x;
    }
  }

  size_t cells = smoe_mul(smoe_mul((size_t)nl, (size_t)lo->C), (size_t)E);
  lo->share = xmalloc(smoe_mul(cells, sizeof *lo->share));
  lo->reps = xmalloc(smoe_mul(cells, sizeof *lo->reps));
  int64_t *sum = xmalloc(smoe_mul((size_t)E, sizeof *sum));
  int64_t *rsum = xmalloc(smoe_mul((size_t)E, sizeof *rsum));
  double top = 0;
  int most_reps = 0;
  for (int i = 0; i < nl; i++) {
    int l = v->layers[i];
    for (int c = 0; c < lo->C; c++) {
      int t0 = c * lo->g, t1 = t0 + lo->g < n ? t0 + lo->g : n;
      memset(sum, 0, (size_t)E * sizeof *sum);
      memset(rsum, 0, (size_t)E * sizeof *rsum);
      for (int t = t0; t < t1; t++) {
        size_t at = ((size_t)t * (size_t)L + (size_t)l) * (size_t)E;
        for (int e = 0; e < E; e++) {
          sum[e] += v->loads[at + e];
          rsum[e] += v->replicas[at + e];
        }
      }
      int64_t total = 0;
      for (int e = 0; e < E; e++) total += sum[e];
      size_t at = ((size_t)i * (size_t)lo->C + (size_t)c) * (size_t)E;
      int64_t k = t1 - t0;
      for (int e = 0; e < E; e++) {
        double s = total > 0 ? (double)sum[e] / (double)total : 0;
        lo->share[at + e] = (float)s;
        if (s > top) top = s;
        int r = (int)((2 * rsum[e] + k) / (2 * k)); /* mean, halves rounded up */
        lo->reps[at + e] = r;
        if (r > most_reps) most_reps = r;
      }
    }
  }
  free(sum);
  free(rsum);
  /* the scale ends at the 99th percentile, so that a few early spikes (a
   * router collapsing for some steps) do not darken everything else */
  float *sorted = xmalloc(smoe_mul(cells, sizeof *sorted));
  memcpy(sorted, lo->share, cells * sizeof *sorted);
  qsort(sorted, cells, sizeof *sorted, by_float);
  double p99 = sorted[(size_t)(0.99 * (double)(cells - 1))];
  double rep_mean = 0;
  for (size_t c = 0; c < cells; c++) rep_mean += lo->reps[c];
  rep_mean /= (double)cells;
  free(sorted);
  lo->clipped = p99 > 0 && p99 < top;
  lo->top = p99 > 0 ? p99 : top > 0 ? top : 1;
  lo->dot_over = rep_mean >= 2 ? (int)rep_mean : 1;
  for (int i = 0; i < 256; i++) {
    double rgb[3];
    ramp(i / 255.0, rgb);
    lo->lut[i] = (uint32_t)(rgb[0] * 255 + 0.5) << 16 | (uint32_t)(rgb[1] * 255 + 0.5) << 8 |
                 (uint32_t)(rgb[2] * 255 + 0.5);
  }

  /* widths that need text measured: a scratch context */
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t *cr = cairo_create(s);
  char num[16];
  snprintf(num, sizeof num, "%d", most_reps);
  smoe_draw_font(cr, lo->rh - 2.0 < 9 ? lo->rh - 2.0 : 9, 0);
  lo->numbers =
      lo->cw >= 10 && lo->rh >= 10 && cells <= MAX_NUMBERS && smoe_draw_text_w(cr, num) <= lo->cw - 2;
  lo->dots = !lo->numbers && lo->rh >= 3;
  char l2[128], l3[128];
  legend_lines(lo, l2, l3, sizeof l2);
  smoe_draw_font(cr, 14, 1);
  double tw = smoe_draw_text_w(cr, title_of(v));
  smoe_draw_font(cr, 10, 0);
  double lw = smoe_draw_text_w(cr, LEGEND_1);
  if (smoe_draw_text_w(cr, l2) > lw) lw = smoe_draw_text_w(cr, l2);
  if (smoe_draw_text_w(cr, l3) > lw) lw = smoe_draw_text_w(cr, l3);
  int st = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_destroy(s);
  if (st) {
    free(lo->share);
    free(lo->reps);
    return smoe_fail(err, "%s: %s", path, cairo_status_to_string((cairo_status_t)st));
  }
  double w = LEFT + lo->plot_w + RIGHT;
  if (tw > 1600) tw = 1600; /* a longer title is cut at the right edge */
  if (8 + tw + 8 > w) w = 8 + tw + 8;
  if (LEGEND_X + lw + 12 > w) w = LEGEND_X + lw + 12;
  lo->W = (int)w + 1;
  return 0;
}

/* Panel i's heatmap as an image: cw x rh px per cell, replica marks in. */
static cairo_surface_t *panel_image(const smoe_plans_view_t *v, const layout_t *lo, int i) {
  int E = v->E, cw = lo->cw, rh = lo->rh;
  cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, lo->plot_w, E * rh);
  if (cairo_surface_status(img)) return img;
  cairo_surface_flush(img);
  unsigned char *data = cairo_image_surface_get_data(img);
  int stride = cairo_image_surface_get_stride(img);
  int mw = (cw + 1) / 3 > 0 ? (cw + 1) / 3 : 1, mh = (rh + 1) / 3 > 0 ? (rh + 1) / 3 : 1;
  for (int c = 0; c < lo->C; c++)
    for (int e = 0; e < E; e++) {
      size_t at = ((size_t)i * (size_t)lo->C + (size_t)c) * (size_t)E + (size_t)e;
      uint32_t px = cell_px(lo, lo->share[at]);
      uint32_t mark = luma_is_light(px) ? 0x000000 : 0xffffff;
      int dot = lo->dots && lo->reps[at] > lo->dot_over;
      for (int y = 0; y < rh; y++) {
        uint32_t *row = (uint32_t *)(data + (size_t)(e * rh + y) * (size_t)stride) + c * cw;
        int in_y = y >= (rh - mh) / 2 && y < (rh - mh) / 2 + mh;
        for (int x = 0; x < cw; x++) {
          int in_x = x >= (cw - mw) / 2 && x < (cw - mw) / 2 + mw;
          row[x] = dot && in_x && in_y ? mark : px;
        }
      }
    }
  cairo_surface_mark_dirty(img);
  return img;
}

static void draw_header(cairo_t *cr, const smoe_plans_view_t *v, const layout_t *lo) {
  cairo_set_source_rgb(cr, 0, 0, 0);
  smoe_draw_font(cr, 14, 1);
  smoe_draw_text(cr, 8, 20, title_of(v));

  /* the colour scale: the ramp as a linear gradient, 0 .. top */
  cairo_pattern_t *grad = cairo_pattern_create_linear(LEFT, 0, LEFT + BAR_W, 0);
  for (int k = 0; k < 8; k++)
    cairo_pattern_add_color_stop_rgb(grad, k / 7.0, STOPS[k][0] / 255, STOPS[k][1] / 255,
                                     STOPS[k][2] / 255);
  cairo_rectangle(cr, LEFT, BAR_Y, BAR_W, BAR_H);
  cairo_set_source(cr, grad);
  cairo_fill(cr);
  cairo_pattern_destroy(grad);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, LEFT - 0.5, BAR_Y - 0.5, BAR_W + 1, BAR_H + 1);
  cairo_stroke(cr);
  smoe_draw_font(cr, 10, 0);
  cairo_set_source_rgb(cr, 0, 0, 0);
  smoe_draw_text(cr, LEFT - 6 - smoe_draw_text_w(cr, "share"), BAR_Y + 10, "share");
  cairo_new_path(cr);
  for (int k = 0; k <= 4; k++) {
    double x = (int)(LEFT + BAR_W * k / 4.0) + 0.5;
    cairo_move_to(cr, x, BAR_Y + BAR_H);
    cairo_line_to(cr, x, BAR_Y + BAR_H + 3);
  }
  cairo_stroke(cr);
  for (int k = 0; k <= 4; k++) {
    double x = LEFT + BAR_W * k / 4.0;
    char s[32];
    double p = 100 * lo->top * k / 4;
    snprintf(s, sizeof s, lo->top < 0.1 ? "%s%.2f%%" : "%s%.1f%%",
             k == 4 && lo->clipped ? ">= " : "", p);
    smoe_draw_text(cr, x - smoe_draw_text_w(cr, s) / 2, BAR_Y + BAR_H + 14, s);
  }

  char l2[128], l3[128];
  legend_lines(lo, l2, l3, sizeof l2);
  smoe_draw_text(cr, LEGEND_X, BAR_Y + 10, LEGEND_1);
  smoe_draw_text(cr, LEGEND_X, BAR_Y + 23, l2);
  smoe_draw_text(cr, LEGEND_X, BAR_Y + 36, l3);
}

/* Replica counts written over panel i's cells (lo->numbers only). */
static void draw_numbers(cairo_t *cr, const smoe_plans_view_t *v, const layout_t *lo, int i,
                         double top) {
  int E = v->E;
  smoe_draw_font(cr, lo->rh - 2.0 < 9 ? lo->rh - 2.0 : 9, 0);
  for (int c = 0; c < lo->C; c++)
    for (int e = 0; e < E; e++) {
      size_t at = ((size_t)i * (size_t)lo->C + (size_t)c) * (size_t)E + (size_t)e;
      int light = luma_is_light(cell_px(lo, lo->share[at]));
      char s[16];
      snprintf(s, sizeof s, "%d", lo->reps[at]);
      cairo_text_extents_t te;
      cairo_text_extents(cr, s, &te);
      double x = LEFT + c * lo->cw + (lo->cw - te.x_advance) / 2;
      double y = top + e * lo->rh + (lo->rh + te.height) / 2;
      cairo_set_source_rgb(cr, !light, !light, !light);
      smoe_draw_text(cr, x, y, s);
    }
}

static int draw_panel(cairo_t *cr, const smoe_plans_view_t *v, const layout_t *lo, int i,
                      double top) {
  int E = v->E, h = E * lo->rh;
  cairo_surface_t *img = panel_image(v, lo, i);
  int st = cairo_surface_status(img);
  if (st == 0) {
    cairo_set_source_surface(cr, img, LEFT, top);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_paint(cr);
  }
  cairo_surface_destroy(img);
  if (st) return st;
  if (lo->numbers) draw_numbers(cr, v, lo, i, top);

  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_rectangle(cr, LEFT - 0.5, top - 0.5, lo->plot_w + 1, h + 1);
  cairo_stroke(cr);

  char s[64];
  cairo_set_source_rgb(cr, 0, 0, 0);
  smoe_draw_font(cr, 11, 1);
  snprintf(s, sizeof s, "layer %d", v->layers[i]);
  smoe_draw_text(cr, 8, top + 10, s);

  /* expert labels: every k-th row, k chosen so labels are >= 11 px apart */
  smoe_draw_font(cr, 9, 0);
  int k = (int)nice_at_least((11 + lo->rh - 1) / lo->rh);
  for (int e = 0; e < E; e += k) {
    snprintf(s, sizeof s, "%d", e);
    smoe_draw_text(cr, LEFT - 5 - smoe_draw_text_w(cr, s), top + e * lo->rh + lo->rh / 2.0 + 3, s);
  }
  cairo_new_path(cr); /* the ticks as one path: one SVG element per panel */
  for (int e = 0; e < E; e += k) {
    double y = (int)(top + e * lo->rh + lo->rh / 2.0) + 0.5;
    cairo_move_to(cr, LEFT - 3, y);
    cairo_line_to(cr, LEFT, y);
  }

  /* step labels, centred under their column; one that would touch the
   * previous one is left out (steps logged unevenly) */
  for (int j = 0; j < lo->nt; j++) {
    double x = (int)(LEFT + lo->tick_col[j] * lo->cw + lo->cw / 2.0) + 0.5;
    cairo_move_to(cr, x, top + h);
    cairo_line_to(cr, x, top + h + 3);
  }
  cairo_stroke(cr); /* with the expert ticks */
  double right = 0;
  for (int j = 0; j < lo->nt; j++) {
    double x = LEFT + lo->tick_col[j] * lo->cw + lo->cw / 2.0;
    snprintf(s, sizeof s, "%lld", (long long)lo->tick_step[j]);
    double w = smoe_draw_text_w(cr, s), tx = x - w / 2;
    if (tx + w > lo->W - 2) tx = lo->W - 2 - w;
    if (j > 0 && tx < right + 6) continue;
    smoe_draw_text(cr, tx, top + h + 13, s);
    right = tx + w;
  }
  return 0;
}

/* The whole picture onto cr (W x H units). Returns a Cairo status. */
static int draw(cairo_t *cr, const smoe_plans_view_t *v, const layout_t *lo) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  draw_header(cr, v, lo);
  double top = HEAD_H;
  for (int i = 0; i < v->n_layers; i++) {
    int st = draw_panel(cr, v, lo, i, top);
    if (st) return st;
    top += v->E * lo->rh + BELOW;
  }
  return cairo_status(cr);
}

typedef struct {
  const smoe_plans_view_t *v;
  const layout_t *lo;
} picture_t;

static int paint(cairo_t *cr, const void *ctx) {
  const picture_t *p = ctx;
  return draw(cr, p->v, p->lo);
}

int smoe_plans_plot(const smoe_plans_view_t *v, const char *path, int png, smoe_err_t *err) {
  layout_t lo;
  if (layout(v, path, &lo, err)) return -1;
  const picture_t pic = {v, &lo};
  int rc = smoe_draw_file(path, png, lo.W, lo.H, paint, &pic, err);
  free(lo.share);
  free(lo.reps);
  return rc;
}
