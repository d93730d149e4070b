/* supervisor.c: `swiftmoe run`, the restart supervisor.
 *
 * A plain libuv process (no MPI) that runs a launch command such as
 * `mpirun -np 4 swiftmoe train --out runs/x`, and after a failure runs it
 * again with `--resume auto`, after a backoff that doubles up to 30 s.
 * SIGTERM/SIGINT are forwarded to the child, which then decides the exit
 * status: a preempted `swiftmoe train` writes a checkpoint and exits 0.
 *
 * The child runs detached (setsid): a Ctrl-C at the terminal then reaches
 * only the supervisor, which forwards it once, instead of reaching every
 * process twice. Signals go to the child's process group (-pid), so that a
 * shell wrapper and its children get them too. mpirun puts each rank in a
 * group of its own. It turns a SIGTERM/SIGINT into an abort (SIGTERM to the
 * ranks after odls_base_sigkill_timeout seconds, SIGKILL as long after, exit
 * status 1 whatever the ranks did), but forwards SIGUSR1 at once and exits
 * with the ranks: so when COMMAND is mpirun/mpiexec/orterun the supervisor
 * forwards SIGTERM/SIGINT as SIGUSR1, which swiftmoe train takes as a
 * preemption like SIGTERM (measured with Open MPI 4.1.4).
 *
 * An MPI launcher still running LAUNCHER_HANG_S seconds after every one of
 * its ranks has exited (all its children zombies) is hung in its own
 * shutdown and is killed, so the job's failure is seen and it restarts.
 * Open MPI 4.1.4's mpirun does this when a rank is SIGKILLed while it
 * connects to mpirun's PMIx server (in MPI_Init): it reports the death, then
 * blocks for ever on a mutex in PMIx_server_finalize (measured: 6 of 150
 * kills 0-0.4 s after launch); that hang stalled the crash-loop test.
 *
 * A job that makes no progress (no new line in <out>/metrics.jsonl, or none
 * yet since it started) for --stall-timeout seconds is stopped and restarted
 * like a failed one: a rank blocked for ever in a collective whose peer died,
 * or a launcher that never noticed a death, must not hang the job. Stopping:
 * SIGTERM (mpirun aborts its job on it: SIGTERM, then SIGKILL to the ranks),
 * then SIGKILL to the command's process group after a grace period.
 *
 * Exit codes: 0 the command succeeded (or exited 0 after a forwarded
 * signal); 1 restarts exhausted, or interrupted during a backoff; 2 bad
 * usage, the command cannot be run, or the command exited 2 (bad usage or
 * config: restarting would not help); 128+N the command was killed by
 * signal N after a forwarded signal; otherwise the command's own status
 * after a forwarded signal. */
#define _POSIX_C_SOURCE 200809L
#include "supervisor.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common.h"

#define MAX_BACKOFF_S 30
#define METRICS_TAIL 65536 /* bytes of metrics.jsonl read for the last step */
#define STALL_GRACE_MS 15000 /* after the SIGTERM of a stalled job, until SIGKILL */
#define LAUNCHER_HANG_S 10   /* a launcher whose ranks have all exited, until SIGKILL */

/* A libuv call that cannot fail in normal use: report where and exit. */
#define UV_CHECK(call) uv_check((call), #call, __FILE__, __LINE__)
static void uv_check(int rc, const char *what, const char *file, int line) {
  if (rc >= 0) return;
  fprintf(stderr, "swiftmoe run: %s failed at %s:%d: %s\n", what, file, line, uv_strerror(rc));
  exit(1);
}

/* --------------------------------------------------------------- options */

typedef struct {
  const char *name, *arg, *help;
} sup_option_t;

