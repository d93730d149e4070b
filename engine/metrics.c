/* metrics.c: metrics.jsonl lines and the progress display. */
#define _POSIX_C_SOURCE 200809L
#include "metrics.h"

#include "comm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

struct smoe_metrics {
  FILE *jsonl;
  int live;           /* redraw one line with \r (a terminal) */
  int line_open;      /* a live line is on screen without its newline */
  int64_t total, plain_every;
};

/* The step of a metrics line, or -1. */
static int64_t line_step(const char *line) {
  const char *p = strstr(line, "{\"step\":");
  return p == line ? strtoll(p + 8, NULL, 10) : -1;
}

/* Keeps the lines of path up to step `keep` (rewritten via a temporary file
 * and rename, so a crash leaves the old or the new file). */
static int keep_lines(const char *path, int64_t keep, int64_t *last, int64_t *logged,
                      smoe_err_t *err) {
  *last = 0, *logged = -1;
  FILE *in = fopen(path, "r");
  if (!in) return errno == ENOENT ? 0 : smoe_fail(err, "cannot read %s: %s", path, strerror(errno));
  char tmp[SMOE_ERRLEN + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *out = fopen(tmp, "w");
  if (!out) {
    fclose(in);
    return smoe_fail(err, "cannot write %s: %s", tmp, strerror(errno));
  }
  char *line = NULL;
  size_t cap = 0;
  int bad = 0;
  while (getline(&line, &cap, in) > 0) {
    int64_t st = line_step(line);
    if (st > *last) *last = st;
    const char *g = strstr(line, "\"gradient_log\":{\"logged\":");
    if (g && atoll(g + 25) > *logged) *logged = atoll(g + 25);
    if (st <= keep && strchr(line, '\n') && fputs(line, out) < 0) bad = 1;
  }
  free(line);
  fclose(in);
  if (fclose(out) != 0 || bad || rename(tmp, path) != 0)
    return smoe_fail(err, "cannot rewrite %s: %s", path, strerror(errno));
  return 0;
}

smoe_metrics_t *smoe_metrics_open(const char *dir, const char *progress, int64_t total_steps,
                                  int64_t resume_step, int64_t *last_logged,
                                  int64_t *last_announced, smoe_err_t *err) {
  char path[SMOE_ERRLEN];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  int64_t last = 0, announced = -1;
  if (resume_step >= 0 && keep_lines(path, resume_step, &last, &announced, err) != 0) return NULL;
  if (last_logged) *last_logged = last;
  if (last_announced) *last_announced = announced;
  FILE *f = fopen(path, resume_step >= 0 ? "a" : "w");
  if (!f) {
    smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
    return NULL;
  }
  smoe_metrics_t *mt = xcalloc(1, sizeof *mt);
  mt->jsonl = f;
  mt->live = strcmp(progress, "on") == 0 || (strcmp(progress, "auto") == 0 && isatty(2));
  mt->total = total_steps;
  mt->plain_every = total_steps >= 20 ? total_steps / 20 : 1;
  return mt;
}

static void end_live_line(smoe_metrics_t *mt) {
  if (mt->line_open) fputc('\n', stderr);
  mt->line_open = 0;
}

int smoe_metrics_step(smoe_metrics_t *mt, const smoe_step_record_t *r, int write,
                      smoe_err_t *err) {
  double tps = r->step_time_s > 0 ? (double)r->step_tokens / r->step_time_s : 0;
  if (write) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)r->step);
    cJSON_AddNumberToObject(o, "loss", r->loss);
    cJSON_AddNumberToObject(o, "ce_loss", r->ce);
    cJSON_AddNumberToObject(o, "aux_loss", r->aux_loss);
    cJSON_AddNumberToObject(o, "z_loss", r->z_loss);
    cJSON_AddNumberToObject(o, "lr", r->lr);
    cJSON_AddNumberToObject(o, "grad_norm", r->grad_norm);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "tokens_per_s", tps);
    cJSON_AddNumberToObject(o, "step_time_s", r->step_time_s);
    if (r->val_loss >= 0) cJSON_AddNumberToObject(o, "val_loss", r->val_loss);
    if (r->expert_counts) {
      cJSON *layers = cJSON_AddArrayToObject(o, "expert_counts");
      for (int l = 0; l < r->L; l++) {
        cJSON *row = cJSON_CreateArray();
        for (int e = 0; e < r->E; e++)
          cJSON_AddItemToArray(row, cJSON_CreateNumber((double)r->expert_counts[(size_t)l * r->E + e]));
        cJSON_AddItemToArray(layers, row);
      }
    }
    if (r->rank_tokens) { /* per layer, the tokens each rank computed */
      cJSON *layers = cJSON_AddArrayToObject(o, "rank_tokens");
      for (int l = 0; l < r->L; l++) {
        cJSON *row = cJSON_CreateArray();
        for (int g = 0; g < r->G; g++)
          cJSON_AddItemToArray(row, cJSON_CreateNumber((double)r->rank_tokens[(size_t)g * r->L + l]));
        cJSON_AddItemToArray(layers, row);
      }
      cJSON_AddNumberToObject(o, "imbalance", r->imbalance);
      cJSON_AddItemToObject(o, "layer_imbalance",
                            cJSON_CreateDoubleArray(r->layer_imbalance, r->L));
    }
    cJSON_AddNumberToObject(o, "dropped_tokens", (double)r->dropped);
    cJSON_AddNumberToObject(o, "shadows", (double)r->shadows);
    cJSON_AddNumberToObject(o, "plan_time_s", r->plan_time_s);
    cJSON_AddNumberToObject(o, "split_time_s", r->split_time_s);
    if (r->replicas) {
      cJSON *layers = cJSON_AddArrayToObject(o, "replicas");
      for (int l = 0; l < r->L; l++)
        cJSON_AddItemToArray(layers, cJSON_CreateIntArray(r->replicas + (size_t)l * r->E, r->E));
    }
    if (r->ckpt) {
      cJSON *k = cJSON_AddObjectToObject(o, "checkpoint");
      cJSON_AddStringToObject(k, "write", r->ckpt);
      cJSON_AddNumberToObject(k, "stall_s", r->ckpt_stall_s);
    }
    if (r->ckpt_global >= 0) cJSON_AddNumberToObject(o, "checkpoint_complete", (double)r->ckpt_global);
    if (r->logged >= 0) {
      cJSON *k = cJSON_AddObjectToObject(o, "gradient_log");
      cJSON_AddNumberToObject(k, "logged", (double)r->logged);
      cJSON_AddNumberToObject(k, "stall_s", r->log_stall_s);
    }
    if (r->sample) cJSON_AddStringToObject(o, "sample", r->sample);
    if (r->bytes) {
      cJSON *b = cJSON_AddObjectToObject(o, "bytes");
      for (int p = 0; p < SMOE_PHASE_COUNT; p++)
        cJSON_AddNumberToObject(b, smoe_phase_name((smoe_phase_t)p), (double)r->bytes[p]);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int bad = !s || fprintf(mt->jsonl, "%s\n", s) < 0 || fflush(mt->jsonl) != 0;
    free(s);
    if (bad) return smoe_fail(err, "cannot append to metrics.jsonl: %s", strerror(errno));
  }
  char line[256];
  snprintf(line, sizeof line, "step %*lld/%lld  loss %.4f  lr %.2e  gnorm %.3f  %.0f tok/s",
           (int)snprintf(NULL, 0, "%lld", (long long)mt->total), (long long)r->step,
           (long long)mt->total, r->loss, r->lr, r->grad_norm, tps);
  if (mt->live) {
    fprintf(stderr, "\r%s\033[K", line);
    mt->line_open = 1;
    if (r->val_loss >= 0) {
      fprintf(stderr, "  val %.4f", r->val_loss);
      end_live_line(mt);
    }
  } else if (r->step % mt->plain_every == 0 || r->step == 1 || r->step == mt->total ||
             r->val_loss >= 0) {
    if (r->val_loss >= 0)
      fprintf(stderr, "%s  val %.4f\n", line, r->val_loss);
    else
      fprintf(stderr, "%s\n", line);
  }
  fflush(stderr);
  return 0;
}

void smoe_metrics_note(smoe_metrics_t *mt, const char *fmt, ...) {
  end_live_line(mt);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void smoe_metrics_close(smoe_metrics_t *mt) {
  if (!mt) return; /* ranks other than 0 have none */
  end_live_line(mt);
  fclose(mt->jsonl);
  free(mt);
}
