/* hf.c: HF Mixtral config.json and safetensors weights. */
#define _POSIX_C_SOURCE 200809L
#include "hf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moe.h"

/* config.json field -> swiftmoe key, for the architecture only. */
static const struct {
  const char *hf, *key;
  const char *hf_default; /* MixtralConfig's default when the field is absent; NULL: required */
} fields[] = {
    {"vocab_size", "model.vocab_size", NULL},
    {"hidden_size", "model.dim", NULL},
    {"num_hidden_layers", "model.n_layers", NULL},
    {"num_attention_heads", "model.n_heads", NULL},
    {"num_key_value_heads", "model.n_kv_heads", NULL}, /* absent: = num_attention_heads */
    {"rope_theta", "model.rope_theta", "1000000"},
    {"rms_norm_eps", "model.rms_norm_eps", "1e-05"},
    {"tie_word_embeddings", "model.tie_word_embeddings", "false"},
    {"num_local_experts", "moe.num_experts", NULL},
    {"num_experts_per_tok", "moe.top_k", NULL},
    {"intermediate_size", "moe.expert_dim", NULL},
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static int write_text(const char *path, const char *text, smoe_err_t *err) {
  char tmp[SMOE_PATHLEN + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return smoe_fail(err, "cannot write %s: %s", tmp, strerror(errno));
  int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
  }
  return 0;
}

int smoe_hf_write_config(const smoe_config_t *c, smoe_dtype_t dtype, const char *dir,
                         smoe_err_t *err) {
  cJSON *o = cJSON_CreateObject();
  cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("MixtralForCausalLM"));
  cJSON_AddStringToObject(o, "model_type", "mixtral");
  cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
  cJSON_AddNumberToObject(o, "hidden_size", c->dim);
  cJSON_AddNumberToObject(o, "intermediate_size", c->expert_dim);
  cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
  cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
  cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
  cJSON_AddNumberToObject(o, "head_dim", c->dim / c->n_heads);
  cJSON_AddStringToObject(o, "hidden_act", "silu");
  cJSON_AddNumberToObject(o, "max_position_embeddings", c->seq_len);
  cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
  cJSON_AddNumberToObject(o, "rms_norm_eps", c->rms_norm_eps);
  cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
  cJSON_AddNumberToObject(o, "num_local_experts", c->num_experts);
  cJSON_AddNumberToObject(o, "num_experts_per_tok", c->top_k);
  cJSON_AddNumberToObject(o, "router_aux_loss_coef", c->aux_loss_coef);
  cJSON_AddBoolToObject(o, "output_router_logits", 0);
  cJSON_AddNumberToObject(o, "router_jitter_noise", 0);
  cJSON_AddNumberToObject(o, "initializer_range", c->init_std);
  cJSON_AddNullToObject(o, "sliding_window");
  cJSON_AddNumberToObject(o, "attention_dropout", 0);
  cJSON_AddBoolToObject(o, "use_cache", 1);
  cJSON_AddStringToObject(o, "torch_dtype", dtype == SMOE_BF16 ? "bfloat16" : "float32");
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  char path[SMOE_PATHLEN];
  snprintf(path, sizeof path, "%s/config.json", dir);
  int rc = write_text(path, s, err);
  free(s);
  return rc;
}

/* The resolved [model] and [moe] lines of c ("model.dim = 64"), for diffing. */
static char *arch_lines(const smoe_config_t *c) {
  char *text = NULL, *out = xcalloc(1, 8192);
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  smoe_config_write(c, m);
  fclose(m);
  char section[32] = "";
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '[') sscanf(line, "[%31[^]]", section);
    if (line[0] == ';' || line[0] == '[' || !strchr(line, '=')) continue;
    if (strcmp(section, "model") && strcmp(section, "moe")) continue;
    size_t used = strlen(out);
    snprintf(out + used, 8192 - used, "%s.%s\n", section, line);
  }
  free(text);
  return out;
}

/* Appends "key: old -> new" for each line of after that differs from before. */
static void describe_changes(const char *before, const char *after, char *changed, size_t cap) {
  if (!changed) return;
  changed[0] = '\0';
  const char *b = before, *a = after;
  while (*a && *b) {
    size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
    if (la != lb || strncmp(a, b, la) != 0) {
      const char *eq_a = memchr(a, '=', la), *eq_b = memchr(b, '=', lb);
      size_t used = strlen(changed);
      snprintf(changed + used, cap - used, "%.*s:%.*s ->%.*s\n", (int)(eq_a - a - 1), a,
               (int)(lb - (size_t)(eq_b - b) - 1), eq_b + 1, (int)(la - (size_t)(eq_a - a) - 1),
               eq_a + 1);
    }
    a += la + (a[la] == '\n');
    b += lb + (b[lb] == '\n');
  }
}

