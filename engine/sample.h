/* sample.h: text from a trained model. Autoregressive decoding with a KV
 * cache: each new token runs one position through the model on its op table
 * (backend.h, so wherever training runs, the GPU included), attending to the
 * keys and values cached for the positions before it; the prefix is never
 * recomputed. The MoE routing is training's: the router's top-k (with the
 * selection bias), gate weights renormalised over the k, every chosen
 * expert computed (no capacity, no drops).
 *
 * The model must be a world of one (G = 1: every expert in a slot of its
 * own, as smoe_model_open gives it); the context is the model's seq_len. */
#ifndef SMOE_SAMPLE_H
#define SMOE_SAMPLE_H

#include "model.h"

typedef struct {
  smoe_model_t *m;
  int n;              /* positions in the cache */
  real *kc, *vc;      /* (L, T, Hkv*hd) the cache, backend memory */
  real *x, *ln, *q, *atty, *mid, *att, *rstd, *probs, *lse, *gw, *xe, *ye, *h13, *act, *logits;
  int32_t *tok, *idx; /* backend memory: the token, the router's choices (K) */
  int *pos;           /* (K) rows of the chosen experts, backend memory */
  int32_t *idx_host;  /* (K) */
  int *pos_host, *offsets; /* (2K): rows, then slots; (S+1) */
  real *logits_host;  /* (V) */
  void *order;        /* (V) scratch of smoe_sample_pick */
} smoe_decoder_t;

/* Allocates the cache and buffers for m (G = 1). Returns 0, or -1 with err. */
int smoe_decoder_init(smoe_decoder_t *d, smoe_model_t *m, smoe_err_t *err);
void smoe_decoder_free(smoe_decoder_t *d);
/* Empties the cache (a new sequence). */
void smoe_decoder_reset(smoe_decoder_t *d);
/* Runs token at position d->n (< seq_len) and caches its keys and values;
 * returns the logits of the next token (host, V; valid until the next call). */
const real *smoe_decoder_step(smoe_decoder_t *d, int32_t token);

/* The next token from logits (V): temperature 0 = the argmax (ties: the
 * lower id); else a draw from softmax(logits / temperature) over the top_k
 * largest (top_k <= 0 or >= V: all), with *rng (splitmix64 state) advanced
 * once. order: V entries of scratch (smoe_decoder_t's). */
int32_t smoe_sample_pick(const real *logits, int V, double temperature, int top_k, uint64_t *rng,
                         void *order);

/* Byte-level text made safe to print, a byte at a time: printable ASCII,
 * newlines and tabs as they are, whole valid UTF-8 sequences as they are,
 * every other byte as \xNN. smoe_utf8_put appends what byte b lets out to
 * out (at most 16 characters, NUL-terminated) and returns its length;
 * smoe_utf8_flush lets out what is pending (a sequence cut short). */
typedef struct {
  unsigned char pend[4];
  int n, want;
} smoe_utf8_t;
int smoe_utf8_put(smoe_utf8_t *u, unsigned b, char *out);
int smoe_utf8_flush(smoe_utf8_t *u, char *out);

/* A sample for people: n tokens after prompt (n_prompt tokens) with the
 * decoder (from an empty cache), temperature and top_k as smoe_sample_pick,
 * the draws seeded by seed. Byte-level models (V = 256) give text (as
 * smoe_utf8_put makes it), others token ids; into out (cap bytes,
 * NUL-terminated, cut at cap). */
void smoe_sample_text(smoe_decoder_t *d, const int32_t *prompt, int n_prompt, int n,
                      double temperature, int top_k, uint64_t seed, char *out, size_t cap);

#endif