static const sup_option_t options[] = {
    {"--max-restarts", "N", "restarts after failures before giving up (default 3)"},
    {"--backoff", "SECONDS", "first wait before a restart, then doubled up to 30 (default 1)"},
    {"--stall-timeout", "SECONDS", "stop and restart a job whose --out DIR/metrics.jsonl gains no "
                                   "line for this long; 0 = never (default 1800)"},
    {"--nproc-on-restart", "N[,N...]", "restart k runs on the k-th number of ranks (the last "
                                       "one for every later restart): COMMAND's -np/-n/--np/"
                                       "--nproc value is replaced; a swiftmoe train --resume "
                                       "auto on another number reshards its checkpoint"},
    {"--help", NULL, "show this help"},
};
enum { OPT_MAX_RESTARTS, OPT_BACKOFF, OPT_STALL, OPT_NPROC, OPT_HELP, N_OPTIONS };
#define MAX_NPROC 16

typedef struct {
  int max_restarts;
  int backoff_s;
  int stall_s;
  int help;
  int nproc[MAX_NPROC], n_nproc; /* --nproc-on-restart */
  char **cmd; /* the launch command, after "--" (not owned) */
  int cmdc;
} sup_args_t;

static int usage(const char *fmt, const char *what) {
  fprintf(stderr, "swiftmoe run: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see 'swiftmoe run --help')\n");
  return 2;
}

static void print_help(void) {
  printf(
      "usage: swiftmoe run [--max-restarts N] [--backoff SECONDS] [--nproc-on-restart N[,N...]]\n"
      "                    -- COMMAND [ARGS...]\n\n"
      "Runs COMMAND, e.g. 'mpirun -np 4 swiftmoe train --out runs/x', and restarts it\n"
      "(with --nproc-on-restart, on other numbers of ranks)\n"
      "with --resume auto when it fails (exit status other than 0 and 2, or killed by\n"
      "a signal). Exit status 2 (bad usage or config) is not retried. SIGTERM and\n"
      "SIGINT are forwarded to COMMAND (as SIGUSR1 when it is mpirun or mpiexec, which\n"
      "forward that one to the ranks at once), which is then not restarted; a second\n"
      "one forwards SIGKILL. A job whose --out DIR/metrics.jsonl gains no line for\n"
      "--stall-timeout seconds is stopped (SIGTERM, SIGKILL 15 s later) and restarted,\n"
      "and so is an mpirun still running 10 s after all its ranks exited (a launcher\n"
      "hung in its own shutdown).\n\n"
      "Exit codes: 0 COMMAND succeeded; 1 restarts exhausted; 2 bad usage, or COMMAND\n"
      "cannot run or exited 2; after a forwarded signal, COMMAND's status.\n\noptions:\n");
  for (int i = 0; i < N_OPTIONS; i++) {
    char left[64];
    const sup_option_t *o = &options[i];
    snprintf(left, sizeof left, "%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    printf("  %-28s %s\n", left, o->help);
  }
}

/* An integer option value in lo..hi, or a usage error. */
static int int_value(const char *name, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
    fprintf(stderr,
            "swiftmoe run: %s %s: expected an integer in %d..%d (see 'swiftmoe run --help')\n",
            name, v, lo, hi);
    return 2;
  }
  *out = (int)x;
  return 0;
}

