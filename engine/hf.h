/* hf.h: HF transformers' Mixtral format: config.json <-> the [model] and
 * [moe] keys, and the model's tensor table <-> safetensors files with HF
 * names, so weights move between swiftmoe and MixtralForCausalLM (and what
 * is built on it) in both directions. */
#ifndef SMOE_HF_H
#define SMOE_HF_H

#include "config.h"
#include "model.h"
#include "safetensors.h"

/* Writes dir/config.json for c, with torch_dtype for dtype. */
int smoe_hf_write_config(const smoe_config_t *c, smoe_dtype_t dtype, const char *dir,
                         smoe_err_t *err);

/* Reads dir/config.json over c's [model] and [moe] architecture keys. Each
 * key whose value changed is appended to `changed` ("model.dim: 128 -> 64",
 * one per line; pass NULL to skip) for the caller's warning. Rejects configs
 * the engine cannot compute exactly (another model_type or activation, a
 * head_dim other than hidden_size / num_attention_heads, a sliding window
 * shorter than model.seq_len), naming the field. Returns 0 or -1. */
int smoe_hf_read_config(smoe_config_t *c, const char *dir, char *changed, size_t changed_len,
                        smoe_err_t *err);

/* Expert (l, e)'s P values for the writer (valid until the next call). */
typedef const real *(*smoe_expert_src_fn)(void *arg, int l, int e);
/* Values [off, off + n) of expert (l, e), as the loader reads them. */
typedef void (*smoe_expert_put_fn)(void *arg, int l, int e, size_t off, const real *x, size_t n);

/* Writes every tensor of the model's table to path, as dtype, streaming:
 * the experts one at a time, from src (called once per expert, in table
 * order: layer by layer, expert by expert), or with src NULL from this
 * rank's slots (then they must hold every expert: a world of one). */
int smoe_hf_save(const smoe_model_t *m, const char *path, smoe_dtype_t dtype,
                 smoe_expert_src_fn src, void *arg, smoe_err_t *err);

/* Loads every tensor of the model's table from dir/model.safetensors, or from
 * the files named by dir/model.safetensors.index.json (a sharded checkpoint):
 * dense tensors into the model, each expert tensor into the slots holding it
 * and, when `also` is given, to also(arg, ...) (the optimizer shards); one
 * expert tensor is in memory at a time. A tensor missing, unexpected, or of
 * the wrong shape or dtype is an error naming it. Returns 0 or -1. */
int smoe_hf_load(smoe_model_t *m, const char *dir, smoe_expert_put_fn also, void *arg,
                 smoe_err_t *err);

#endif
