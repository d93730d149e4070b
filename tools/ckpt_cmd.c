/* ckpt_cmd.c: `swiftmoe ckpt`: what a run's state stores hold, read-only (a
 * job may be running: nothing is locked or written).
 *
 *   ls DIR       one line per checkpoint step, over every rank's store
 *   verify DIR   re-read every checkpoint with its chain, check every checksum,
 *                every placement record and every gradient-log record, and
 *                replay the log between checkpoints against the later one
 *   plans DIR    the placement log: summary, table, csv, json, heatmaps (plans.c)
 *   replay DIR   the log's plans audited, or other policies on its loads (replay.c)
 *
 * DIR is a run folder (its state/ is used) or a checkpoint.dir. */
#define _POSIX_C_SOURCE 200809L
#include "ckpt_cmd.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "glog.h"
#include "plans.h"
#include "reshard.h"

/* Every rank's manifests; steps in ascending order over all ranks. */
typedef struct {
  smoe_ckpt_info_t **v;
  int *n;
} lists_t;

/* The manifests of every rank's store (copies = 0), or of the copies kept of
 * them (copies = 1: none for a rank without one, or whose copy stands in for
 * its store). */
static int list_all(smoe_stores_t *st, lists_t *ls, int copies) {
  ls->v = xcalloc((size_t)st->n, sizeof *ls->v);
  ls->n = xcalloc((size_t)st->n, sizeof *ls->n);
  int rc = 0;
  for (int r = 0; r < st->n; r++) {
    smoe_err_t err;
    smoe_store_t *s = copies ? (st->from_copy[r] ? NULL : st->copy[r]) : st->s[r];
    if (s && smoe_ckpt_list(s, &ls->v[r], &ls->n[r], &err) != 0) {
      fprintf(stderr, "swiftmoe ckpt: %srank %d: %s\n", copies ? "the copy of " : "", r, err.msg);
      rc = -1;
    }
  }
  return rc;
}

static void free_lists(lists_t *ls, int n) {
  for (int r = 0; r < n; r++) free(ls->v[r]);
  free(ls->v), free(ls->n);
}

/* The smallest step > after in any list, or -1. */
static int64_t next_step(const lists_t *ls, int n, int64_t after) {
  int64_t best = -1;
  for (int r = 0; r < n; r++)
    for (int i = 0; i < ls->n[r]; i++)
      if (ls->v[r][i].step > after && (best < 0 || ls->v[r][i].step < best)) best = ls->v[r][i].step;
  return best;
}

static const smoe_ckpt_info_t *find(const lists_t *ls, int r, int64_t step) {
  for (int i = 0; i < ls->n[r]; i++)
    if (ls->v[r][i].step == step) return &ls->v[r][i];
  return NULL;
}

/* `ls`, the gradient log: each rank's first and last logged step, records
 * (and whether they run without a gap) and stored bytes. */
static int ls_log(smoe_stores_t *st) {
  int rc = 0, header = 0, gaps = 0;
  for (int r = 0; r < st->n; r++) {
    if (st->from_copy[r]) continue; /* copies hold no log */
    int64_t *steps;
    int n;
    uint64_t bytes;
    smoe_err_t err;
    if (smoe_glog_steps(st->s[r], &steps, &n, &bytes, &err) != 0) {
      fprintf(stderr, "swiftmoe ckpt: rank %d: %s\n", r, err.msg);
      rc = 1;
      continue;
    }
    if (n > 0 && !header++)
      printf("\ngradient log\n%8s  %10s  %10s  %8s  %12s  %10s\n", "rank", "first step",
             "last step", "records", "stored bytes", "per step");
    if (n > 0 && steps[n - 1] - steps[0] + 1 != n) gaps++;
    if (n > 0)
      printf("%8d  %10lld  %10lld  %8d%s  %12llu  %10.0f\n", r, (long long)steps[0],
             (long long)steps[n - 1], n, steps[n - 1] - steps[0] + 1 == n ? " " : "*",
             (unsigned long long)bytes, (double)bytes / n);
    free(steps);
  }
  if (gaps) printf("* with gaps: a replay stops at the first\n");
  return rc;
}

