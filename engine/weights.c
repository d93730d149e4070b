/* weights.c: a checkpoint's model read from every rank's store (weights.h). */
#define _POSIX_C_SOURCE 200809L
#include "weights.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "moe.h"

/* The newest step every store holds (written on every rank: what a resume
 * takes too, agreed or not yet, e.g. a job killed before its ranks agreed
 * on it, or before its copies were made), or -1. */
static int64_t newest_everywhere(smoe_store_t **s, int G, smoe_err_t *err) {
  int64_t best = -1;
  smoe_ckpt_info_t *v = NULL;
  int n = 0;
  if (smoe_ckpt_list(s[0], &v, &n, err) != 0) return -2;
  for (int i = n - 1; i >= 0 && best < 0; i--) {
    int everywhere = 1;
    for (int g = 1; g < G && everywhere; g++) {
      smoe_ckpt_info_t *u = NULL;
      int m = 0, has = 0;
      if (smoe_ckpt_list(s[g], &u, &m, err) != 0) {
        free(v);
        return -2;
      }
      for (int j = 0; j < m; j++) has |= u[j].step == v[i].step;
      free(u);
      everywhere = has;
    }
    if (everywhere) best = v[i].step;
  }
  free(v);
  return best;
}

/* Rank g's store, or when it is gone the copy the next rank keeps (said on stderr). */
static smoe_store_t *open_rank(const char *state, int g, smoe_err_t *err) {
  int copy;
  smoe_store_t *s = smoe_ckpt_open_rank(state, g, &copy, err);
  if (s && copy)
    fprintf(stderr, "swiftmoe: rank %d's state store is missing from %s: reading the copy the "
            "next rank kept (%s/" SMOE_CKPT_COPY_DIR "/rank-%d)\n", g, state, state, g);
  return s;
}

int smoe_ckpt_weights_open(smoe_ckpt_weights_t *w, const char *dir, int64_t step,
                           const smoe_config_t *c, smoe_err_t *err) {
  memset(w, 0, sizeof *w);
  char state[SMOE_PATHLEN + 16];
  struct stat sb;
  snprintf(state, sizeof state, "%s/state", dir);
  if (stat(state, &sb) != 0 || !S_ISDIR(sb.st_mode)) snprintf(state, sizeof state, "%s", dir);
  smoe_store_t *first = open_rank(state, 0, err);
  if (!first) return -1;
  /* the number of ranks: rank 0's newest manifest says it */
  smoe_ckpt_info_t *v = NULL;
  int n = 0;
  if (smoe_ckpt_list(first, &v, &n, err) != 0) {
    smoe_store_close(first);
    return -1;
  }
  if (n == 0) {
    smoe_store_close(first);
    return smoe_fail(err, "%s holds no checkpoint", state);
  }
  w->G = v[n - 1].G > 0 ? v[n - 1].G : 1;
  free(v);
  w->s = xcalloc((size_t)w->G, sizeof *w->s);
  w->r = xcalloc((size_t)w->G, sizeof *w->r);
  w->s[0] = first;
  for (int g = 1; g < w->G; g++)
    if (!(w->s[g] = open_rank(state, g, err))) {
      smoe_ckpt_weights_close(w);
      return -1;
    }
  if (step < 0) {
    step = newest_everywhere(w->s, w->G, err);
    if (step < -1) {
      smoe_ckpt_weights_close(w);
      return -1;
    }
    if (step < 0) {
      const int G = w->G;
      smoe_ckpt_weights_close(w);
      return smoe_fail(err, "%s: no checkpoint is complete on all %d ranks", state, G);
    }
  }
  w->step = step;
  for (int g = 0; g < w->G; g++)
    if (!(w->r[g] = smoe_ckpt_reader_open(w->s[g], g, step, err))) {
      smoe_ckpt_weights_close(w);
      return -1;
    }
  /* the run's shapes against this config's */
  const struct {
    const char *name;
    int64_t want;
  } shapes[] = {{"model.vocab_size", c->vocab_size}, {"model.dim", c->dim},
                {"model.n_layers", c->n_layers},     {"model.n_heads", c->n_heads},
                {"model.n_kv_heads", c->n_kv_heads}, {"moe.num_experts", c->num_experts},
                {"moe.expert_dim", c->expert_dim},   {"precision_bytes", (int64_t)sizeof(real)}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    int64_t got = smoe_ckpt_reader_shape(w->r[0], shapes[i].name);
    if (got != shapes[i].want) {
      smoe_fail(err, "%s: the checkpoint of step %lld has %s = %lld; the config says %lld", state,
                (long long)step, shapes[i].name, (long long)got, (long long)shapes[i].want);
      smoe_ckpt_weights_close(w);
      return -1;
    }
  }
  w->L = c->n_layers, w->E = c->num_experts;
  w->P = smoe_expert_numel(c->dim, c->expert_dim);
  w->chunk = smoe_ckpt_reader_shape(w->r[0], "replicated_optim") == 1
                 ? w->P
                 : (w->P + (size_t)w->G - 1) / (size_t)w->G;
  w->expert = xmalloc(sizeof(real) * w->P);
  return 0;
}

