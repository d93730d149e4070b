/* sample.c: decoding with a KV cache (sample.h). */
#include "sample.h"


#include <math.h>
#include <stdio.h>
#include <string.h>

#include "moe.h"

int smoe_decoder_init(smoe_decoder_t *d, smoe_model_t *m, smoe_err_t *err) {
  memset(d, 0, sizeof *d);
  if (m->G != 1)
    return smoe_fail(err, "sampling runs on one process; this model is spread over %d", m->G);
  const smoe_dims_t *md = &m->dims;
  const smoe_ops_t *o = m->ops;
  const int D = md->D, T = md->T, K = md->K, F = md->F, E = md->E, S = m->S;
  const size_t kd = (size_t)md->Hkv * md->hd, qd = (size_t)md->H * md->hd;
  d->m = m;
  d->kc = o->alloc(sizeof(real) * (size_t)md->L * T * kd);
  d->vc = o->alloc(sizeof(real) * (size_t)md->L * T * kd);
  d->x = o->alloc(sizeof(real) * D);
  d->ln = o->alloc(sizeof(real) * D);
  d->mid = o->alloc(sizeof(real) * D);
  d->q = o->alloc(sizeof(real) * qd);
  d->atty = o->alloc(sizeof(real) * qd);
  d->att = o->alloc(sizeof(real) * (size_t)md->H * T);
  d->rstd = o->alloc(sizeof(real));
  d->probs = o->alloc(sizeof(real) * E);
  d->lse = o->alloc(sizeof(real));
  d->gw = o->alloc(sizeof(real) * K);
  d->xe = o->alloc(sizeof(real) * (size_t)K * D);
  d->ye = o->alloc(sizeof(real) * (size_t)K * D);
  d->h13 = o->alloc(sizeof(real) * (size_t)K * 2 * F);
  d->act = o->alloc(sizeof(real) * (size_t)K * F);
  d->logits = o->alloc(sizeof(real) * md->V);
  d->tok = o->alloc(sizeof(int32_t));
  d->idx = o->alloc(sizeof(int32_t) * K);
  d->pos = o->alloc(sizeof(int) * K);
  d->idx_host = xmalloc(sizeof(int32_t) * K);
  d->pos_host = xmalloc(sizeof(int) * 2 * (size_t)K); /* rows, then the slots */
  d->offsets = xmalloc(sizeof(int) * ((size_t)S + 1));
  d->logits_host = xmalloc(sizeof(real) * md->V);
  d->order = xmalloc(sizeof(int32_t) * md->V);
  o->to_device(m->bias_dev, m->expert_bias, sizeof(real) * (size_t)md->L * E);
  return 0;
}

void smoe_decoder_free(smoe_decoder_t *d) {
  if (!d->m) return;
  const smoe_ops_t *o = d->m->ops;
  void *dev[] = {d->kc,  d->vc,  d->x,   d->ln,  d->mid, d->q,   d->atty, d->att,
                 d->rstd, d->probs, d->lse, d->gw, d->xe,  d->ye, d->h13,  d->act,
                 d->logits, d->tok, d->idx, d->pos};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) o->free(dev[i]);
  free(d->idx_host), free(d->pos_host), free(d->offsets), free(d->logits_host), free(d->order);
  memset(d, 0, sizeof *d);
}

void smoe_decoder_reset(smoe_decoder_t *d) { d->n = 0; }

/* The MoE block of layer l on the one position: d->x <- mid + sum over the
 * chosen experts of gate weight x expert(ln). */
static void moe_one(smoe_decoder_t *d, int l) {
  smoe_model_t *m = d->m;
  const smoe_ops_t *o = m->ops;
  const int D = m->dims.D, E = m->dims.E, K = m->dims.K, F = m->dims.F, S = m->S;
  const size_t P = smoe_expert_numel(D, F);
  o->matmul_forward(d->probs, d->ln, m->p.gate + (size_t)l * E * D, 1, D, E);
  o->router_forward(d->probs, d->lse, d->idx, d->gw, m->bias_dev + (size_t)l * E, 1, E, K);
  o->to_host(d->idx_host, d->idx, sizeof(int32_t) * K);
  /* the chosen experts' slots; rows in slot order (K distinct experts) */
  const int *se = m->placement.slot_expert + (size_t)l * S;
  int *slot = d->pos_host + K;
  for (int k = 0; k < K; k++)
    for (int s = 0; s < S; s++)
      if (se[s] == d->idx_host[k]) slot[k] = s;
  for (int s = 0; s <= S; s++) d->offsets[s] = 0;
  for (int k = 0; k < K; k++) d->offsets[slot[k] + 1]++;
  for (int s = 0; s < S; s++) d->offsets[s + 1] += d->offsets[s];
  for (int k = 0; k < K; k++) d->pos_host[k] = d->offsets[slot[k]]; /* one row per slot */
  o->to_device(d->pos, d->pos_host, sizeof(int) * K);
  o->moe_gather(d->xe, d->ln, d->pos, 1, K, D);
  o->experts_forward(d->ye, d->h13, d->act, d->xe, m->experts + (size_t)l * S * P, d->offsets, S,
                     D, F);
  o->copy(d->x, d->mid, (size_t)D);
  o->moe_combine(d->x, d->ye, d->gw, d->pos, 1, K, D);
}