static int cmd_ls(smoe_stores_t *st) {
  lists_t ls, cp;
  int rc = list_all(st, &ls, 0) | list_all(st, &cp, 1);
  printf("%8s  %-18s  %-9s  %-7s  %-8s  %12s  %12s  %6s  %8s\n", "step", "kind", "ranks", "copies",
         "complete", "raw bytes", "stored", "ratio", "write s");
  int count = 0;
  for (int64_t step = next_step(&ls, st->n, -1); step >= 0; step = next_step(&ls, st->n, step)) {
    int have = 0, global = 0;
    uint64_t raw = 0, stored = 0;
    double wmax = 0;
    const smoe_ckpt_info_t *any = NULL;
    for (int r = 0; r < st->n; r++) {
      const smoe_ckpt_info_t *c = find(&ls, r, step);
      if (!c) continue;
      any = c;
      have++;
      global |= c->global;
      raw += c->raw_bytes, stored += c->stored_bytes;
      if (c->write_s > wmax) wmax = c->write_s;
    }
    char kind[40];
    if (any->base_step < 0)
      snprintf(kind, sizeof kind, "full");
    else
      snprintf(kind, sizeof kind, "delta %d of %lld", any->chain_len, (long long)any->full_step);
    char ranks[24], copies[24] = "-";
    const int G = any->G > 0 ? any->G : st->n;
    snprintf(ranks, sizeof ranks, "%d/%d", have, G);
    int copied = 0, lost = 0;
    for (int r = 0; r < st->n; r++) copied += find(&cp, r, step) != NULL, lost += st->from_copy[r];
    if (copied || lost) snprintf(copies, sizeof copies, "%d/%d", copied, G);
    if (lost) smoe_append(copies, sizeof copies, "*");
    /* every rank wrote it: globally complete (agreed, or not yet recorded) */
    const char *state = have == G ? (global ? "global" : "all") : "partial";
    printf("%8lld  %-18s  %-9s  %-7s  %-8s  %12llu  %12llu  %5.2fx  %8.3f\n", (long long)step,
           kind, ranks, copies, state, (unsigned long long)raw, (unsigned long long)stored,
           stored ? (double)raw / (double)stored : 0.0, wmax);
    count++;
  }
  if (count == 0) printf("(no checkpoints)\n");
  for (int r = 0; r < st->n; r++)
    if (st->from_copy[r])
      printf("* rank %d's store is missing: its checkpoints are read from the copy the next rank "
             "kept; a resume on the same ranks restores it from there\n", r);
  free_lists(&ls, st->n);
  free_lists(&cp, st->n);
  return ls_log(st) | (rc ? 1 : 0);
}

static void plan_fault(void *ctx, int64_t step, const char *msg) {
  (void)step; /* msg names it */
  printf("FAULT %s\n", msg);
  ++*(int *)ctx;
}

/* Re-reads every checkpoint of the lists (of the stores, or of their
 * copies); returns the faults, counting the checkpoints in *checked. */
static int verify_lists(smoe_stores_t *st, const lists_t *ls, int copies, int *checked) {
  int faults = 0;
  for (int r = 0; r < st->n; r++)
    for (int i = 0; i < ls->n[r]; i++) {
      smoe_err_t err;
      ++*checked;
      const char *from = copies || st->from_copy[r] ? " (its copy)" : "";
      if (smoe_ckpt_verify(copies ? st->copy[r] : st->s[r], ls->v[r][i].step, &err) != 0) {
        printf("FAULT%s %s\n", from, err.msg);
        faults++;
      } else {
        printf("ok    rank %d%s, checkpoint of step %lld (%d chunks%s)\n", r, from,
               (long long)ls->v[r][i].step, ls->v[r][i].n_chunks,
               ls->v[r][i].base_step < 0 ? "" : ", with its delta chain");
      }
    }
  return faults;
}