/* Parses "[options] -- COMMAND...". Returns 0 or the exit code of a usage error. */
static int parse_args(int argc, char **argv, sup_args_t *a) {
  *a = (sup_args_t){.max_restarts = 3, .backoff_s = 1, .stall_s = 1800};
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    if (strcmp(s, "--") == 0) {
      a->cmd = argv + i + 1;
      a->cmdc = argc - i - 1;
      if (a->cmdc == 0) return usage("%s", "no command after '--'");
      return 0;
    }
    int k = 0;
    size_t len = 0;
    for (; k < N_OPTIONS; k++) {
      len = strlen(options[k].name);
      if (strncmp(s, options[k].name, len) == 0 && (s[len] == '\0' || s[len] == '=')) break;
    }
    if (k == N_OPTIONS) {
      if (strncmp(s, "--", 2) == 0) return usage("unknown option '%s'", s);
      return usage("unexpected argument '%s': put the command after '--'", s);
    }
    if (k == OPT_HELP) {
      a->help = 1;
      return 0;
    }
    const char *v = s[len] == '=' ? s + len + 1 : i + 1 < argc ? argv[++i] : NULL;
    if (!v) return usage("option %s needs a value", options[k].name);
    if (k == OPT_NPROC) { /* a comma-separated list */
      a->n_nproc = 0;
      for (const char *p = v; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > 1 << 20 || a->n_nproc == MAX_NPROC || (*end && *end != ','))
          return usage("--nproc-on-restart %s: expected up to 16 numbers of ranks >= 1, e.g. 4,2",
                       v);
        a->nproc[a->n_nproc++] = (int)x;
        p = *end ? end + 1 : end;
      }
      if (a->n_nproc == 0) return usage("--nproc-on-restart %s: expected a number of ranks", v);
      continue;
    }
    int rc = k == OPT_MAX_RESTARTS ? int_value("--max-restarts", v, 0, 1000, &a->max_restarts)
             : k == OPT_BACKOFF    ? int_value("--backoff", v, 0, 3600, &a->backoff_s)
                                   : int_value("--stall-timeout", v, 0, 1 << 24, &a->stall_s);
    if (rc) return rc;
  }
  return usage("%s", "no command: expected '-- COMMAND [ARGS...]'");
}

/* --------------------------------------------------------------- command */

/* The command of a restart: `--resume VALUE` or `--resume=VALUE` (the last one)
 * gets the value "auto", or `--resume auto` is appended. NULL-terminated; the
 * strings are the caller's or static. */
static char **restart_command(char **cmd, int cmdc) {
  char **r = xcalloc((size_t)cmdc + 3, sizeof(char *));
  int at = -1;
  for (int i = 0; i < cmdc; i++) {
    r[i] = cmd[i];
    if (strcmp(cmd[i], "--resume") == 0 || strncmp(cmd[i], "--resume=", 9) == 0) at = i;
  }
  int n = cmdc;
  if (at >= 0 && cmd[at][8] == '=') {
    r[at] = "--resume=auto";
  } else if (at >= 0 && at + 1 < cmdc) {
    r[at + 1] = "auto";
  } else {
    if (at < 0) r[n++] = "--resume"; /* else a trailing --resume gets its value */
    r[n++] = "auto";
  }
  r[n] = NULL;
  return r;
}

/* The value of the command's last `--out DIR` / `--out=DIR`, or NULL. */
static const char *out_dir(char **cmd, int cmdc) {
  const char *dir = NULL;
  for (int i = 0; i < cmdc; i++) {
    if (strcmp(cmd[i], "--out") == 0 && i + 1 < cmdc) dir = cmd[i + 1];
    if (strncmp(cmd[i], "--out=", 6) == 0) dir = cmd[i] + 6;
  }
  return dir;
}

/* Whether the command is an MPI launcher that aborts the job on SIGTERM. */
static int is_mpi_launcher(const char *cmd) {
  const char *base = strrchr(cmd, '/');
  base = base ? base + 1 : cmd;
  return strcmp(base, "mpirun") == 0 || strcmp(base, "mpiexec") == 0 ||
         strcmp(base, "orterun") == 0;
}

/* ------------------------------------------------------------- reporting */

/* The last "step" recorded in DIR/metrics.jsonl: 1 and *step, or 0 if there is
 * none (no file, no line with a step). Reads only the file's tail, backwards:
 * the file grows by one line a step, and its last line may be half written. */
static int last_step(const char *dir, long long *step) {
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char *buf = xmalloc(METRICS_TAIL + 1);
  off_t size = fseeko(f, 0, SEEK_END) == 0 ? ftello(f) : 0;
  off_t from = size > METRICS_TAIL ? size - METRICS_TAIL : 0;
  size_t len = fseeko(f, from, SEEK_SET) == 0 ? fread(buf, 1, METRICS_TAIL, f) : 0;
  fclose(f);
  int found = 0;
  size_t end = len;
  while (!found && end > 0) {
    size_t start = end;
    while (start > 0 && buf[start - 1] != '\n') start--;
    if (start == 0 && from > 0) break; /* a line cut by the tail window */
    buf[end] = '\0';
    cJSON *j = cJSON_Parse(buf + start);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (cJSON_IsNumber(s)) {
      *step = (long long)s->valuedouble;
      found = 1;
    }
    cJSON_Delete(j);
    end = start > 0 ? start - 1 : 0;
  }
  free(buf);
  return found;
}