const real *smoe_decoder_step(smoe_decoder_t *d, int32_t token) {
  smoe_model_t *m = d->m;
  const smoe_ops_t *o = m->ops;
  const smoe_dims_t *md = &m->dims;
  const smoe_dense_t *p = &m->p;
  const int D = md->D, T = md->T, H = md->H, Hkv = md->Hkv, hd = md->hd, qd = H * hd,
            kd = Hkv * hd, t = d->n;
  if (t >= T) {
    fprintf(stderr, "swiftmoe: internal error: decoding position %d of a %d-token context\n", t, T);
    abort();
  }
  o->to_device(d->tok, &token, sizeof token);
  o->embedding_forward(d->x, d->tok, p->embed, 1, D);
  const real *cos_t = m->rope_cos + (size_t)t * (hd / 2), *sin_t = m->rope_sin + (size_t)t * (hd / 2);
  for (int l = 0; l < md->L; l++) {
    real *kc = d->kc + (size_t)l * T * kd, *vc = d->vc + (size_t)l * T * kd;
    o->rmsnorm_forward(d->ln, d->rstd, d->x, p->ln1 + (size_t)l * D, 1, D, md->eps);
    o->matmul_forward(d->q, d->ln, p->wq + (size_t)l * qd * D, 1, D, qd);
    o->matmul_forward(kc + (size_t)t * kd, d->ln, p->wk + (size_t)l * kd * D, 1, D, kd);
    o->matmul_forward(vc + (size_t)t * kd, d->ln, p->wv + (size_t)l * kd * D, 1, D, kd);
    o->rope_forward(d->q, cos_t, sin_t, 1, 1, H, hd); /* position t: its row of the tables */
    o->rope_forward(kc + (size_t)t * kd, cos_t, sin_t, 1, 1, Hkv, hd);
    o->attention_decode(d->atty, d->att, d->q, kc, vc, t + 1, H, Hkv, hd);
    o->copy(d->mid, d->x, (size_t)D);
    o->gemm(0, 1, 1, D, qd, 1, d->atty, qd, p->wo + (size_t)l * D * qd, qd, 1, d->mid, D);
    o->rmsnorm_forward(d->ln, d->rstd, d->mid, p->ln2 + (size_t)l * D, 1, D, md->eps);
    moe_one(d, l);
  }
  o->rmsnorm_forward(d->ln, d->rstd, d->x, p->lnf, 1, D, md->eps);
  o->matmul_forward(d->logits, d->ln, p->lm_head, 1, D, md->V);
  o->to_host(d->logits_host, d->logits, sizeof(real) * md->V);
  d->n++;
  return d->logits_host;
}

/* ------------------------------------------------------------ choosing */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static const real *g_logits; /* qsort's comparison context (one caller at a time) */
static int by_logit(const void *a, const void *b) {
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (g_logits[i] != g_logits[j]) return g_logits[i] > g_logits[j] ? -1 : 1;
  return (i > j) - (i < j);
}

int32_t smoe_sample_pick(const real *logits, int V, double temperature, int top_k, uint64_t *rng,
                         void *order) {
  if (temperature <= 0) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  int32_t *ix = order;
  int n = top_k > 0 && top_k < V ? top_k : V;
  for (int32_t i = 0; i < V; i++) ix[i] = i;
  g_logits = logits;
  qsort(ix, (size_t)V, sizeof *ix, by_logit);
  double mx = logits[ix[0]], sum = 0;
  for (int i = 0; i < n; i++) sum += exp(((double)logits[ix[i]] - mx) / temperature);
  double u = (double)(next_u64(rng) >> 11) / 9007199254740992.0 * sum, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += exp(((double)logits[ix[i]] - mx) / temperature);
    if (u < acc) return ix[i];
  }
  return ix[n - 1];
}

/* ------------------------------------------------------------ text */

int smoe_utf8_flush(smoe_utf8_t *u, char *out) {
  int k = 0;
  for (int i = 0; i < u->n; i++) k += sprintf(out + k, "\\x%02x", u->pend[i]);
  u->n = u->want = 0;
  out[k] = '\0';
  return k;
}

int smoe_utf8_put(smoe_utf8_t *u, unsigned b, char *out) {
  int k = 0;
  out[0] = '\0';
  if (u->n > 0) {
    if (b >= 0x80 && b <= 0xbf) {
      u->pend[u->n++] = (unsigned char)b;
      if (u->n < u->want) return 0;
      memcpy(out, u->pend, (size_t)u->n);
      k = u->n;
      u->n = u->want = 0;
      out[k] = '\0';
      return k;
    }
    k = smoe_utf8_flush(u, out); /* cut short: not text */
  }
  if (b == '\n' || b == '\t' || (b >= 0x20 && b < 0x7f))
    out[k++] = (char)b;
  else if (b >= 0xc2 && b <= 0xf4)
    u->pend[0] = (unsigned char)b, u->n = 1, u->want = b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
  else
    k += sprintf(out + k, "\\x%02x", b);
  out[k] = '\0';
  return k;
}

void smoe_sample_text(smoe_decoder_t *d, const int32_t *prompt, int n_prompt, int n,
                      double temperature, int top_k, uint64_t seed, char *out, size_t cap) {
  const int V = d->m->dims.V;
  const real *logits = NULL;
  smoe_decoder_reset(d);
  for (int i = 0; i < n_prompt; i++) logits = smoe_decoder_step(d, prompt[i]);
  smoe_utf8_t u = {{0}, 0, 0};
  char piece[24];
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    int32_t next = smoe_sample_pick(logits, V, temperature, top_k, &seed, d->order);
    int k = V == 256 ? smoe_utf8_put(&u, (unsigned)next, piece)
                     : snprintf(piece, sizeof piece, "%s%d", i ? " " : "", next);
    if (i + 1 == n && V == 256) k += smoe_utf8_flush(&u, piece + k);
    if (len + (size_t)k + 1 > cap) break;
    memcpy(out + len, piece, (size_t)k + 1);
    len += (size_t)k;
    if (i + 1 < n) logits = smoe_decoder_step(d, next);
  }
}
