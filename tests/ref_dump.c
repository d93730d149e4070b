/* ref_dump: runs the double-precision engine's forward and backward on a
 * tiny model and random tokens and writes PREFIX.json + PREFIX.bin for
 * tests/ref_torch.py, which recomputes everything in PyTorch.
 *
 * usage: ref_dump PREFIX [--tied] [--bias] */
#include <cjson/cJSON.h>
#include <string.h>

#include "config.h"
#include "data.h"
#include "model.h"
#include "ops.h"

static FILE *bin;
static size_t offset;
static cJSON *tensors;

static void put(const char *name, const real *x, int ndim, const int *shape) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
  if (fwrite(x, sizeof(real), n, bin) != n) {
    perror("ref_dump: write");
    exit(1);
  }
  cJSON *t = cJSON_CreateObject();
  cJSON_AddStringToObject(t, "name", name);
  cJSON_AddItemToObject(t, "shape", cJSON_CreateIntArray(shape, ndim));
  cJSON_AddNumberToObject(t, "offset", (double)offset);
  cJSON_AddItemToArray(tensors, t);
  offset += n * sizeof(real);
}

int main(int argc, char **argv) {
  _Static_assert(sizeof(real) == 8, "ref_dump needs the double build");
  if (argc < 2) {
    fprintf(stderr, "usage: ref_dump PREFIX [--tied] [--bias]\n");
    return 2;
  }
  int tied = 0, bias = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--tied") == 0) tied = 1;
    else if (strcmp(argv[i], "--bias") == 0) bias = 1;
    else {
      fprintf(stderr, "ref_dump: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  smoe_config_t c;
  smoe_config_defaults(&c);
  c.vocab_size = 61, c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2;
  c.seq_len = 16, c.num_experts = 4, c.top_k = 2, c.expert_dim = 48, c.init_std = 0.1;
  c.aux_loss_coef = 0.1, c.z_loss_coef = 0.01, c.tie_word_embeddings = tied, c.seed = 7;
  const int B = 3, T = c.seq_len;
  smoe_model_t m;
  smoe_model_init(&m, &c, B);
  for (int i = 0; i < c.n_layers * c.num_experts; i++)
    m.expert_bias[i] = bias ? (real)(0.2 * ((double)(smoe_mix64(100 + i) % 1000) / 1000 - 0.5)) : 0;
  real tokf[3 * 17];
  int32_t tok[3 * 17];
  for (int i = 0; i < B * (T + 1); i++) tokf[i] = tok[i] = (int32_t)(smoe_mix64(7 + i) % 61);
  smoe_model_forward(&m, tok, B);
  smoe_model_zero_grad(&m);
  smoe_model_backward(&m);

  char path[1024];
  snprintf(path, sizeof path, "%s.bin", argv[1]);
  if (!(bin = fopen(path, "wb"))) {
    perror(path);
    return 1;
  }
  tensors = cJSON_CreateArray();
  char name[128];
  for (int i = 0; i < m.n_tensors; i++) {
    const smoe_tensor_t *t = &m.tensors[i];
    put(t->name, smoe_tensor_data(&m, t), t->ndim, t->shape);
    snprintf(name, sizeof name, "grad.%s", t->name);
    put(name, smoe_tensor_grad(&m, t), t->ndim, t->shape);
  }
  if (bias)
    for (int l = 0; l < c.n_layers; l++) {
      snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.expert_bias", l);
      put(name, m.expert_bias + (size_t)l * c.num_experts, 1, &c.num_experts);
    }
  put("tokens", tokf, 2, (int[]){B, T + 1});
  /* the forward leaves the loss's gradient in m.a.logits: recompute the logits */
  real *logits = xmalloc(sizeof(real) * (size_t)B * T * c.vocab_size);
  smoe_matmul_forward(logits, m.a.lnf, m.p.lm_head, B * T, c.dim, c.vocab_size);
  put("logits", logits, 3, (int[]){B, T, c.vocab_size});
  free(logits);
  fclose(bin);

  cJSON *o = cJSON_CreateObject(), *cfg = cJSON_AddObjectToObject(o, "config");
  cJSON_AddNumberToObject(cfg, "vocab_size", c.vocab_size);
  cJSON_AddNumberToObject(cfg, "dim", c.dim);
  cJSON_AddNumberToObject(cfg, "n_layers", c.n_layers);
  cJSON_AddNumberToObject(cfg, "n_heads", c.n_heads);
  cJSON_AddNumberToObject(cfg, "n_kv_heads", c.n_kv_heads);
  cJSON_AddNumberToObject(cfg, "seq_len", T);
  cJSON_AddNumberToObject(cfg, "batch", B);
  cJSON_AddNumberToObject(cfg, "num_experts", c.num_experts);
  cJSON_AddNumberToObject(cfg, "top_k", c.top_k);
  cJSON_AddNumberToObject(cfg, "expert_dim", c.expert_dim);
  cJSON_AddNumberToObject(cfg, "rope_theta", c.rope_theta);
  cJSON_AddNumberToObject(cfg, "rms_norm_eps", c.rms_norm_eps);
  cJSON_AddBoolToObject(cfg, "tie_word_embeddings", tied);
  cJSON_AddNumberToObject(cfg, "aux_loss_coef", c.aux_loss_coef);
  cJSON_AddNumberToObject(cfg, "z_loss_coef", c.z_loss_coef);
  cJSON_AddBoolToObject(cfg, "expert_bias", bias);
  cJSON_AddStringToObject(o, "dtype", "F64");
  cJSON_AddItemToObject(o, "tensors", tensors);
  cJSON *loss = cJSON_AddObjectToObject(o, "loss");
  cJSON_AddNumberToObject(loss, "total", m.loss);
  cJSON_AddNumberToObject(loss, "ce", m.ce);
  cJSON_AddNumberToObject(loss, "aux", m.aux);
  cJSON_AddNumberToObject(loss, "z", m.z);
  char *s = cJSON_Print(o);
  snprintf(path, sizeof path, "%s.json", argv[1]);
  FILE *f = fopen(path, "w");
  if (!f || fputs(s, f) < 0 || fclose(f) != 0) {
    perror(path);
    return 1;
  }
  free(s);
  cJSON_Delete(o);
  smoe_model_free(&m);
  return 0;
}