int smoe_hf_read_config(smoe_config_t *c, const char *dir, char *changed, size_t changed_len,
                        smoe_err_t *err) {
  char path[SMOE_PATHLEN];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = smoe_read_text(path, "a config", err);
  if (!text) return -1;
  cJSON *o = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return smoe_fail(err, "%s is not a JSON object", path);
  }
  smoe_config_t next = *c;
  int rc = 0;
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
  if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "mixtral") != 0)
    rc = smoe_fail(err, "%s: model_type is %s; swiftmoe reads \"mixtral\" configs", path,
                   cJSON_IsString(mt) ? mt->valuestring : "missing");
  else if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
    rc = smoe_fail(err, "%s: hidden_act must be \"silu\" (Mixtral's); the engine has no other",
                   path);
  for (int i = 0; rc == 0 && i < N_FIELDS; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, fields[i].hf);
    char value[64];
    if (!v && strcmp(fields[i].hf, "num_key_value_heads") == 0)
      v = cJSON_GetObjectItemCaseSensitive(o, "num_attention_heads");
    if (cJSON_IsBool(v))
      snprintf(value, sizeof value, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v))
      snprintf(value, sizeof value, "%.17g", v->valuedouble);
    else if (!v && fields[i].hf_default)
      snprintf(value, sizeof value, "%s", fields[i].hf_default);
    else {
      rc = smoe_fail(err, "%s: %s is %s; it must be a number", path, fields[i].hf,
                     v ? "not a number" : "missing");
      break;
    }
    char assign[128];
    snprintf(assign, sizeof assign, "%s=%s", fields[i].key, value);
    if (smoe_config_set(&next, assign, err) != 0) {
      char inner[SMOE_ERRLEN];
      snprintf(inner, sizeof inner, "%s", err->msg);
      rc = smoe_fail(err, "%s: %s = %s: %s", path, fields[i].hf, value, inner);
    }
  }
  const cJSON *hd = cJSON_GetObjectItemCaseSensitive(o, "head_dim");
  if (rc == 0 && hd && !cJSON_IsNull(hd) &&
      !(cJSON_IsNumber(hd) && next.n_heads > 0 && hd->valuedouble == next.dim / next.n_heads))
    rc = smoe_fail(err, "%s: head_dim must be hidden_size / num_attention_heads = %d here; the "
                   "engine has no other head size", path, next.dim / next.n_heads);
  const cJSON *sw = cJSON_GetObjectItemCaseSensitive(o, "sliding_window");
  if (rc == 0 && sw && !cJSON_IsNull(sw) &&
      !(cJSON_IsNumber(sw) && sw->valuedouble >= next.seq_len))
    rc = smoe_fail(err, "%s: sliding_window is shorter than model.seq_len = %d; the engine has no "
                   "sliding-window attention, so set model.seq_len <= sliding_window", path,
                   next.seq_len);
  cJSON_Delete(o);
  if (rc == 0 && smoe_config_validate(&next, err) != 0) {
    char inner[SMOE_ERRLEN];
    snprintf(inner, sizeof inner, "%s", err->msg);
    rc = smoe_fail(err, "%s: %s", path, inner);
  }
  if (rc) return rc;
  char *before = arch_lines(c), *after = arch_lines(&next);
  describe_changes(before, after, changed, changed_len);
  free(before), free(after);
  *c = next;
  return 0;
}

typedef struct {
  const smoe_model_t *m;
  smoe_expert_src_fn src;
  void *arg;
  int le;            /* the expert last fetched (l * E + e), or -1 */
  const real *w;     /* its P values (host memory) */
  real *host;        /* a dense tensor or an expert copied from the backend */
} save_t;

/* Entry i's values in host memory: dense from the model, an expert's from
 * src (once per expert: its w1, w3 and w2 are consecutive entries) or from
 * the slots. */
static const real *fetch_tensor(void *arg, int i) {
  save_t *s = arg;
  const smoe_model_t *m = s->m;
  const smoe_tensor_t *t = &m->tensors[i];
  const size_t P = smoe_expert_numel(m->dims.D, m->dims.F);
  if (t->buffer == SMOE_BUF_DENSE) {
    s->le = -1;
    m->ops->to_host(s->host, smoe_tensor_data(m, t), sizeof(real) * t->numel);
    return s->host;
  }
  int le = t->layer * m->dims.E + t->expert;
  if (le != s->le) {
    s->w = s->src ? s->src(s->arg, t->layer, t->expert) : NULL;
    if (!s->src) {
      m->ops->to_host(s->host, smoe_model_expert(m, t->layer, t->expert), sizeof(real) * P);
      s->w = s->host;
    }
    s->le = le;
  }
  return s->w + t->offset % P;
}

/* The most values of one tensor, or of one expert */
static size_t largest(const smoe_model_t *m) {
  size_t n = smoe_expert_numel(m->dims.D, m->dims.F);
  for (int i = 0; i < m->n_tensors; i++) n = m->tensors[i].numel > n ? m->tensors[i].numel : n;
  return n;
}

int smoe_hf_save(const smoe_model_t *m, const char *path, smoe_dtype_t dtype,
                 smoe_expert_src_fn src, void *arg, smoe_err_t *err) {
  smoe_st_entry_t *e = xcalloc((size_t)m->n_tensors, sizeof *e);
  save_t s = {m, src, arg, -1, NULL, xmalloc(sizeof(real) * largest(m))};
  for (int i = 0; i < m->n_tensors; i++) {
    const smoe_tensor_t *t = &m->tensors[i];
    e[i].name = t->name;
    e[i].ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
    e[i].fetch = fetch_tensor, e[i].arg = &s;
  }
  static const char *const metadata[] = {"format", "pt", "producer", "swiftmoe", NULL};
  int rc = smoe_st_write(path, e, m->n_tensors, dtype, metadata, err);
  free(e);
  free(s.host);
  return rc;
}

