// SPDX-License-Identifier: MIT
/* The kernel path's watchdog decisions (user/kwatch.c), on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kwatch.h"

#define TICK 250
#define STUCK 10000

/* ---- parser ---- */

static void parser_all_parsed_never_kicks(void **state)
{
	struct kwatch_parser w = { 0 };

	(void)state;
	for (uint64_t now = 0; now < 10000; now += TICK)
		assert_int_equal(kwatch_parser_step(&w, now, 5000, 5000, STUCK), KWATCH_PARSER_OK);
}

static void parser_moving_never_kicks(void **state)
{
	struct kwatch_parser w = { 0 };
	uint64_t rcvd = 1000;

	(void)state;
	/* bytes always waiting, but the parser takes some every tick */
	for (uint64_t now = 0; now < 10000; now += TICK, rcvd += 100)
		assert_int_equal(kwatch_parser_step(&w, now, rcvd + 64, rcvd, STUCK), KWATCH_PARSER_OK);
}

static void parser_idle_kicks_once_per_second(void **state)
{
	struct kwatch_parser w = { 0 };
	unsigned kicks = 0;
	uint64_t first = 0;

	(void)state;
	for (uint64_t now = 100000; now <= 103000; now += TICK) {
		enum kwatch_parser_action a = kwatch_parser_step(&w, now, 9000, 4000, STUCK);

		if (a == KWATCH_PARSER_KICK) {
			if (!kicks)
				first = now;
			kicks++;
		} else {
			assert_int_equal(a, KWATCH_PARSER_OK);
		}
	}
	/* idle from the first look at 100000: kicks at 101000, 102000, 103000 */
	assert_int_equal(first, 100000 + KWATCH_IDLE_MS);
	assert_int_equal(kicks, 3);
	assert_int_equal(w.kicks, 3);
}

/* 5000 bytes wait and nothing moves until the first kick; returns the clock after it. */
static uint64_t idle_until_first_kick(struct kwatch_parser *w)
{
	uint64_t now = 0;

	for (; now <= KWATCH_IDLE_MS; now += TICK)
		kwatch_parser_step(w, now, 9000, 4000, STUCK);
	assert_int_equal(w->kicks, 1);
	return now;
}

static void parser_kick_helped_is_reported(void **state)
{
	struct kwatch_parser w = { 0 };
	uint64_t now = idle_until_first_kick(&w);

	(void)state;
	/* nothing new arrived, yet the parser took everything: the kick did it */
	assert_int_equal(kwatch_parser_step(&w, now, 9000, 9000, STUCK), KWATCH_PARSER_KICK_HELPED);
	assert_int_equal(w.waited_ms, now);
	assert_int_equal(w.kicks, 0);
	assert_int_equal(kwatch_parser_step(&w, now + TICK, 9000, 9000, STUCK), KWATCH_PARSER_OK);
}

static void parser_new_bytes_after_kick_is_not_credited(void **state)
{
	struct kwatch_parser w = { 0 };
	uint64_t now = idle_until_first_kick(&w);

	(void)state;
	/* the rest of the frame arrived: the parser moved on its own */
	assert_int_equal(kwatch_parser_step(&w, now, 9500, 9500, STUCK), KWATCH_PARSER_OK);
	assert_int_equal(w.kicks, 0);
}

static void parser_stuck_after_kicks_fail(void **state)
{
	struct kwatch_parser w = { 0 };
	enum kwatch_parser_action a = KWATCH_PARSER_OK;
	uint64_t now;

	(void)state;
	for (now = 0; now <= 20000; now += TICK) {
		a = kwatch_parser_step(&w, now, 9000, 4000, STUCK);
		if (a == KWATCH_PARSER_STUCK)
			break;
	}
	assert_int_equal(a, KWATCH_PARSER_STUCK);
	assert_int_equal(now, STUCK);
	assert_int_equal(w.kicks, STUCK / KWATCH_IDLE_MS - 1); /* kicked every second before */
}

/* ---- mailbox ---- */

static void mailbox_unread_without_pause_is_read_after_a_second(void **state)
{
	struct kwatch_mailbox w = { 0 };
	uint64_t now;
	int acts = 0;

	(void)state;
	for (now = 0; now < 1000; now += TICK)
		assert_false(kwatch_mailbox_step(&w, now, 700, 300, false));
	for (; now <= 3000; now += TICK)
		acts += kwatch_mailbox_step(&w, now, 700, 300, false);
	/* at 1000 and again one second after that: never more than once a second */
	assert_int_equal(acts, 2);
}

