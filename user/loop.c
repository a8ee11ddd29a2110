// SPDX-License-Identifier: MIT
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 128

struct deferred {
	loop_timer_fn fn;
	void *ctx;
};

struct loop {
	int epfd;
	bool stop;
	uint64_t now;
	/* min-heap of armed timers, 1-based (index 0 unused) */
	struct loop_timer **heap;
	size_t heap_len, heap_cap;
	struct deferred *defer;
	size_t defer_len, defer_cap;
};

uint64_t loop_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t loop_now(const struct loop *l)
{
	return l->now;
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	l->now = loop_clock();
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l->heap);
	free(l->defer);
	free(l);
}

int loop_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_fn fn)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	io->fd = fd;
	io->fn = fn;
	io->events = events;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int loop_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	if (io->events == events)
		return 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	return 0;
}

void loop_del(struct loop *l, struct loop_io *io)
{
	if (!io->fn)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->fn = NULL;
}

/* --- timers: binary min-heap on deadline --- */

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 1 && l->heap[i / 2]->deadline > t->deadline) {
		heap_set(l, i, l->heap[i / 2]);
		i /= 2;
	}
	heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		size_t c = i * 2;

		if (c > l->heap_len)
			break;
		if (c + 1 <= l->heap_len && l->heap[c + 1]->deadline < l->heap[c]->deadline)
			c++;
		if (l->heap[c]->deadline >= t->deadline)
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

void loop_timer_disarm(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_idx;
	struct loop_timer *last;

	if (!i)
		return;
	t->heap_idx = 0;
	last = l->heap[l->heap_len--];
	if (last == t)
		return;
	heap_set(l, i, last);
	heap_up(l, i);
	heap_down(l, last->heap_idx);
}

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ms, loop_timer_fn fn, void *ctx)
{
	loop_timer_disarm(l, t);
	t->deadline = loop_clock() + delay_ms;
	t->fn = fn;
	t->ctx = ctx;
	if (l->heap_len + 1 >= l->heap_cap) {
		size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
		struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));

		if (!h)
			abort(); /* a lost timer would wedge a session: fail loudly */
		l->heap = h;
		l->heap_cap = cap;
	}
	l->heap_len++;
	heap_set(l, l->heap_len, t);
	heap_up(l, l->heap_len);
}

static int next_timeout(struct loop *l)
{
	uint64_t now;

	if (l->defer_len)
		return 0;
	if (!l->heap_len)
		return -1;
	now = loop_clock();
	if (l->heap[1]->deadline <= now)
		return 0;
	return (int)(l->heap[1]->deadline - now);
}

static void run_timers(struct loop *l)
{
	l->now = loop_clock();
	while (l->heap_len && l->heap[1]->deadline <= l->now) {
		struct loop_timer *t = l->heap[1];

		loop_timer_disarm(l, t);
		t->fn(l, t->ctx);
	}
}

int loop_defer(struct loop *l, loop_timer_fn fn, void *ctx)
{
	if (l->defer_len == l->defer_cap) {
		size_t cap = l->defer_cap ? l->defer_cap * 2 : 64;
		struct deferred *d = realloc(l->defer, cap * sizeof(*d));

		if (!d)
			return -ENOMEM;
		l->defer = d;
		l->defer_cap = cap;
	}
	l->defer[l->defer_len++] = (struct deferred){ fn, ctx };
	return 0;
}

/*
 * One round: the callbacks deferred before this call.  What they defer runs
 * in the next iteration, after epoll_wait (timeout 0 while work is deferred)
 * and the timers.  Running "until the list stays empty" livelocked the bridge:
 * sessions that always had data (a download whose tunnel the peer's kernel
 * path drained at once) re-deferred themselves for fairness forever, so the
 * tunnel's own socket (the user's stop byte) and every timer went unserved
 * for 30 s.
 */
static void run_deferred(struct loop *l)
{
	size_t n = l->defer_len, i;
	struct deferred *batch;

	if (!n)
		return;
	batch = malloc(n * sizeof(*batch));
	if (!batch)
		abort();
	memcpy(batch, l->defer, n * sizeof(*batch));
	l->defer_len = 0;
	for (i = 0; i < n; i++)
		batch[i].fn(l, batch[i].ctx);
	free(batch);
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];

	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, next_timeout(l));

		l->now = loop_clock();
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			struct loop_io *io = evs[i].data.ptr;

			if (io->fn)
				io->fn(l, io, evs[i].events);
		}
		run_deferred(l);
		run_timers(l);
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}

bool loop_stopping(const struct loop *l)
{
	return l->stop;
}
