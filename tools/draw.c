/* draw.c: the Cairo plumbing shared by the CLI's pictures (draw.h). */
#include "draw.h"

#include <cairo-svg.h>

int smoe_draw_file(const char *path, int png, int W, int H, smoe_draw_fn paint, const void *ctx,
                   smoe_err_t *err) {
  cairo_surface_t *s;
  if (png) {
    s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  } else {
    s = cairo_svg_surface_create(path, W, H);
    if (!cairo_surface_status(s)) cairo_svg_surface_set_document_unit(s, CAIRO_SVG_UNIT_PX);
  }
  int st = cairo_surface_status(s);
  if (!st) {
    cairo_t *cr = cairo_create(s);
    st = paint(cr, ctx);
    cairo_destroy(cr);
  }
  if (!st && png) st = cairo_surface_write_to_png(s, path);
  if (!st) {
    cairo_surface_finish(s); /* the SVG is written out here */
    st = cairo_surface_status(s);
  }
  cairo_surface_destroy(s);
  if (st)
    return smoe_fail(err, "cannot write %s (%s, %d x %d px): %s", path, png ? "PNG" : "SVG", W, H,
                     cairo_status_to_string((cairo_status_t)st));
  return 0;
}

void smoe_draw_font(cairo_t *cr, double size, int bold) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

void smoe_draw_text(cairo_t *cr, double x, double y, const char *s) {
  cairo_move_to(cr, x, y);
  cairo_show_text(cr, s);
}

double smoe_draw_text_w(cairo_t *cr, const char *s) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  return te.x_advance;
}
