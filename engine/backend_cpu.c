/* backend_cpu.c: the CPU backend's op table (backend.h): the ops of ops.h,
 * moe.h, optim.h and placement.h, and the row ops of dispatch. */
#include <string.h>

#include "backend.h"
#include "moe.h"
#include "ops.h"
#include "placement.h"

static void *cpu_alloc(size_t bytes) {
  return xcalloc(bytes ? bytes : 1, 1);
}

static void cpu_free(void *p) {
  free(p);
}

static void cpu_fill(real *x, real v, size_t n) {
  if (v == 0) {
    memset(x, 0, sizeof(real) * n);
    return;
  }
  for (size_t i = 0; i < n; i++) x[i] = v;
}

static void cpu_copy(real *dst, const real *src, size_t n) {
  memmove(dst, src, sizeof(real) * n);
}

static void cpu_bytes(void *dst, const void *src, size_t bytes) {
  memmove(dst, src, bytes);
}

/* staging on the CPU: the copy at once, in 1 MiB pieces over the threads */
static void cpu_stage_copy(void *dst, const void *src, size_t n) {
  const size_t piece = 1 << 20;
#pragma omp parallel for schedule(static)
  for (size_t at = 0; at < n; at += piece)
    memcpy((char *)dst + at, (const char *)src + at, n - at < piece ? n - at : piece);
}

static void cpu_host_pin(void *p, size_t bytes, int on) {
  (void)p, (void)bytes, (void)on;
}

static void cpu_nothing(void) {}

static void cpu_add(real *y, const real *x, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_histogram(int64_t *counts, const int32_t *x, int n, int n_bins) {
  memset(counts, 0, sizeof(int64_t) * (size_t)n_bins);
  for (int i = 0; i < n; i++)
    if (x[i] >= 0) counts[x[i]]++;
}

static void cpu_route_slots(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                            const int *slot_of_expert, int E, int NK) {
  (void)E;
  for (int a = 0; a < NK; a++) slot_of[a] = (!keep || keep[a]) ? slot_of_expert[idx[a]] : -1;
}

static int cpu_split_slots(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                           const int *first, const int *slots, int64_t *quota, int E, int NK,
                           smoe_arena_t *scratch) {
  const size_t mark = smoe_arena_mark(scratch);
  int *next = smoe_arena_zero(scratch, (size_t)E, sizeof(int)); /* e's first slot with quota */
  int rc = 0;
  for (int a = 0; a < NK && rc == 0; a++) {
    slot_of[a] = -1;
    if (keep && !keep[a]) continue;
    const int e = idx[a], n = first[e + 1] - first[e];
    while (next[e] < n && quota[slots[first[e] + next[e]]] == 0) next[e]++;
    if (next[e] == n) {
      rc = -1;
      break;
    }
    slot_of[a] = slots[first[e] + next[e]];
    quota[slot_of[a]]--;
  }
  smoe_arena_release(scratch, mark);
  return rc;
}

static void cpu_positions(int *pos, const int32_t *slot_of, const int64_t *start, int NK,
                          int n_slots, smoe_arena_t *scratch) {
  const size_t mark = smoe_arena_mark(scratch);
  int64_t *fill = smoe_arena_take(scratch, sizeof(int64_t) * (size_t)n_slots);
  memcpy(fill, start, sizeof(int64_t) * (size_t)n_slots);
  for (int a = 0; a < NK; a++) pos[a] = slot_of[a] >= 0 ? (int)fill[slot_of[a]]++ : -1;
  smoe_arena_release(scratch, mark);
}

static void cpu_permute_rows(real *out, const real *in, const int *map, int64_t rows, int D,
                             int scatter) {
  const size_t row = sizeof(real) * (size_t)D;
#pragma omp parallel for
  for (int64_t i = 0; i < rows; i++) {
    if (scatter)
      memcpy(out + (size_t)map[i] * D, in + (size_t)i * D, row);
    else
      memcpy(out + (size_t)i * D, in + (size_t)map[i] * D, row);
  }
}

const smoe_ops_t smoe_ops_cpu = {
    .name = "cpu",
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .fill = cpu_fill,
    .copy = cpu_copy,
    .add = cpu_add,
    .to_device = cpu_bytes,
    .to_host = cpu_bytes,
    .host_pin = cpu_host_pin,
    .stage_copy = cpu_stage_copy,
    .stage_wait = cpu_nothing,
    .stage_fence = cpu_nothing,
    .gemm = smoe_gemm,
    .matmul_forward = smoe_matmul_forward,
    .matmul_backward = smoe_matmul_backward,
    .embedding_forward = smoe_embedding_forward,
    .embedding_backward = smoe_embedding_backward,
    .rmsnorm_forward = smoe_rmsnorm_forward,
    .rmsnorm_backward = smoe_rmsnorm_backward,
    .rope_forward = smoe_rope_forward,
    .rope_backward = smoe_rope_backward,
    .attention_forward = smoe_attention_forward,
    .attention_decode = smoe_attention_decode,
    .attention_backward = smoe_attention_backward,
    .crossentropy = smoe_crossentropy,
    .router_forward = smoe_router_forward,
    .router_stats = smoe_router_stats,
    .router_backward = smoe_router_backward,
    .moe_gather = smoe_moe_gather,
    .moe_gather_backward = smoe_moe_gather_backward,
    .moe_combine = smoe_moe_combine,
    .moe_combine_backward = smoe_moe_combine_backward,
    .experts_forward = smoe_experts_forward,
    .experts_backward = smoe_experts_backward,
    .histogram = cpu_histogram,
    .capacity_keep = smoe_capacity_keep,
    .route_slots = cpu_route_slots,
    .split_slots = cpu_split_slots,
    .positions = cpu_positions,
    .permute_rows = cpu_permute_rows,
    .adamw = smoe_adamw_step,
    .sumsq = smoe_sumsq,
    .scale = smoe_scale,
};
