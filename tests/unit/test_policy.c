// SPDX-License-Identifier: MIT
/* The portal picker, heartbeat/DRAIN and the bridge monitor rules, driven by
 * an injected clock: no sleeps, no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy.h"

static void test_picker_empty_list_picks_nothing(void **state)
{
	assert_int_equal(picker_pick(NULL, 0), -1);
}

static void test_picker_takes_fewest_live_sessions(void **state)
{
	struct picker_view v[] = { { .live_sessions = 5 }, { .live_sessions = 2 }, { .live_sessions = 3 } };

	assert_int_equal(picker_pick(v, 3), 1);
}

static void test_picker_ties_go_to_earliest_tunnel(void **state)
{
	struct picker_view v[] = { { .live_sessions = 4 }, { .live_sessions = 2 }, { .live_sessions = 2 } };

	assert_int_equal(picker_pick(v, 3), 1);
}

static void test_picker_skips_closed_worker(void **state)
{
	/* V2Ray picks the dead tunnel (0 live sessions) for up to 30 s: we must not. */
	struct picker_view v[] = { { .live_sessions = 0, .closed = true }, { .live_sessions = 9 } };

	assert_int_equal(picker_pick(v, 2), 1);
}

static void test_picker_skips_suspended_worker(void **state)
{
	struct picker_view v[] = { { .live_sessions = 1, .suspended = true }, { .live_sessions = 3 } };

	assert_int_equal(picker_pick(v, 2), 1);
}

static void test_picker_avoids_stalled_tunnel_while_another_works(void **state)
{
	/* the bridge's address went away: the old tunnel's socket is in RTO */
	struct picker_view v[] = { { .live_sessions = 1, .stalled = true }, { .live_sessions = 30 } };

	assert_int_equal(picker_pick(v, 2), 1);
	v[1].closed = true;
	assert_int_equal(picker_pick(v, 2), 0); /* better a slow tunnel than none */
}

static void test_picker_prefers_non_draining(void **state)
{
	struct picker_view v[] = { { .live_sessions = 1, .draining = true }, { .live_sessions = 50 } };

	assert_int_equal(picker_pick(v, 2), 1);
}

static void test_picker_uses_draining_when_all_drain(void **state)
{
	struct picker_view v[] = { { .live_sessions = 7, .draining = true },
				   { .live_sessions = 3, .draining = true },
				   { .live_sessions = 1, .draining = true, .closed = true } };

	assert_int_equal(picker_pick(v, 3), 1);
}

static void test_picker_all_closed_picks_nothing(void **state)
{
	struct picker_view v[] = { { .closed = true }, { .closed = true, .draining = true } };

	assert_int_equal(picker_pick(v, 2), -1);
}

/* A portal tunnel over time: the heartbeat task runs every 2 s, sessions
 * arrive between ticks; DRAIN comes at the first tick after the total
 * exceeds 256 and heartbeats stop after it. */
static void test_heartbeat_drains_at_first_tick_over_256(void **state)
{
	uint32_t total = 1; /* control session */
	bool draining = false;
	uint64_t now = 0, drained_at = 0;
	int heartbeats = 0;

	for (int tick = 0; tick < 10; tick++, now += PORTAL_HEARTBEAT_MS) {
		enum heartbeat_action a = portal_heartbeat(total, draining, false);

		if (a == HEARTBEAT_ACTIVE)
			heartbeats++;
		if (a == HEARTBEAT_DRAIN) {
			draining = true;
			drained_at = now;
		}
		if (draining)
			assert_true(a != HEARTBEAT_ACTIVE);
		total += 100; /* 100 sessions per 2 s */
	}
	/* totals at ticks: 1, 101, 201, 301 -> DRAIN at the 4th tick (t = 6 s) */
	assert_int_equal(drained_at, 3 * PORTAL_HEARTBEAT_MS);
	assert_int_equal(heartbeats, 3);
}

static void test_heartbeat_exactly_256_does_not_drain(void **state)
{
	assert_int_equal(portal_heartbeat(256, false, false), HEARTBEAT_ACTIVE);
	assert_int_equal(portal_heartbeat(257, false, false), HEARTBEAT_DRAIN);
}

static void test_heartbeat_stops_when_closed(void **state)
{
	assert_int_equal(portal_heartbeat(3, false, true), HEARTBEAT_NONE);
	assert_int_equal(portal_heartbeat(300, true, false), HEARTBEAT_NONE);
}

static void test_drained_tunnel_closes_with_last_session(void **state)
{
	assert_false(portal_drained_tunnel_may_close(true, 1, true));
	assert_true(portal_drained_tunnel_may_close(true, 0, true));
	assert_false(portal_drained_tunnel_may_close(false, 0, true));
}

