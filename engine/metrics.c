/* metrics.c: metrics.jsonl lines and the progress display. */
#include "metrics.h"

#include "comm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

struct smoe_metrics {
  FILE *jsonl;
  int live;           /* redraw one line with \r (a terminal) */
  int line_open;      /* a live line is on screen without its newline */
  int64_t total, plain_every;
};

smoe_metrics_t *smoe_metrics_open(const char *dir, const char *progress, int64_t total_steps,
                                  smoe_err_t *err) {
  char path[SMOE_ERRLEN];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *f = fopen(path, "w");
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
    cJSON_AddNumberToObject(o, "plan_time_s", r->plan_time_s);
    cJSON_AddNumberToObject(o, "split_time_s", r->split_time_s);
    if (r->replicas) {
      cJSON *layers = cJSON_AddArrayToObject(o, "replicas");
      for (int l = 0; l < r->L; l++)
        cJSON_AddItemToArray(layers, cJSON_CreateIntArray(r->replicas + (size_t)l * r->E, r->E));
    }
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