/* The safetensors files of a checkpoint folder: model.safetensors, or the
 * distinct files of model.safetensors.index.json's weight_map. */
static int open_files(const char *dir, smoe_st_t ***files, int *n, smoe_err_t *err) {
  char path[SMOE_PATHLEN];
  struct stat sb;
  *files = NULL, *n = 0;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (stat(path, &sb) == 0) {
    *files = xcalloc(1, sizeof **files);
    if (!((*files)[0] = smoe_st_open(path, err))) return -1;
    *n = 1;
    return 0;
  }
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  if (stat(path, &sb) != 0)
    return smoe_fail(err, "%s holds neither model.safetensors nor model.safetensors.index.json",
                     dir);
  char *text = smoe_read_text(path, "a config", err);
  if (!text) return -1;
  cJSON *o = cJSON_Parse(text);
  free(text);
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(o, "weight_map"), *v;
  if (!cJSON_IsObject(map)) {
    cJSON_Delete(o);
    return smoe_fail(err, "%s: no weight_map object", path);
  }
  char **names = xcalloc((size_t)cJSON_GetArraySize(map) + 1, sizeof(char *));
  int rc = 0;
  cJSON_ArrayForEach(v, map) {
    if (!cJSON_IsString(v) || strchr(v->valuestring, '/')) {
      rc = smoe_fail(err, "%s: weight_map['%s'] must be a file name in %s", path, v->string, dir);
      break;
    }
    int seen = 0;
    for (int i = 0; i < *n; i++) seen |= strcmp(names[i], v->valuestring) == 0;
    if (!seen) names[(*n)++] = v->valuestring;
  }
  *files = xcalloc((size_t)*n + 1, sizeof **files);
  for (int i = 0; rc == 0 && i < *n; i++) {
    char file[SMOE_PATHLEN];
    snprintf(file, sizeof file, "%s/%s", dir, names[i]);
    if (!((*files)[i] = smoe_st_open(file, err))) rc = -1;
  }
  free(names);
  cJSON_Delete(o);
  return rc;
}

int smoe_hf_load(smoe_model_t *m, const char *dir, smoe_expert_put_fn also, void *arg,
                 smoe_err_t *err) {
  smoe_st_t **files;
  int nf, rc = open_files(dir, &files, &nf, err);
  int *found = xcalloc((size_t)m->n_tensors, sizeof(int));
  const size_t P = smoe_expert_numel(m->dims.D, m->dims.F);
  /* a tensor is read here, then sent to the model (an expert's to the
   * slots holding it) */
  real *one = xmalloc(sizeof(real) * largest(m));
  for (int f = 0; rc == 0 && f < nf; f++)
    for (int i = 0; rc == 0 && i < smoe_st_count(files[f]); i++) {
      const smoe_st_tensor_t *s = smoe_st_tensor(files[f], i);
      const smoe_tensor_t *t = smoe_model_find(m, s->name);
      if (!t) {
        rc = smoe_fail(err, "%s: unexpected tensor '%s' (not part of this Mixtral config)", dir,
                       s->name);
        break;
      }
      int same = s->ndim == t->ndim;
      for (int d = 0; same && d < t->ndim; d++) same = s->shape[d] == t->shape[d];
      if (!same) {
        char got[96] = "", want[64] = "";
        for (int d = 0; d < s->ndim; d++)
          snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                   (long long)s->shape[d]);
        for (int d = 0; d < t->ndim; d++)
          snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", d ? ", " : "",
                   t->shape[d]);
        rc = smoe_fail(err, "%s: tensor '%s' has shape [%s]; the config needs [%s]", dir, s->name,
                       got, want);
        break;
      }
      if (found[t - m->tensors]) { /* in two shard files: one copy would silently win */
        rc = smoe_fail(err, "%s: tensor '%s' appears in two files", dir, s->name);
        break;
      }
      found[t - m->tensors] = 1;
      if (t->buffer == SMOE_BUF_DENSE) {
        if ((rc = smoe_st_read(files[f], s, one, err)) == 0)
          m->ops->to_device(smoe_tensor_data(m, t), one, sizeof(real) * t->numel);
      } else if ((rc = smoe_st_read(files[f], s, one, err)) == 0) {
        smoe_model_put_expert(m, t->layer, t->expert, t->offset % P, one, t->numel);
        if (also) also(arg, t->layer, t->expert, t->offset % P, one, t->numel);
      }
    }
  for (int i = 0; rc == 0 && i < m->n_tensors; i++)
    if (!found[i]) rc = smoe_fail(err, "%s: tensor '%s' is missing", dir, m->tensors[i].name);
  free(found);
  free(one);
  for (int f = 0; f < nf; f++) smoe_st_close(files[f]);
  free(files);
  return rc;
}
