// SPDX-License-Identifier: MIT
/* The event loop's fairness: deferred work that keeps re-deferring itself (a
 * session that always has data and yields) must not starve sockets or timers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

#define STORM_LIMIT 1000000 /* deferrals before the test gives up (a livelock) */

struct world {
	struct loop *l;
	unsigned long deferrals;
	bool timer_fired, io_seen, gave_up;
	struct loop_timer timer;
	struct loop_io io;
};

static void storm(struct loop *l, void *ctx)
{
	struct world *w = ctx;

	if (++w->deferrals >= STORM_LIMIT) {
		w->gave_up = true; /* the other work never ran: stop instead of hanging */
		loop_stop(l);
		return;
	}
	if (!(w->timer_fired && w->io_seen))
		assert_int_equal(loop_defer(l, storm, w), 0);
	else
		loop_stop(l);
}

static void on_timer(struct loop *l, void *ctx)
{
	((struct world *)ctx)->timer_fired = true;
}

static void on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct world *w = (struct world *)((char *)io - offsetof(struct world, io));
	char c;

	if (read(io->fd, &c, 1) == 1)
		w->io_seen = true;
}

static void test_redeferring_callback_does_not_starve_timers_or_sockets(void **state)
{
	struct world w = { 0 };
	int p[2];

	assert_int_equal(pipe(p), 0);
	w.l = loop_new();
	assert_non_null(w.l);
	assert_int_equal(loop_add(w.l, &w.io, p[0], EPOLLIN, on_io), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	loop_timer_arm(w.l, &w.timer, 2, on_timer, &w);
	assert_int_equal(loop_defer(w.l, storm, &w), 0);
	assert_int_equal(loop_run(w.l), 0);
	assert_false(w.gave_up);
	assert_true(w.timer_fired);
	assert_true(w.io_seen);
	loop_del(w.l, &w.io);
	loop_free(w.l);
	close(p[0]);
	close(p[1]);
}

static int order[4], norder;

static void second(struct loop *l, void *ctx)
{
	order[norder++] = 2;
	loop_stop(l);
}

static void first(struct loop *l, void *ctx)
{
	order[norder++] = 1;
	assert_int_equal(loop_defer(l, second, NULL), 0);
}

static void test_deferred_work_runs_in_order_and_completes(void **state)
{
	struct loop *l = loop_new();

	norder = 0;
	assert_non_null(l);
	assert_int_equal(loop_defer(l, first, NULL), 0);
	assert_int_equal(loop_run(l), 0); /* stops in second(): nothing waits on epoll */
	assert_int_equal(norder, 2);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 2);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redeferring_callback_does_not_starve_timers_or_sockets),
		cmocka_unit_test(test_deferred_work_runs_in_order_and_completes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