/* `verify`, the gradient log: every record read and checked, and between
 * two checkpoints of a rank with every record in between, a replay from the
 * first that must give the second's bytes exactly. Returns the records. */
static int64_t verify_log(smoe_stores_t *st, const lists_t *ls, int *faults) {
  int64_t records = 0;
  for (int r = 0; r < st->n; r++) {
    int64_t *steps;
    int n;
    smoe_err_t err;
    if (st->from_copy[r]) continue;
    if (smoe_glog_steps(st->s[r], &steps, &n, NULL, &err) != 0) {
      printf("FAULT rank %d: %s\n", r, err.msg);
      ++*faults;
      continue;
    }
    for (int i = 0; i < n; i++) {
      smoe_glog_rec_t rec;
      if (smoe_glog_read(st->s[r], steps[i], &rec, &err) != 1) {
        printf("FAULT %s\n", err.msg);
        ++*faults;
      } else {
        records++;
        smoe_glog_rec_free(&rec);
      }
    }
    if (n > 0)
      printf("ok    rank %d, gradient log: %d records, steps %lld..%lld\n", r, n,
             (long long)steps[0], (long long)steps[n - 1]);
    for (int i = 0; i + 1 < ls->n[r]; i++) {
      const int64_t b = ls->v[r][i].step, c = ls->v[r][i + 1].step;
      int have = 0; /* records b+1..c all present */
      for (int j = 0; j < n; j++) have += steps[j] > b && steps[j] <= c;
      if (have != c - b) continue;
      if (smoe_glog_verify_replay(st->s[r], r, b, c, &err) != 0) {
        printf("FAULT %s\n", err.msg);
        ++*faults;
      } else {
        printf("ok    rank %d, the gradient log replays the checkpoint of step %lld to that of "
               "step %lld bit for bit\n", r, (long long)b, (long long)c);
      }
    }
    free(steps);
  }
  return records;
}

static int cmd_verify(smoe_stores_t *st) {
  lists_t ls, cp;
  int faults = (list_all(st, &ls, 0) | list_all(st, &cp, 1)) != 0, checked = 0;
  faults += verify_lists(st, &ls, 0, &checked) + verify_lists(st, &cp, 1, &checked);
  free_lists(&cp, st->n);
  for (int r = 0; r < st->n; r++) {
    smoe_err_t err;
    if (smoe_ckpt_check_markers(st->s[r], &err) != 0) {
      printf("FAULT rank %d: %s\n", r, err.msg);
      faults++;
    }
  }
  /* the placement log: every record, and the one each checkpoint resumes with */
  int64_t records = 0;
  for (int r = 0; r < st->n; r++) {
    smoe_err_t err;
    int64_t n = smoe_plog_verify(st->s[r], plan_fault, &faults, &err);
    if (n < 0) {
      printf("FAULT rank %d: %s\n", r, err.msg);
      faults++;
    }
    records += n > 0 ? n : 0;
    for (int i = 0; i < ls.n[r]; i++) {
      smoe_plog_t p;
      if (smoe_plog_read(st->s[r], ls.v[r][i].step, &p, &err) == 0) {
        printf("FAULT rank %d: no placement record of step %lld, which its checkpoint resumes "
               "with\n", r, (long long)ls.v[r][i].step);
        faults++;
      }
      smoe_plog_free(&p);
    }
  }
  int64_t logged = verify_log(st, &ls, &faults);
  free_lists(&ls, st->n);
  printf("%d checkpoint%s, %lld placement record%s and %lld gradient-log record%s on %d rank%s "
         "checked: %d fault%s\n", checked, checked == 1 ? "" : "s", (long long)records,
         records == 1 ? "" : "s", (long long)logged, logged == 1 ? "" : "s", st->n,
         st->n == 1 ? "" : "s", faults, faults == 1 ? "" : "s");
  return faults ? 1 : 0;
}

/* `ckpt reshard SRC DST --world M [--slots S] [--step N]`: the checkpoint for
 * M ranks in a new run folder DST (its config.ini, the metrics up to the
 * step, state/ with M stores). */