static const char *signal_name(int sig) {
  static const struct {
    int sig;
    const char *name;
  } names[] = {{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
               {SIGILL, "SIGILL"},   {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},
               {SIGFPE, "SIGFPE"},   {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"},
               {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"}, {SIGPIPE, "SIGPIPE"},
               {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].sig == sig) return names[i].name;
  return NULL;
}

/* "exit status 1", "killed by SIGKILL" or "killed by signal 37". */
static void describe(char *buf, size_t n, int64_t exit_status, int term_signal) {
  const char *name = signal_name(term_signal);
  if (term_signal && name)
    snprintf(buf, n, "killed by %s", name);
  else if (term_signal)
    snprintf(buf, n, "killed by signal %d", term_signal);
  else
    snprintf(buf, n, "exit status %lld", (long long)exit_status);
}

/* ------------------------------------------------------------- supervisor */

typedef struct {
  uv_loop_t loop;
  uv_process_t child;
  uv_signal_t sigterm, sigint;
  uv_timer_t backoff;
  uv_timer_t watch;    /* progress of the running attempt (--stall-timeout) */
  char metrics[4200];  /* <out>/metrics.jsonl, or "" */
  int64_t seen_size;   /* its size at the last progress */
  uint64_t progress_ns; /* when the attempt last made progress */
  int stalled;         /* 1: stopped for no progress (SIGTERM sent); 2: SIGKILL sent */
  uint64_t orphaned_ns; /* since when the launcher's children are all zombies, or 0 */
  const char *stop_why; /* why this supervisor stopped the attempt ("stalled", ...) */
  sup_args_t args;
  char **restart_cmd; /* the command with --resume auto */
  int np_at;           /* --nproc-on-restart: the index of the rank count in it */
  char np_buf[16];
  const char *out;     /* the command's --out DIR, or NULL */
  uint64_t backoff_ms; /* before the next restart */
  int attempts, restarts;
  int running;     /* the child has been spawned and not reaped */
  int forwarded;   /* signals forwarded to the child */
  int interrupted; /* a signal came while no child ran */
  int done;        /* no more attempts: exit with code */
  int code;
  uint64_t started_ns;
  char final[64]; /* how the last attempt ended */
} sup_t;

static void finish(sup_t *s, int code) {
  s->done = 1;
  s->code = code;
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->backoff, NULL);
  uv_close((uv_handle_t *)&s->watch, NULL);
}

static void on_child_exit(uv_process_t *p, int64_t exit_status, int term_signal);

/* Signals the child's process group (or the child alone, if its group is gone). */
static void signal_child(sup_t *s, int sig) {
  int rc = uv_kill(-s->child.pid, sig);
  if (rc == UV_ESRCH) rc = uv_process_kill(&s->child, sig);
  if (rc < 0 && rc != UV_ESRCH)
    fprintf(stderr, "swiftmoe run: cannot signal pid %d: %s\n", s->child.pid, uv_strerror(rc));
}

/* Children of pid: how many, and how many are zombies (exited, not reaped).
 * Reads /proc (Linux); both 0 where it cannot. */
static void children(int pid, int *n, int *zombies) {
  *n = *zombies = 0;
  DIR *d = opendir("/proc");
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *close = strrchr(buf, ')'); /* "pid (comm) state ppid ..."; comm may hold ')' */
    char state;
    int ppid;
    if (close && sscanf(close + 1, " %c %d", &state, &ppid) == 2 && ppid == pid) {
      (*n)++;
      *zombies += state == 'Z';
    }
  }
  closedir(d);
}

/* A launcher hung in its own shutdown (see the top of this file): SIGKILL. */
static void check_launcher(sup_t *s, uint64_t now) {
  int n, zombies;
  children(s->child.pid, &n, &zombies);
  if (n == 0 || zombies < n) {
    s->orphaned_ns = 0;
    return;
  }
  if (!s->orphaned_ns) s->orphaned_ns = now;
  if (now - s->orphaned_ns < (uint64_t)LAUNCHER_HANG_S * 1000000000u || s->stalled == 2) return;
  fprintf(stderr, "swiftmoe run: %s (pid %d) is still running %d s after all its %d ranks "
          "exited: the launcher hung in its own shutdown; SIGKILL, to restart the job\n",
          s->args.cmd[0], s->child.pid, LAUNCHER_HANG_S, n);
  signal_child(s, SIGKILL);
  s->stalled = 2;
  s->stop_why = "launcher hung";
}

/* --stall-timeout: progress is metrics.jsonl growing. A stalled attempt gets
 * SIGTERM (mpirun: abort the job), then SIGKILL; its exit is then a failure. */
static void on_watch(uv_timer_t *t) {
  sup_t *s = t->data;
  if (!s->running) return;
  uint64_t now = uv_hrtime();
  if (is_mpi_launcher(s->args.cmd[0])) check_launcher(s, now);
  if (s->args.stall_s <= 0) return;
  if (s->metrics[0]) {
    uv_fs_t req;
    if (uv_fs_stat(NULL, &req, s->metrics, NULL) == 0 &&
        (int64_t)req.statbuf.st_size != s->seen_size) {
      s->seen_size = (int64_t)req.statbuf.st_size;
      s->progress_ns = now;
    }
    uv_fs_req_cleanup(&req);
  }
  double idle_s = (double)(now - s->progress_ns) / 1e9;
  if (!s->stalled && idle_s >= s->args.stall_s) {
    long long step;
    char where[4300] = "";
    if (s->out && last_step(s->out, &step))
      snprintf(where, sizeof where, " (last step %lld)", step);
    fprintf(stderr, "swiftmoe run: attempt %d made no progress for %.0f s: %s gained no line%s; "
            "stopping it (SIGTERM, SIGKILL in %d s) to restart it\n", s->attempts, idle_s,
            s->metrics[0] ? s->metrics : "metrics.jsonl", where, STALL_GRACE_MS / 1000);
    signal_child(s, SIGTERM);
    s->stalled = 1;
    s->stop_why = "stalled";
    s->progress_ns = now; /* the grace period counts from here */
  } else if (s->stalled == 1 && idle_s * 1000 >= STALL_GRACE_MS) {
    fprintf(stderr, "swiftmoe run: attempt %d still running %d s after SIGTERM: SIGKILL\n",
            s->attempts, STALL_GRACE_MS / 1000);
    signal_child(s, SIGKILL);
    s->stalled = 2;
  }
}

/* Starts attempt s->attempts + 1; on failure to spawn, finishes. */
static void spawn_attempt(sup_t *s) {
  char **cmd = s->attempts == 0 ? s->args.cmd : s->restart_cmd;
  if (s->attempts > 0 && s->args.n_nproc > 0) { /* restart k on the k-th number of ranks */
    int k = s->attempts - 1 < s->args.n_nproc ? s->attempts - 1 : s->args.n_nproc - 1;
    snprintf(s->np_buf, sizeof s->np_buf, "%d", s->args.nproc[k]);
    s->restart_cmd[s->np_at] = s->np_buf;
    fprintf(stderr, "swiftmoe run: restart %d on %s ranks\n", s->attempts, s->np_buf);
  }
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; i++)
    stdio[i] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = i};
  uv_process_options_t o = {.exit_cb = on_child_exit,
                            .file = cmd[0],
                            .args = cmd,
                            .flags = UV_PROCESS_DETACHED,
                            .stdio_count = 3,
                            .stdio = stdio};
  s->attempts++;
  s->child.data = s;
  s->started_ns = uv_hrtime();
  int rc = uv_spawn(&s->loop, &s->child, &o);
  if (rc == 0) {
    s->running = 1;
    s->stalled = 0;
    s->orphaned_ns = 0;
    s->progress_ns = s->started_ns;
    s->seen_size = -1; /* what metrics.jsonl holds already is not progress */
    if (s->metrics[0]) {
      uv_fs_t req;
      if (uv_fs_stat(NULL, &req, s->metrics, NULL) == 0)
        s->seen_size = (int64_t)req.statbuf.st_size;
      uv_fs_req_cleanup(&req);
    }
    return;
  }
  /* A command that cannot be run will not run on a retry either. */
  uv_close((uv_handle_t *)&s->child, NULL);
  fprintf(stderr, "swiftmoe run: cannot run '%s': %s\n", cmd[0], uv_strerror(rc));
  snprintf(s->final, sizeof s->final, "cannot run: %s", uv_err_name(rc));
  finish(s, 2);
}