static void test_drained_tunnel_stays_until_replacement_is_up(void **state)
{
	/* a V2Ray bridge dials the replacement up to 2 s after DRAIN */
	assert_false(portal_drained_tunnel_may_close(true, 0, false));
}

static void test_monitor_opens_first_tunnel(void **state)
{
	assert_true(bridge_should_open_tunnel(NULL, 0));
	struct bridge_tunnel_view dead[] = { { .active = false, .live_sessions = 3 } };
	assert_true(bridge_should_open_tunnel(dead, 1));
}

static void test_monitor_opens_second_tunnel_above_16_per_tunnel(void **state)
{
	/* control session counts: 16 users + control = 17 > 16 */
	struct bridge_tunnel_view v[] = { { .active = true, .live_sessions = 16 } };

	assert_false(bridge_should_open_tunnel(v, 1));
	v[0].live_sessions = 17;
	assert_true(bridge_should_open_tunnel(v, 1));
}

static void test_monitor_integer_division(void **state)
{
	/* 34 / 2 = 17 > 16; 33 / 2 = 16 */
	struct bridge_tunnel_view v[] = { { .active = true, .live_sessions = 17 },
					  { .active = true, .live_sessions = 17 } };

	assert_true(bridge_should_open_tunnel(v, 2));
	v[1].live_sessions = 16;
	assert_false(bridge_should_open_tunnel(v, 2));
}

static void test_monitor_ignores_drained_tunnels(void **state)
{
	struct bridge_tunnel_view v[] = { { .active = false, .live_sessions = 200 },
					  { .active = true, .live_sessions = 2 } };

	assert_false(bridge_should_open_tunnel(v, 2));
}

/* A bridge tunnel that hears nothing from the portal for 10 s is dead;
 * heartbeats every 2 s keep it alive. */
static void test_idle_timeout_with_clock(void **state)
{
	uint64_t idle = 10000, last_rx = 0;

	for (uint64_t now = 0; now <= 60000; now += 500) {
		if (now % 2000 == 0 && now < 30000)
			last_rx = now; /* heartbeats until t = 28 s */
		bool expired = bridge_tunnel_idle_expired(true, last_rx, now, idle);

		if (now < 38000)
			assert_false(expired);
		else
			assert_true(expired);
	}
	assert_false(bridge_tunnel_idle_expired(false, 0, 60000, idle)); /* drained: exempt */
}

static bool ids_in_use(void *ctx, uint16_t id)
{
	const uint16_t *used = ctx;

	for (int i = 0; used[i]; i++)
		if (used[i] == id)
			return true;
	return false;
}

static void test_session_ids_start_at_one_and_skip_zero_and_live(void **state)
{
	uint16_t counter = 0, used[] = { 2, 3, 0 };

	assert_int_equal(portal_next_session_id(&counter, NULL, NULL), 1);
	assert_int_equal(portal_next_session_id(&counter, ids_in_use, used), 4);
	counter = 65535;
	assert_int_equal(portal_next_session_id(&counter, ids_in_use, used), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_picker_empty_list_picks_nothing),
		cmocka_unit_test(test_picker_takes_fewest_live_sessions),
		cmocka_unit_test(test_picker_ties_go_to_earliest_tunnel),
		cmocka_unit_test(test_picker_skips_closed_worker),
		cmocka_unit_test(test_picker_skips_suspended_worker),
		cmocka_unit_test(test_picker_avoids_stalled_tunnel_while_another_works),
		cmocka_unit_test(test_picker_prefers_non_draining),
		cmocka_unit_test(test_picker_uses_draining_when_all_drain),
		cmocka_unit_test(test_picker_all_closed_picks_nothing),
		cmocka_unit_test(test_heartbeat_drains_at_first_tick_over_256),
		cmocka_unit_test(test_heartbeat_exactly_256_does_not_drain),
		cmocka_unit_test(test_heartbeat_stops_when_closed),
		cmocka_unit_test(test_drained_tunnel_closes_with_last_session),
		cmocka_unit_test(test_drained_tunnel_stays_until_replacement_is_up),
		cmocka_unit_test(test_monitor_opens_first_tunnel),
		cmocka_unit_test(test_monitor_opens_second_tunnel_above_16_per_tunnel),
		cmocka_unit_test(test_monitor_integer_division),
		cmocka_unit_test(test_monitor_ignores_drained_tunnels),
		cmocka_unit_test(test_idle_timeout_with_clock),
		cmocka_unit_test(test_session_ids_start_at_one_and_skip_zero_and_live),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
