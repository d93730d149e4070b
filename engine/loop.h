/* loop.h: the training loop's libuv event loop.
 *
 * The step chain runs on the main thread (the only one that calls MPI); at
 * every step boundary it polls the loop, which delivers what happened
 * meanwhile: a preemption signal, the checkpoint timer, and the completion of
 * the job on libuv's thread pool (a checkpoint being encoded and written). One
 * job is in flight at a time. Preemption signals: SIGTERM, SIGINT, and SIGUSR1
 * (Open MPI's mpirun forwards SIGUSR1 to the ranks at once, while it turns a
 * SIGTERM into an abort that kills them a second later). After the first one
 * the handlers are removed, so a second signal ends the process at once. */
#ifndef SMOE_LOOP_H
#define SMOE_LOOP_H

#include "common.h"

typedef struct smoe_loop smoe_loop_t;

/* every_seconds > 0 starts a repeating timer (smoe_loop_timer_fired). NULL
 * with err if libuv fails. */
smoe_loop_t *smoe_loop_new(double every_seconds, smoe_err_t *err);
/* Waits for a job in flight, closes every handle, frees. NULL is a no-op. */
void smoe_loop_free(smoe_loop_t *l);

/* Runs the callbacks that are ready; never blocks. */
void smoe_loop_poll(smoe_loop_t *l);

/* Runs work(arg) on the thread pool (at a lower CPU priority than training),
 * then done(arg) on the main thread, from a later poll or wait. Only one job
 * at a time: the caller checks smoe_loop_busy first. */
void smoe_loop_submit(smoe_loop_t *l, void (*work)(void *), void (*done)(void *), void *arg);
/* A job submitted whose done() has not run yet. */
int smoe_loop_busy(const smoe_loop_t *l);
/* Blocks until the job in flight (if any) is done; returns the seconds waited. */
double smoe_loop_wait(smoe_loop_t *l);

/* The first preemption signal received (its number), or 0. */
int smoe_loop_signal(const smoe_loop_t *l);
/* 1 if the timer fired since the last call (then cleared), else 0. */
int smoe_loop_timer_fired(smoe_loop_t *l);
/* Restarts the timer's period from now (after a checkpoint made for another reason). */
void smoe_loop_timer_reset(smoe_loop_t *l);

#endif
