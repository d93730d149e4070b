/* loop.c: the training loop's libuv event loop (see loop.h). */
#define _GNU_SOURCE
#include "loop.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

struct smoe_loop {
  uv_loop_t loop;
  uv_signal_t term, intr, usr1;
  uv_timer_t timer;
  uv_work_t work;
  uint64_t period_ms; /* 0: no timer */
  int signal, fired, busy, handlers;
  void (*job)(void *), (*done)(void *);
  void *arg;
};

/* The first signal: remember it, and give the signals back their default
 * action so that a second one ends the process at once. */
static void on_signal(uv_signal_t *h, int signum) {
  smoe_loop_t *l = h->data;
  if (!l->signal) l->signal = signum;
  if (l->handlers) {
    uv_signal_stop(&l->term);
    uv_signal_stop(&l->intr);
    uv_signal_stop(&l->usr1);
    l->handlers = 0;
  }
}

static void on_timer(uv_timer_t *h) {
  smoe_loop_t *l = h->data;
  l->fired = 1;
}

/* Pool thread: the job runs below the training threads' priority, so that on
 * a busy node it fills idle time rather than slowing steps down. */
static void on_work(uv_work_t *w) {
  smoe_loop_t *l = w->data;
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
  l->job(l->arg);
}

static void on_work_done(uv_work_t *w, int status) {
  (void)status; /* never cancelled */
  smoe_loop_t *l = w->data;
  l->busy = 0;
  l->done(l->arg);
}

smoe_loop_t *smoe_loop_new(double every_seconds, smoe_err_t *err) {
  smoe_loop_t *l = xcalloc(1, sizeof *l);
  int rc = uv_loop_init(&l->loop);
  if (rc == 0) rc = uv_signal_init(&l->loop, &l->term);
  if (rc == 0) rc = uv_signal_init(&l->loop, &l->intr);
  if (rc == 0) rc = uv_signal_init(&l->loop, &l->usr1);
  if (rc == 0) rc = uv_timer_init(&l->loop, &l->timer);
  if (rc != 0) {
    smoe_fail(err, "libuv: cannot set up the event loop: %s", uv_strerror(rc));
    free(l);
    return NULL;
  }
  l->term.data = l->intr.data = l->usr1.data = l->timer.data = l->work.data = l;
  uv_signal_start(&l->term, on_signal, SIGTERM);
  uv_signal_start(&l->intr, on_signal, SIGINT);
  uv_signal_start(&l->usr1, on_signal, SIGUSR1);
  l->handlers = 1;
  l->period_ms = every_seconds > 0 ? (uint64_t)(every_seconds * 1000.0 + 0.5) : 0;
  if (l->period_ms) uv_timer_start(&l->timer, on_timer, l->period_ms, l->period_ms);
  return l;
}

void smoe_loop_poll(smoe_loop_t *l) {
  uv_run(&l->loop, UV_RUN_NOWAIT);
}

void smoe_loop_submit(smoe_loop_t *l, void (*work)(void *), void (*done)(void *), void *arg) {
  l->job = work, l->done = done, l->arg = arg;
  l->busy = 1;
  uv_queue_work(&l->loop, &l->work, on_work, on_work_done);
}

int smoe_loop_busy(const smoe_loop_t *l) {
  return l->busy;
}

double smoe_loop_wait(smoe_loop_t *l) {
  double t0 = smoe_now();
  while (l->busy) uv_run(&l->loop, UV_RUN_ONCE);
  return smoe_now() - t0;
}

int smoe_loop_signal(const smoe_loop_t *l) {
  return l->signal;
}

int smoe_loop_timer_fired(smoe_loop_t *l) {
  int f = l->fired;
  l->fired = 0;
  return f;
}

void smoe_loop_timer_reset(smoe_loop_t *l) {
  if (l->period_ms) uv_timer_again(&l->timer);
  l->fired = 0;
}

static void on_close(uv_handle_t *h) {
  (void)h;
}

void smoe_loop_free(smoe_loop_t *l) {
  if (!l) return;
  smoe_loop_wait(l);
  uv_close((uv_handle_t *)&l->term, on_close);
  uv_close((uv_handle_t *)&l->intr, on_close);
  uv_close((uv_handle_t *)&l->usr1, on_close);
  uv_close((uv_handle_t *)&l->timer, on_close);
  uv_run(&l->loop, UV_RUN_DEFAULT);
  uv_loop_close(&l->loop);
  free(l);
}
