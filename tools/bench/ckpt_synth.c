/* ckpt_synth: a run folder holding one complete checkpoint of a model too
 * big to train here, for `swiftmoe ckpt reshard` to be measured on: G
 * stores with the saver's layout (smoe_saver_layout) filled with
 * weight-like values (small normals, the moments of their magnitude), a
 * placement record, config.ini. No training: the state is synthetic.
 *
 * usage: ckpt_synth OUT_DIR [--G 4] [--dim 1024] [--expert-dim 3584] [--layers 4]
 *                  [--experts 8]
 * OUT_DIR must not exist. Prints each rank's state size. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "model.h"
#include "policy.h"
#include "saver.h"

int main(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: ckpt_synth OUT_DIR [--G N] [--dim N] [--expert-dim N] [--layers N] "
            "[--experts N]\n");
    return 2;
  }
  smoe_config_t c;
  smoe_config_defaults(&c);
  int G = 4;
  c.dim = 1024, c.expert_dim = 3584, c.n_layers = 4, c.num_experts = 8;
  for (int i = 2; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--G")) G = v;
    else if (!strcmp(argv[i], "--dim")) c.dim = v;
    else if (!strcmp(argv[i], "--expert-dim")) c.expert_dim = v;
    else if (!strcmp(argv[i], "--layers")) c.n_layers = v;
    else if (!strcmp(argv[i], "--experts")) c.num_experts = v;
    else {
      fprintf(stderr, "ckpt_synth: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  smoe_err_t err;
  if (smoe_config_validate(&c, &err) != 0) {
    fprintf(stderr, "ckpt_synth: %s\n", err.msg);
    return 1;
  }
  const char *out = argv[1];
  char state[SMOE_PATHLEN + 16], path[SMOE_PATHLEN + 32];
  snprintf(state, sizeof state, "%s/state", out);
  struct stat sb;
  if (stat(out, &sb) == 0 || mkdir(out, 0777) != 0 || mkdir(state, 0777) != 0) {
    fprintf(stderr, "ckpt_synth: %s exists or cannot be made\n", out);
    return 1;
  }
  snprintf(path, sizeof path, "%s/config.ini", out);
  FILE *f = fopen(path, "w");
  if (!f || smoe_config_write(&c, f) != 0 || fclose(f) != 0) return 1;
  smoe_model_plan_t mp;
  if (smoe_model_plan(&c, G, c.global_batch_size / G, &mp, &err) != 0) {
    fprintf(stderr, "ckpt_synth: %s\n", err.msg);
    return 1;
  }
  const int L = c.n_layers, E = c.num_experts, S = mp.S;
  smoe_placement_t pl;
  smoe_policy_t pol;
  smoe_placement_init(&pl, L, E, G, S);
  if (smoe_policy_init(&pol, c.policy, L, E, G, S, c.seed, 0, &err) != 0 ||
      smoe_policy_first(&pol, &pl, &err) != 0) {
    fprintf(stderr, "ckpt_synth: %s\n", err.msg);
    return 1;
  }
  int64_t *loads = xcalloc((size_t)L * E, sizeof(int64_t));
  uint64_t rng = 12345;
  smoe_ckpt_opts_t o = smoe_saver_opts(&c);
  for (int g = 0; g < G; g++) {
    smoe_ckpt_region_t r[SMOE_SAVER_REGIONS];
    smoe_ckpt_shape_t shapes[SMOE_SAVER_SHAPES];
    smoe_saver_layout(&c, G, g, S, 0, mp.n_dense, r, shapes);
    size_t bytes = 0;
    for (int i = 0; i < SMOE_SAVER_REGIONS; i++) {
      r[i].data = xcalloc(r[i].bytes + 1, 1);
      bytes += r[i].bytes;
      if (i >= 6) continue; /* bias, loads, position: zeros */
      float *x = r[i].data;
      for (size_t k = 0; k < r[i].bytes / 4; k++) { /* weights ~ N(0, 0.02); moments of them */
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = ((rng >> 11) + 0.5) / 9007199254740992.0, v = 0.02 * sqrt(-2 * log(u));
        x[k] = (float)(i == 2 || i == 5 ? v * v * 1e-3 : i == 1 || i == 4 ? v * 1e-2 : v);
      }
    }
    int64_t *pos = r[8].data;
    pos[0] = (int64_t)c.seed, pos[1] = 1, pos[2] = 0, pos[3] = 0;
    smoe_ckpt_t *ck = smoe_ckpt_open(state, g, r, SMOE_SAVER_REGIONS, shapes, SMOE_SAVER_SHAPES,
                                     smoe_saver_config_digest(&c), &o, &err);
    int rc = ck ? 0 : -1;
    if (rc == 0) {
      smoe_ckpt_stage(ck, 1);
      smoe_ckpt_write(ck);
      rc = smoe_ckpt_finish(ck, &err);
    }
    if (rc == 0) rc = smoe_ckpt_agreed(ck, 1, &err);
    smoe_plog_t rec = {L, E, G, S, 1, loads, pl.replicas, pl.slot_expert, g, NULL};
    if (rc == 0) rc = smoe_ckpt_log(ck, &rec, &err);
    smoe_ckpt_close(ck);
    for (int i = 0; i < SMOE_SAVER_REGIONS; i++) free(r[i].data);
    if (rc != 0) {
      fprintf(stderr, "ckpt_synth: %s\n", err.msg);
      return 1;
    }
    printf("rank %d: %.1f MB of state\n", g, bytes / 1e6);
  }
  smoe_policy_free(&pol);
  smoe_placement_free(&pl);
  free(loads);
  return 0;
}
