/* eval.c: mean cross-entropy over consecutive windows of a token stream. */
#include "eval.h"

#include <sys/stat.h>

#include "comm.h"
#include "hf.h"

void smoe_eval_tokens(smoe_model_t *m, const int32_t *tokens, size_t n, smoe_eval_result_t *r) {
  const int T = m->dims.T;
  const size_t W = (size_t)T + 1;
  const int64_t chunk = (int64_t)m->B * m->G; /* windows per collective forward */
  r->windows = (int64_t)(n / W);
  r->tokens = 0;
  double total = 0;
  for (int64_t w = 0; w < r->windows; w += chunk) {
    /* rank r takes windows [w + r*B, w + (r+1)*B), possibly none at the end */
    int64_t first = w + (int64_t)m->rank * m->B, b = r->windows - first;
    b = b < 0 ? 0 : b > m->B ? m->B : b;
    /* windows are contiguous in the stream: (b, T+1) is a plain slice */
    smoe_model_forward(m, tokens + (size_t)(b ? first : 0) * W, (int)b);
    total += m->ce * (double)m->n_valid; /* global over ranks */
    r->tokens += m->n_valid;
  }
  r->loss = r->tokens ? total / (double)r->tokens : 0.0;
}

int smoe_model_open(smoe_model_t *m, smoe_config_t *c, const char *dir, int seq_len, int batch,
                    const char *device, smoe_err_t *err) {
  char path[SMOE_PATHLEN];
  struct stat sb;
  smoe_config_defaults(c);
  snprintf(path, sizeof path, "%s/config.ini", dir);
  if (stat(path, &sb) == 0) {
    if (smoe_config_load(c, path, err) != 0) return -1;
  } else {
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (stat(path, &sb) != 0)
      return smoe_fail(err, "%s is neither a run folder (config.ini) nor an HF model folder "
                       "(config.json)", dir);
    if (smoe_hf_read_config(c, dir, NULL, 0, err) != 0) return -1;
  }
  if (seq_len > 0) {
    char assign[64];
    snprintf(assign, sizeof assign, "model.seq_len=%d", seq_len);
    if (smoe_config_set(c, assign, err) != 0) return -1;
  }
  if (device) {
    char assign[64];
    snprintf(assign, sizeof assign, "training.device=%s", device);
    if (smoe_config_set(c, assign, err) != 0) return -1;
  }
  if (smoe_config_validate(c, err) != 0) return -1;
  smoe_comm_t *comm = smoe_comm_local(); /* a world of one: the model owns it */
  if (smoe_model_init_dist(m, c, batch, comm, err) != 0) {
    smoe_comm_finalize(comm);
    return -1;
  }
  m->own_comm = 1;
  if (smoe_hf_load(m, dir, NULL, NULL, err) != 0) {
    smoe_model_free(m);
    return -1;
  }
  return 0;
}
