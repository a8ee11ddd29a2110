/* SPDX-License-Identifier: MIT */
/*
 * The event loop: epoll (edge-triggered by default) plus one-shot timers, one
 * thread, no locks.  The only place in revsock that reads the clock.
 */
#ifndef REVSOCK_LOOP_H
#define REVSOCK_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;

typedef void (*loop_io_fn)(struct loop *l, struct loop_io *io, uint32_t events);
typedef void (*loop_timer_fn)(struct loop *l, void *ctx);

/* Embed in the object that owns the fd; container_of it in the callback. */
struct loop_io {
	int fd;
	loop_io_fn fn;
	uint32_t events;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Monotonic milliseconds; cached per iteration (loop_now) or fresh (loop_clock). */
uint64_t loop_now(const struct loop *l);
uint64_t loop_clock(void);

int loop_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_fn fn);
int loop_mod(struct loop *l, struct loop_io *io, uint32_t events);
/* Stop watching; pending events of this batch for io are skipped.  Does not
 * close the fd.  Free io's owner with loop_defer, not at once. */
void loop_del(struct loop *l, struct loop_io *io);

/* A one-shot timer embedded in its owner: arming needs no allocation and
 * disarming is O(log n), so owners can re-arm freely on every event. */
struct loop_timer {
	uint64_t deadline;
	loop_timer_fn fn;
	void *ctx;
	size_t heap_idx; /* 0 = not armed */
};

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ms, loop_timer_fn fn, void *ctx);
void loop_timer_disarm(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t) { return t->heap_idx != 0; }

/*
 * Run a callback after the current batch of events (deferred work, and the
 * safe place to free an object whose loop_io may still have a pending event
 * in this batch).  Work deferred from a deferred callback waits for the next
 * iteration (after epoll and the timers): re-deferring is how a busy callback
 * yields, and it never starves sockets or timers.  Returns 0 or -ENOMEM.
 */
int loop_defer(struct loop *l, loop_timer_fn fn, void *ctx);

/* Run until loop_stop; returns 0. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
bool loop_stopping(const struct loop *l);

#endif