static int cmd_reshard(int argc, char **argv) {
  const char *src = NULL, *dst = NULL;
  int M = 0, slots = -1;
  int64_t step = -1;
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
      printf("usage: swiftmoe ckpt reshard SRC DST --world M [--slots S] [--step N]\n\n"
             "Re-slices a run's checkpoint (the newest complete on every rank, or step N)\n"
             "for M ranks into a new run folder DST: DST/state holds M stores with that\n"
             "checkpoint, complete, and DST/config.ini the run's config (with --slots S as\n"
             "placement.slots_per_rank). Continue with: mpirun -np M swiftmoe train --out\n"
             "DST --resume auto (with the run's --config/--set). SRC is read only.\n");
      return 0;
    }
    if (strncmp(o, "--", 2) != 0) {
      if (!src) src = o;
      else if (!dst) dst = o;
      else {
        fprintf(stderr, "swiftmoe ckpt reshard: extra argument %s\n", o);
        return 2;
      }
      continue;
    }
    if (!v) {
      fprintf(stderr, "swiftmoe ckpt reshard: %s needs a value\n", o);
      return 2;
    }
    i++;
    char *end;
    long long x = strtoll(v, &end, 10);
    int bad = *v == '\0' || *end || x < 1 || x > 1 << 20;
    if (strcmp(o, "--world") == 0 && !bad) M = (int)x;
    else if (strcmp(o, "--slots") == 0 && !bad) slots = (int)x;
    else if (strcmp(o, "--step") == 0 && !bad) step = x;
    else {
      fprintf(stderr, "swiftmoe ckpt reshard: %s %s: %s\n", o, v,
              bad ? "expected an integer >= 1" : "unknown option (--world, --slots, --step)");
      return 2;
    }
  }
  if (!src || !dst || M < 1) {
    fprintf(stderr, "swiftmoe ckpt reshard: expected SRC DST --world M (see --help)\n");
    return 2;
  }
  smoe_config_t c;
  smoe_err_t err;
  int found = smoe_plans_config(src, &c, &err);
  if (found <= 0) {
    fprintf(stderr, "swiftmoe ckpt reshard: %s\n", found < 0 ? err.msg : "no config.ini in SRC "
            "or the folder above it: resharding needs the run's config");
    return 1;
  }
  if (slots > 0) c.slots_per_rank = slots;
  c.ckpt_dir[0] = '\0'; /* the new run keeps its stores in DST/state */
  struct stat sb;
  if (stat(dst, &sb) == 0) {
    fprintf(stderr, "swiftmoe ckpt reshard: %s exists; give a new folder\n", dst);
    return 1;
  }
  char state_src[SMOE_PATHLEN + 16], state_dst[SMOE_PATHLEN + 16], path[SMOE_PATHLEN + 32];
  snprintf(state_src, sizeof state_src, "%s/state", src);
  if (stat(state_src, &sb) != 0) snprintf(state_src, sizeof state_src, "%s", src);
  snprintf(state_dst, sizeof state_dst, "%s/state", dst);
  if (mkdir(dst, 0777) != 0 || mkdir(state_dst, 0777) != 0) {
    fprintf(stderr, "swiftmoe ckpt reshard: cannot create %s\n", state_dst);
    return 1;
  }
  smoe_reshard_result_t r;
  int rc = smoe_reshard(&c, state_src, state_dst, M, step, -1, &r, &err);
  if (rc == 0) { /* the run folder around the stores */
    snprintf(path, sizeof path, "%s/config.ini", dst);
    FILE *f = fopen(path, "w");
    rc = !f || smoe_config_write(&c, f) != 0;
    if (f && fclose(f) != 0) rc = 1;
    if (rc) smoe_fail(&err, "cannot write %s", path);
    char line[1 << 16], in[SMOE_PATHLEN + 32];
    snprintf(in, sizeof in, "%s/metrics.jsonl", src);
    FILE *a = fopen(in, "r");
    snprintf(path, sizeof path, "%s/metrics.jsonl", dst);
    FILE *b = a ? fopen(path, "w") : NULL;
    while (a && b && fgets(line, sizeof line, a)) { /* the lines up to the step */
      long long s = -1;
      const char *at = strstr(line, "\"step\":");
      if (at) s = strtoll(at + 7, NULL, 10);
      if (s >= 0 && s <= r.step) fputs(line, b);
    }
    if (a) fclose(a);
    if (b) fclose(b);
  }
  if (rc != 0) {
    fprintf(stderr, "swiftmoe ckpt reshard: %s\n", err.msg);
    rmdir(state_dst), rmdir(dst); /* empty: smoe_reshard removed its stores */
    return 1;
  }
  printf("resharded the checkpoint of step %lld from %d to %d ranks (%d slots each) into %s in "
         "%.2f s: %.1f MB read, %.1f MB written, streamed through %.1f MB of buffers\n",
         (long long)r.step, r.G_from, r.G_to, r.S_to, dst, r.seconds, r.bytes_read / 1e6,
         r.bytes_written / 1e6, r.buffers / 1e6);
  return 0;
}