static void mailbox_paused_or_reading_is_left_alone(void **state)
{
	struct kwatch_mailbox w = { 0 };
	uint64_t read = 300;

	(void)state;
	for (uint64_t now = 0; now < 5000; now += TICK)
		assert_false(kwatch_mailbox_step(&w, now, 700, 300, true)); /* a session holds the tunnel */
	for (uint64_t now = 5000; now < 10000; now += TICK, read += 10)
		assert_false(kwatch_mailbox_step(&w, now, 100000, read, false)); /* reading, behind */
	for (uint64_t now = 10000; now < 15000; now += TICK)
		assert_false(kwatch_mailbox_step(&w, now, read, read, false)); /* all read */
}

/* ---- session ---- */

static void session_stuck_backlog_warns_then_aborts(void **state)
{
	struct kwatch_session w = { 0 };
	uint64_t now, warn_at = 0, abort_at = 0;

	(void)state;
	assert_false(kwatch_session_need_measure(&w, 1 << 20)); /* first sight: it moved */
	for (now = 1000; now <= 10000 && !abort_at; now += TICK) {
		enum kwatch_session_action a;

		assert_true(kwatch_session_need_measure(&w, 1 << 20));
		a = kwatch_session_step(&w, now, 200969, 0, 5000);
		if (a == KWATCH_SESSION_WARN) {
			assert_int_equal(warn_at, 0);
			warn_at = now;
		} else if (a == KWATCH_SESSION_ABORT) {
			abort_at = now;
		}
	}
	assert_int_equal(warn_at, 1000 + KWATCH_IDLE_MS);
	assert_int_equal(abort_at, 1000 + 5000);
}

static void session_slow_consumer_is_not_a_stall(void **state)
{
	struct kwatch_session w = { 0 };

	(void)state;
	kwatch_session_need_measure(&w, 4 << 20);
	for (uint64_t now = 0; now < 60000; now += TICK) {
		assert_true(kwatch_session_need_measure(&w, 4 << 20));
		/* the same bytes held for a minute, but the send queue is full */
		assert_int_equal(kwatch_session_step(&w, now, 3 << 20, 2500000, 5000), KWATCH_SESSION_OK);
	}
}

static void session_drained_is_not_measured_until_it_moves(void **state)
{
	struct kwatch_session w = { 0 };

	(void)state;
	kwatch_session_need_measure(&w, 1000);
	assert_true(kwatch_session_need_measure(&w, 1000));
	assert_int_equal(kwatch_session_step(&w, 500, 0, 0, 5000), KWATCH_SESSION_OK);
	assert_false(kwatch_session_need_measure(&w, 1000)); /* clean: no syscalls */
	assert_false(kwatch_session_need_measure(&w, 2000)); /* moved */
	assert_true(kwatch_session_need_measure(&w, 2000));
}

static void session_moving_backlog_is_not_a_stall(void **state)
{
	struct kwatch_session w = { 0 };
	int64_t held = 4 << 20;

	(void)state;
	kwatch_session_need_measure(&w, 1);
	for (uint64_t now = 0; now < 20000; now += TICK, held -= 1000)
		assert_int_equal(kwatch_session_step(&w, now, held, 0, 5000), KWATCH_SESSION_OK);
}

static void session_reset_forgets_idle_time(void **state)
{
	struct kwatch_session w = { 0 };
	uint64_t now;

	(void)state;
	kwatch_session_need_measure(&w, 1);
	for (now = 0; now < 4000; now += TICK)
		kwatch_session_step(&w, now, 100, 0, 5000);
	kwatch_session_reset(&w); /* e.g. the session paused: kwait takes over */
	for (; now < 8000; now += TICK)
		assert_int_not_equal(kwatch_session_step(&w, now, 100, 0, 5000), KWATCH_SESSION_ABORT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parser_all_parsed_never_kicks),
		cmocka_unit_test(parser_moving_never_kicks),
		cmocka_unit_test(parser_idle_kicks_once_per_second),
		cmocka_unit_test(parser_kick_helped_is_reported),
		cmocka_unit_test(parser_new_bytes_after_kick_is_not_credited),
		cmocka_unit_test(parser_stuck_after_kicks_fail),
		cmocka_unit_test(mailbox_unread_without_pause_is_read_after_a_second),
		cmocka_unit_test(mailbox_paused_or_reading_is_left_alone),
		cmocka_unit_test(session_stuck_backlog_warns_then_aborts),
		cmocka_unit_test(session_slow_consumer_is_not_a_stall),
		cmocka_unit_test(session_drained_is_not_measured_until_it_moves),
		cmocka_unit_test(session_moving_backlog_is_not_a_stall),
		cmocka_unit_test(session_reset_forgets_idle_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