static void on_backoff(uv_timer_t *t) {
  sup_t *s = t->data;
  s->restarts++;
  spawn_attempt(s);
}

/* The child handle is closed: now it may be spawned again. */
static void on_child_closed(uv_handle_t *h) {
  sup_t *s = h->data;
  if (s->done) {
    finish(s, s->code);
  } else if (s->interrupted) {
    fprintf(stderr, "swiftmoe run: interrupted before restart %d; not restarting\n",
            s->restarts + 1);
    finish(s, 1);
  } else {
    UV_CHECK(uv_timer_start(&s->backoff, on_backoff, s->backoff_ms, 0));
    s->backoff_ms =
        s->backoff_ms * 2 > MAX_BACKOFF_S * 1000 ? MAX_BACKOFF_S * 1000 : s->backoff_ms * 2;
  }
}

/* Decides what follows an attempt: done (s->done, s->code) or a restart. */
static void decide(sup_t *s, int64_t exit_status, int term_signal, double ran_s) {
  if (s->stalled) /* whatever it exited with, this supervisor stopped it */
    snprintf(s->final + strlen(s->final), sizeof s->final - strlen(s->final), ", %s", s->stop_why);
  if (s->forwarded) {
    s->done = 1;
    s->code = term_signal ? 128 + term_signal : (int)exit_status;
    return;
  }
  if (exit_status == 0 && !term_signal && !s->stalled) {
    s->done = 1;
    s->code = 0;
    return;
  }
  if (exit_status == 2 && !term_signal && !s->stalled) {
    fprintf(stderr,
            "swiftmoe run: attempt %d failed (exit status 2: bad usage or config); "
            "not restarting\n",
            s->attempts);
    s->done = 1;
    s->code = 2;
    return;
  }
  char step[4200] = "";
  long long last;
  if (s->out && last_step(s->out, &last))
    snprintf(step, sizeof step, "; last step %lld in %s/metrics.jsonl", last, s->out);
  else if (s->out)
    snprintf(step, sizeof step, "; no step in %s/metrics.jsonl", s->out);
  if (s->restarts >= s->args.max_restarts) {
    fprintf(stderr,
            "swiftmoe run: attempt %d failed (%s) after %.1f s%s; restarts exhausted "
            "(--max-restarts %d); giving up\n",
            s->attempts, s->final, ran_s, step, s->args.max_restarts);
    s->done = 1;
    s->code = 1;
    return;
  }
  fprintf(stderr,
          "swiftmoe run: attempt %d failed (%s) after %.1f s%s; restart %d of %d in %.1f s\n",
          s->attempts, s->final, ran_s, step, s->restarts + 1, s->args.max_restarts,
          (double)s->backoff_ms / 1000);
}

