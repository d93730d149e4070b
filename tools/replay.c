/* replay.c: `swiftmoe ckpt replay`: every logged plan re-planned by the
 * engine's own policy code from the logged loads (the determinism audit a
 * restart relies on), or what other policies would have done with the same
 * loads (whatif.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "plans.h"
#include "policy.h"
#include "saver.h"
#include "whatif.h"

/* The first slot where two placements of one step differ; 0 if none. */
static int first_difference(const int *a, const int *b, int L, int G, int S, int *l, int *g,
                            int *s) {
  for (size_t i = 0; i < (size_t)L * G * S; i++)
    if (a[i] != b[i]) {
      *l = (int)(i / ((size_t)G * S)), *g = (int)(i / S % G), *s = (int)(i % S);
      return 1;
    }
  return 0;
}

/* Re-plans every record from the previous one's loads with the run's policy
 * and config; exit status 0 when every plan is reproduced, 1 naming the
 * first that is not. */
static int audit(const char *dir, const smoe_config_t *c, int64_t lo, int64_t hi) {
  smoe_stores_t st;
  smoe_plans_t p;
  smoe_err_t err;
  smoe_policy_kind_t kind;
  if (smoe_policy_kind(c->policy, &kind, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
    return 1;
  }
  const double t0 = smoe_now();
  if (smoe_stores_open(dir, &st, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
    return 1;
  }
  /* config.ini against the config the newest checkpoint was written with */
  smoe_ckpt_info_t *man = NULL;
  int nm = 0;
  if (smoe_ckpt_list(st.s[0], &man, &nm, &err) == 0 && nm > 0 &&
      man[nm - 1].config_digest != smoe_saver_config_digest(c))
    printf(
        "warning: %s/config.ini differs from the config the checkpoint of step %lld was "
        "written with; the audit replays config.ini's\n",
        dir, (long long)man[nm - 1].step);
  free(man);
  /* the load-aware slots use every rank's counts; the others only the loads */
  const int need_src = kind == SMOE_POLICY_SWIFTMOE;
  int rc = smoe_plans_load(&st, lo, hi, need_src ? 2 : 0, &p, &err);
  smoe_stores_close(&st);
  if (rc != 0) {
    fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
    return 1;
  }
  const double t_read = smoe_now() - t0;
  const int L = p.L, E = p.E, G = p.G, S = p.S;
  smoe_policy_t pol;
  if (smoe_policy_init(&pol, c->policy, L, E, G, S, c->seed, c->load_ema, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
    smoe_plans_free(&p);
    return 1;
  }
  smoe_policy_shadow_slots(&pol, G > 1 ? c->shadow_slots : 0); /* (the records hold no shadows) */
  /* a plan depends on the placement before it (static, capacity keep it)
   * and, with an EMA, on every load since step 1: those need the records
   * before them */
  const int stateless =
      kind == SMOE_POLICY_RANDOM ||
      ((kind == SMOE_POLICY_SWIFTMOE || kind == SMOE_POLICY_SYMI) && c->load_ema == 0);
  if (c->load_ema > 0 && p.steps[0] != 1 && lo <= p.steps[0]) {
    fprintf(stderr,
            "swiftmoe ckpt replay: placement.load_ema = %g makes every plan depend on every "
            "step since step 1, and the log starts at step %lld (older records were pruned, or "
            "--steps starts later): nothing can be audited exactly\n",
            c->load_ema, (long long)p.steps[0]);
    smoe_policy_free(&pol);
    smoe_plans_free(&p);
    return 1;
  }
  smoe_placement_t now, next;
  smoe_placement_init(&now, L, E, G, S);
  smoe_placement_init(&next, L, E, G, S);
  const size_t lgs = (size_t)L * G * S, le = (size_t)L * E;
  int64_t checked = 0, skipped = 0;
  int bad = 0;
  for (int i = 0; i < p.n && !bad; i++) {
    const int64_t step = p.steps[i];
    const int chained = i > 0 && p.steps[i - 1] == step - 1;
    if (chained) {
      memcpy(now.slot_expert, p.slot_expert + (i - 1) * lgs, sizeof(int) * lgs);
      memcpy(now.replicas, p.replicas + (i - 1) * le, sizeof(int) * le);
    } else if (step == 1) {
      if (smoe_policy_first(&pol, &now, &err) != 0) { /* step 0's, as the run made it */
        fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
        bad = 1;
        break;
      }
      if (c->init_from[0]) { /* planned from another run's log: not replayable here */
        skipped++;
        continue;
      }
    } else if (!stateless) {
      skipped++; /* the placement it followed is not in the window */
      continue;
    }
    smoe_policy_next(&pol, p.loads + i * le, p.src ? p.src + (size_t)i * L * G * E : NULL, step,
                     &now, &next);
    int l, g, s;
    if (first_difference(next.slot_expert, p.slot_expert + i * lgs, L, G, S, &l, &g, &s)) {
      printf(
          "MISMATCH step %lld, layer %d, rank %d, slot %d: the log holds expert %d, the replay "
          "plans expert %d\n",
          (long long)step, l, g, s, p.slot_expert[i * lgs + ((size_t)l * G + g) * S + s],
          next.slot_expert[((size_t)l * G + g) * S + s]);
      bad = 1;
      break;
    }
    checked++;
  }
  const double t_all = smoe_now() - t0;
  printf(
      "%s: %lld plan%s of steps %lld..%lld replayed with policy %s (L %d, E %d, G %d, S %d): "
      "%s%s; %.3f s (reading %.3f s)\n",
      dir, (long long)checked, checked == 1 ? "" : "s", (long long)p.steps[0],
      (long long)p.steps[p.n - 1], c->policy, L, E, G, S,
      bad ? "a plan differs" : "every one reproduced exactly", "", t_all, t_read);
  if (skipped)
    printf("(%lld record%s not checked: the placement before %s is not in the log%s)\n",
           (long long)skipped, skipped == 1 ? "" : "s", skipped == 1 ? "it" : "them",
           c->init_from[0] ? ", or step 0 was planned from another run (placement.init_from)" : "");
  smoe_placement_free(&now), smoe_placement_free(&next);
  smoe_policy_free(&pol);
  smoe_plans_free(&p);
  return bad ? 1 : 0;
}

/* Bytes of one element of the run's training state (float build: 4). */
#define ELEM 4.0

static int what_if(const char *dir, const smoe_config_t *c, int64_t lo, int64_t hi,
                   smoe_whatif_policy_t *pols, int np, int json) {
  smoe_stores_t st;
  smoe_plans_t p;
  smoe_err_t err;
  if (smoe_stores_open(dir, &st, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
    return 1;
  }
  int rc = smoe_plans_load(&st, lo, hi, 2, &p, &err);
  smoe_stores_close(&st);
  if (rc != 0) {
    fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
    return 1;
  }
  const double D = c->dim, F = c->expert_dim;
  smoe_whatif_log_t log = {p.n,
                           p.L,
                           p.E,
                           p.G,
                           c->top_k,
                           (int64_t)c->global_batch_size / p.G * c->seq_len,
                           p.src,
                           D * ELEM,
                           3 * D * F * ELEM,
                           3 * 3 * D * F * 4.0};
  if (!json) {
    printf(
        "%s: what each policy would have done on the loads of steps %lld..%lld (L %d, E %d, "
        "G %d, K %d; %lld tokens per rank per step)\n",
        dir, (long long)p.steps[0], (long long)p.steps[p.n - 1], p.L, p.E, p.G, c->top_k,
        (long long)log.tokens_per_rank);
    printf("%-22s %7s %7s %7s %8s %10s %10s %10s %8s %10s %8s %8s\n", "policy", "imb", "p95",
           "max", "dropped", "dispatch", "weights", "opt.state", "churn", "peak", "shadows", "time");
    printf("%-22s %7s %7s %7s %8s %10s %10s %10s %8s %10s %8s %8s\n", "", "mean", "", "", "",
           "MB/step", "MB/step", "MB/step", "slots", "extra MB", "/step", "s");
  }
  rc = 0;
  for (int k = 0; k < np; k++) {
    smoe_whatif_result_t r;
    double t0 = smoe_now();
    if (smoe_whatif_run(&log, &pols[k], &r, &err) != 0) {
      fprintf(stderr, "swiftmoe ckpt replay: %s: %s\n", pols[k].label, err.msg);
      rc = 1;
      continue;
    }
    double dt = smoe_now() - t0, MB = 1024.0 * 1024.0;
    if (json)
      printf(
          "{\"policy\":\"%s\",\"steps\":%lld,\"imbalance_mean\":%.6f,\"imbalance_p95\":%.6f,"
          "\"imbalance_max\":%.6f,\"dropped_fraction\":%.6f,\"dispatch_bytes_per_step\":%.0f,"
          "\"weights_bytes_per_step\":%.0f,\"state_bytes_per_step\":%.0f,\"churn_slots_per_step\":"
          "%.3f,\"peak_extra_bytes\":%.0f,\"shadows_per_step\":%.3f,\"shadow_bytes_per_step\":"
          "%.0f,\"seconds\":%.3f}\n",
          pols[k].label, (long long)r.steps, r.imb_mean, r.imb_p95, r.imb_max, r.dropped_frac,
          r.dispatch_bytes, r.weights_bytes + r.shadow_bytes, r.state_bytes, r.churn,
          r.peak_extra_bytes, r.shadows, r.shadow_bytes, dt);
    else
      printf("%-22s %7.3f %7.3f %7.3f %7.2f%% %10.1f %10.1f %10.1f %8.2f %10.1f %8.2f %8.2f\n",
             pols[k].label, r.imb_mean, r.imb_p95, r.imb_max, 100 * r.dropped_frac,
             r.dispatch_bytes / MB, (r.weights_bytes + r.shadow_bytes) / MB, r.state_bytes / MB,
             r.churn, r.peak_extra_bytes / MB, r.shadows, dt);
  }
  if (!json)
    printf(
        "imb: per step, the busiest rank's tokens over the mean, averaged over layers; "
        "dispatch: token rows to\nother ranks and back; weights: expert weights sent to "
        "slots (shadows' weights and gradients included); opt.state: optimizer state\nmigrated "
        "with moved replicas; churn: slots per layer whose expert changed; peak: the most\nextra "
        "memory one rank held for moves; shadows: same-step shadows per step, all layers\n"
        "(whatif.h says how each is counted)\n");
  smoe_plans_free(&p);
  return rc;
}

static const char *replay_usage =
    "usage: swiftmoe ckpt replay DIR [--policy P]... [--set placement.KEY=VALUE]...\n"
    "                            [--steps A:B] [--format table|json]\n\n"
    "Without --policy or --set: the audit. The run's own policy and config (DIR/config.ini)\n"
    "re-plan every step from the logged loads with the engine's planner, and every logged\n"
    "plan must come out exactly: exit 0 with the count checked, or exit 1 naming the first\n"
    "step, layer, rank and slot that differ.\n\n"
    "With --policy (repeatable, side by side) or --set: what that policy would have done on\n"
    "the same loads (every rank's counts per expert, from every rank's store):\n"
    "  static                one replica per expert, fixed\n"
    "  capacity[:F]          static, tokens over ceil(F K N / E) per expert per rank dropped\n"
    "  symi[:F]              the SYMI paper's policy (the engine's symi)\n"
    "  swiftmoe[:S=..,ema=..,shadow=H,shadow_rows=N]\n"
    "                        this engine's policy, with other slots or smoothing; shadow=H:\n"
    "                        H same-step shadow slots per rank, a shadow placed when it saves\n"
    "                        more than N token rows on the slowest rank (default 5333)\n"
    "  eplb[:N]              DeepSeek's EPLB: counts and packing from a moving average of\n"
    "                        the loads, re-planned every N steps (default 100)\n"
    "  flexmoe[:K]           FlexMoE: replicas own their optimizer state and move with it;\n"
    "                        re-planned when imbalanced or every K steps (default 50)\n"
    "--set placement.KEY=VALUE changes the run's own policy's settings for a what-if.\n";

int smoe_replay_command(int argc, char **argv) {
  const char *dir = NULL;
  int64_t lo = 0, hi = -1;
  int json = 0, np = 0, nset = 0;
  smoe_whatif_policy_t *pols = xcalloc((size_t)argc + 1, sizeof *pols);
  const char **sets = xcalloc((size_t)argc + 1, sizeof *sets);
  int rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    smoe_err_t err;
    if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
      printf("%s", replay_usage);
      free(pols), free(sets);
      return 0;
    }
    if (strncmp(o, "--", 2) != 0) {
      if (dir) {
        fprintf(stderr, "swiftmoe ckpt replay: extra argument %s: expected one DIR\n", o);
        rc = 2;
      }
      dir = o;
      continue;
    }
    if (!v) {
      fprintf(stderr, "swiftmoe ckpt replay: option %s needs a value\n", o);
      rc = 2;
      break;
    }
    i++;
    if (strcmp(o, "--policy") == 0) {
      if (smoe_whatif_parse(v, &pols[np++], &err) != 0) {
        fprintf(stderr, "swiftmoe ckpt replay: --policy: %s\n", err.msg);
        rc = 2;
      }
    } else if (strcmp(o, "--set") == 0) {
      if (strncmp(v, "placement.", 10) != 0) {
        fprintf(stderr,
                "swiftmoe ckpt replay: --set %s: only placement.KEY=VALUE can change in a "
                "replay\n",
                v);
        rc = 2;
      }
      sets[nset++] = v;
    } else if (strcmp(o, "--steps") == 0) {
      char *end;
      long long a = 0, b = -1;
      const char *x = v;
      if (*x != ':') a = strtoll(x, &end, 10), x = end;
      if (*x == ':' && x[1])
        b = strtoll(x + 1, &end, 10), x = end;
      else if (*x == ':')
        x++;
      if (*x || a < 0 || (b >= 0 && b < a)) {
        fprintf(stderr, "swiftmoe ckpt replay: --steps %s: expected A:B with 0 <= A <= B\n", v);
        rc = 2;
      }
      lo = a, hi = b;
    } else if (strcmp(o, "--format") == 0) {
      if (strcmp(v, "table") && strcmp(v, "json")) {
        fprintf(stderr, "swiftmoe ckpt replay: --format %s: expected table or json\n", v);
        rc = 2;
      }
      json = strcmp(v, "json") == 0;
    } else {
      fprintf(stderr,
              "swiftmoe ckpt replay: unknown option %s (see 'swiftmoe ckpt replay --help')\n", o);
      rc = 2;
    }
  }
  if (rc == 0 && !dir) {
    fprintf(stderr, "swiftmoe ckpt replay: missing DIR, a run folder or its state folder\n");
    rc = 2;
  }
  smoe_config_t c;
  smoe_err_t err;
  if (rc == 0) {
    int found = smoe_plans_config(dir, &c, &err);
    if (found < 0) {
      fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
      rc = 1;
    } else if (found == 0) {
      fprintf(stderr,
              "swiftmoe ckpt replay: no config.ini in %s or the folder above it: the replay "
              "needs the run's config (its policy, slots, seed, load_ema, batch)\n",
              dir);
      rc = 1;
    }
  }
  for (int k = 0; k < nset && rc == 0; k++)
    if (smoe_config_set(&c, sets[k], &err) != 0 || smoe_config_validate(&c, &err) != 0) {
      fprintf(stderr, "swiftmoe ckpt replay: --set %s: %s\n", sets[k], err.msg);
      rc = 2;
    }
  if (rc == 0 && np == 0 && nset == 0) {
    rc = audit(dir, &c, lo, hi);
  } else if (rc == 0) {
    if (nset) { /* the run's own policy with the changed settings */
      char spec[96];
      smoe_policy_kind_t kind;
      if (smoe_policy_kind(c.policy, &kind, &err) != 0) {
        fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
        rc = 1;
      } else {
        if (kind == SMOE_POLICY_SWIFTMOE && c.slots_per_rank > 0)
          snprintf(spec, sizeof spec, "swiftmoe:S=%d,ema=%g", c.slots_per_rank, c.load_ema);
        else if (kind == SMOE_POLICY_SWIFTMOE)
          snprintf(spec, sizeof spec, "swiftmoe:ema=%g", c.load_ema);
        else if (kind == SMOE_POLICY_CAPACITY || kind == SMOE_POLICY_SYMI)
          snprintf(spec, sizeof spec, "%s:%g", c.policy, c.capacity_factor);
        else
          snprintf(spec, sizeof spec, "%s", c.policy);
        if (smoe_whatif_parse(spec, &pols[np], &err) != 0) {
          fprintf(stderr, "swiftmoe ckpt replay: %s\n", err.msg);
          rc = 1;
        } else {
          np++;
        }
      }
    }
    if (rc == 0) rc = what_if(dir, &c, lo, hi, pols, np, json);
  }
  free(pols), free(sets);
  return rc;
}