int smoe_ckpt_command(int argc, char **argv) {
  static const char *usage =
      "usage: swiftmoe ckpt ls|verify DIR\n"
      "       swiftmoe ckpt plans DIR [options]   (see 'swiftmoe ckpt plans --help')\n"
      "       swiftmoe ckpt replay DIR [options]  (see 'swiftmoe ckpt replay --help')\n\n"
      "Reads a run's state stores (DIR is the run folder or its checkpoint.dir),\n"
      "read-only: safe while the job runs.\n\n"
      "  ls      each checkpoint: step, full or delta (of which full), ranks that wrote it,\n"
      "          completeness (global = agreed by every rank; all = every rank wrote it, not\n"
      "          yet recorded; partial = not restorable), bytes raw and stored, ratio, and\n"
      "          the longest write time over ranks; then the gradient log of each rank: first\n"
      "          and last step, records, stored bytes\n"
      "  verify  re-reads every checkpoint of every rank with its delta chain, checking every\n"
      "          checksum, every placement record (checksum, a valid placement, present\n"
      "          for each checkpoint), every gradient-log record, and that replaying the log\n"
      "          from a checkpoint gives the next one's bytes exactly; exit status 1 on any fault\n"
      "  plans   the placement log: a per-layer summary (default), a table, CSV, JSON lines,\n"
      "          or an SVG/PNG heatmap; --follow for a live view\n"
      "  replay  re-plans every logged step with the run's policy and checks each plan is\n"
      "          reproduced exactly; with --policy, what other policies would have done\n"
      "  reshard SRC DST --world M: the checkpoint re-sliced for M ranks in a new run folder\n";
  if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
    printf("%s", usage);
    return 0;
  }
  if (argc >= 1 && strcmp(argv[0], "plans") == 0) return smoe_plans_command(argc - 1, argv + 1);
  if (argc >= 1 && strcmp(argv[0], "replay") == 0) return smoe_replay_command(argc - 1, argv + 1);
  if (argc >= 1 && strcmp(argv[0], "reshard") == 0) return cmd_reshard(argc - 1, argv + 1);
  if (argc != 2 || (strcmp(argv[0], "ls") && strcmp(argv[0], "verify"))) {
    fprintf(stderr, "swiftmoe ckpt: expected 'ls DIR', 'verify DIR', 'plans DIR ...' or 'replay "
            "DIR ...' (see 'swiftmoe ckpt --help')\n");
    return 2;
  }
  smoe_stores_t st;
  smoe_err_t err;
  if (smoe_stores_open(argv[1], &st, &err) != 0) {
    fprintf(stderr, "swiftmoe ckpt: %s\n", err.msg);
    return 1;
  }
  int rc = strcmp(argv[0], "ls") == 0 ? cmd_ls(&st) : cmd_verify(&st);
  smoe_stores_close(&st);
  return rc;
}