static void on_child_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  sup_t *s = p->data;
  double ran_s = (double)(uv_hrtime() - s->started_ns) / 1e9;
  s->running = 0;
  describe(s->final, sizeof s->final, exit_status, term_signal);
  decide(s, exit_status, term_signal, ran_s);
  uv_close((uv_handle_t *)p, on_child_closed);
}

/* SIGTERM/SIGINT: forward to the child's process group; a second one forwards
 * SIGKILL. Without a child (during a backoff) stop: a restart is not wanted. */
static void on_signal(uv_signal_t *h, int signum) {
  sup_t *s = h->data;
  if (!s->running) {
    s->interrupted = 1;
    if (uv_is_active((uv_handle_t *)&s->backoff)) {
      uv_timer_stop(&s->backoff);
      fprintf(stderr, "swiftmoe run: %s during the backoff; not restarting\n", signal_name(signum));
      finish(s, 1);
    }
    return;
  }
  int sig = s->forwarded ? SIGKILL : is_mpi_launcher(s->args.cmd[0]) ? SIGUSR1 : signum;
  fprintf(stderr, "swiftmoe run: forwarding %s to the command (pid %d)\n", signal_name(sig),
          s->child.pid);
  signal_child(s, sig);
  s->forwarded++;
}

int smoe_supervise(int argc, char **argv, const char *self) {
  (void)self;
  sup_t *s = xcalloc(1, sizeof *s);
  int rc = parse_args(argc, argv, &s->args);
  if (rc || s->args.help) {
    if (s->args.help) print_help();
    free(s);
    return rc;
  }
  s->restart_cmd = restart_command(s->args.cmd, s->args.cmdc);
  s->np_at = -1;
  for (int i = 0; i + 1 < s->args.cmdc && s->args.n_nproc > 0 && s->np_at < 0; i++) {
    const char *a = s->args.cmd[i];
    if (!strcmp(a, "-np") || !strcmp(a, "-n") || !strcmp(a, "--np") || !strcmp(a, "--nproc"))
      s->np_at = i + 1;
  }
  if (s->args.n_nproc > 0 && s->np_at < 0) {
    free(s->restart_cmd);
    free(s);
    return usage("%s", "--nproc-on-restart: COMMAND has no -np N, -n N, --np N or --nproc N to "
                 "change");
  }
  s->out = out_dir(s->args.cmd, s->args.cmdc);
  s->backoff_ms = (uint64_t)s->args.backoff_s * 1000;
  UV_CHECK(uv_loop_init(&s->loop));
  s->sigterm.data = s->sigint.data = s->backoff.data = s->watch.data = s;
  UV_CHECK(uv_signal_init(&s->loop, &s->sigterm));
  UV_CHECK(uv_signal_init(&s->loop, &s->sigint));
  UV_CHECK(uv_timer_init(&s->loop, &s->backoff));
  UV_CHECK(uv_timer_init(&s->loop, &s->watch));
  if (s->out) snprintf(s->metrics, sizeof s->metrics, "%s/metrics.jsonl", s->out);
  /* checked every second, or 20 times per stall timeout if shorter */
  uint64_t every = s->args.stall_s > 0 && s->args.stall_s < 20 ? (uint64_t)s->args.stall_s * 50 : 1000;
  if (every < 100) every = 100;
  UV_CHECK(uv_timer_start(&s->watch, on_watch, every, every));
  UV_CHECK(uv_signal_start(&s->sigterm, on_signal, SIGTERM));
  UV_CHECK(uv_signal_start(&s->sigint, on_signal, SIGINT));
  spawn_attempt(s);
  UV_CHECK(uv_run(&s->loop, UV_RUN_DEFAULT));
  UV_CHECK(uv_loop_close(&s->loop)); /* UV_EBUSY: a handle left open */
  fprintf(stderr, "swiftmoe run: %d attempt%s, %d restart%s; last: %s; exit %d\n", s->attempts,
          s->attempts == 1 ? "" : "s", s->restarts, s->restarts == 1 ? "" : "s", s->final, s->code);
  rc = s->code;
  free(s->restart_cmd);
  free(s);
  return rc;
}