void smoe_ckpt_weights_close(smoe_ckpt_weights_t *w) {
  for (int g = 0; g < w->G; g++) {
    if (w->r) smoe_ckpt_reader_close(w->r[g]);
    if (w->s) smoe_store_close(w->s[g]);
  }
  free(w->r), free(w->s), free(w->expert);
  memset(w, 0, sizeof *w);
}

int smoe_ckpt_weights_dense(smoe_ckpt_weights_t *w, smoe_model_t *m, smoe_err_t *err) {
  const size_t n = m->n_dense, chunk = (n + (size_t)w->G - 1) / (size_t)w->G;
  real *host = xmalloc(sizeof(real) * (chunk + 1));
  int rc = 0;
  for (int g = 0; g < w->G && rc == 0; g++) { /* rank g: [g chunk, + its length) */
    size_t lo = (size_t)g * chunk < n ? (size_t)g * chunk : n, len = n - lo < chunk ? n - lo : chunk;
    rc = smoe_ckpt_reader_read(w->r[g], "dense", 0, len * sizeof(real), host, err);
    if (rc == 0) m->ops->to_device(m->dense_mem + lo, host, sizeof(real) * len);
  }
  free(host);
  const size_t le = (size_t)w->L * w->E;
  if (rc == 0)
    rc = smoe_ckpt_reader_read(w->r[0], "expert_bias", 0, sizeof(real) * le, m->expert_bias, err);
  if (rc == 0) m->ops->to_device(m->bias_dev, m->expert_bias, sizeof(real) * le);
  return rc;
}

const real *smoe_ckpt_weights_expert(smoe_ckpt_weights_t *w, int l, int e, smoe_err_t *err) {
  const size_t at = ((size_t)l * w->E + e) * w->chunk * sizeof(real);
  for (int g = 0; g < w->G; g++) { /* slice g: [g chunk, + its length) of the P */
    size_t lo = (size_t)g * w->chunk;
    if (lo >= w->P) break;
    size_t len = w->P - lo < w->chunk ? w->P - lo : w->chunk;
    if (smoe_ckpt_reader_read(w->r[g], "master", at, len * sizeof(real), w->expert + lo, err) != 0)
      return NULL;
    if (w->chunk == w->P) break; /* replicated: rank 0 holds every expert whole */
  }
  return w->expert;
}

int smoe_ckpt_weights_load(smoe_ckpt_weights_t *w, smoe_model_t *m, smoe_err_t *err) {
  if (m->G != 1) return smoe_fail(err, "loading a checkpoint's weights needs a world of one");
  if (smoe_ckpt_weights_dense(w, m, err) != 0) return -1;
  for (int l = 0; l < w->L; l++)
    for (int s = 0; s < m->S; s++) {
      int e = m->placement.slot_expert[(size_t)l * m->S + s];
      if (e < 0) continue;
      const real *x = smoe_ckpt_weights_expert(w, l, e, err);
      if (!x) return -1;
      m->ops->to_device(m->experts + ((size_t)l * m->S + s) * w->P, x, sizeof(real) * w->P);
    }
  return 0;
}
