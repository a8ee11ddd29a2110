// SPDX-License-Identifier: MIT
/*
 * The per-tunnel link decision (user/linkstate.c) with an injected clock:
 * the scenarios one by one, then every sequence of four events checked
 * against the rules the glue relies on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "linkstate.h"

#define GRACE 5000
#define IF_OURS 3
#define IF_OTHER 4

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(4000) };

	inet_pton(AF_INET, ip, &sin.sin_addr);
	return sin;
}

static void tunnel(struct linkstate *s, bool bridge)
{
	struct sockaddr_in sin = v4("10.1.0.2");

	assert_int_equal(linkstate_init(s, (struct sockaddr *)&sin, IF_OURS, bridge), 0);
}

static struct linkstate_event addr_del(const char *ip, bool still_local)
{
	struct linkstate_event ev;
	struct in_addr a;

	inet_pton(AF_INET, ip, &a);
	linkstate_addr_event(&ev, AF_INET, &a, IF_OURS, still_local);
	return ev;
}

static struct linkstate_event link_ev(int ifindex, bool running)
{
	return (struct linkstate_event){ .type = LS_EV_LINK, .ifindex = ifindex, .running = running };
}

static struct linkstate_event link_gone(int ifindex)
{
	return (struct linkstate_event){ .type = LS_EV_LINK_GONE, .ifindex = ifindex };
}

static struct linkstate_event route_ok(int oif)
{
	return (struct linkstate_event){ .type = LS_EV_ROUTE, .ifindex = oif };
}

static struct linkstate_event route_err(int err)
{
	return (struct linkstate_event){ .type = LS_EV_ROUTE, .route_err = err };
}

static const struct linkstate_event tick = { .type = LS_EV_TICK };

static enum linkstate_decision step(struct linkstate *s, struct linkstate_event ev, uint64_t now)
{
	return linkstate_step(s, &ev, now, GRACE);
}

static void test_init_normalizes_v4_mapped_ipv6(void **state)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_un_like { sa_family_t f; char p[30]; } other = { .f = AF_UNIX };
	struct linkstate s;
	struct in_addr a;

	inet_pton(AF_INET6, "::ffff:10.1.0.2", &sin6.sin6_addr);
	assert_int_equal(linkstate_init(&s, (struct sockaddr *)&sin6, 7, true), 0);
	assert_int_equal(s.family, AF_INET);
	inet_pton(AF_INET, "10.1.0.2", &a);
	assert_memory_equal(s.addr, &a, 4);
	assert_int_equal(s.ifindex, 7);
	assert_false(linkstate_suspended(&s));

	inet_pton(AF_INET6, "fd00::2", &sin6.sin6_addr);
	assert_int_equal(linkstate_init(&s, (struct sockaddr *)&sin6, 0, false), 0);
	assert_int_equal(s.family, AF_INET6);
	assert_memory_equal(s.addr, &sin6.sin6_addr, 16);

	assert_int_equal(linkstate_init(&s, (struct sockaddr *)&other, 0, true), -EAFNOSUPPORT);
}

static void test_deleting_our_address_closes_at_once(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, addr_del("10.1.0.2", false), 100), LS_CLOSE);
	assert_true(s.closed);
	/* Nothing more happens to a closed tunnel. */
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 200), LS_NONE);
	assert_int_equal(step(&s, addr_del("10.1.0.2", false), 300), LS_NONE);
	assert_int_equal(step(&s, tick, 100000), LS_NONE);
}

static void test_other_addresses_do_not_matter(void **state)
{
	struct linkstate s;
	struct linkstate_event ev;
	uint8_t v6[16] = { 0 };

	tunnel(&s, true);
	assert_int_equal(step(&s, addr_del("10.1.0.3", false), 100), LS_NONE);
	/* Same bytes, other family. */
	memcpy(v6, s.addr, 4);
	linkstate_addr_event(&ev, AF_INET6, v6, IF_OURS, false);
	assert_int_equal(step(&s, ev, 100), LS_NONE);
	/* Our address, but another interface still holds it. */
	assert_int_equal(step(&s, addr_del("10.1.0.2", true), 100), LS_NONE);
	assert_false(s.closed);
}

static void test_ipv6_address_deleted(void **state)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct linkstate_event ev;
	struct linkstate s;
	struct in6_addr other;

	inet_pton(AF_INET6, "fd00::2", &sin6.sin6_addr);
	inet_pton(AF_INET6, "fd00::3", &other);
	assert_int_equal(linkstate_init(&s, (struct sockaddr *)&sin6, IF_OURS, false), 0);
	linkstate_addr_event(&ev, AF_INET6, &other, IF_OURS, false);
	assert_int_equal(step(&s, ev, 1), LS_NONE);
	linkstate_addr_event(&ev, AF_INET6, &sin6.sin6_addr, IF_OURS, false);
	assert_int_equal(step(&s, ev, 2), LS_CLOSE);
}

static void test_carrier_lost_then_back_within_grace_resumes(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 1000), LS_SUSPEND);
	assert_true(linkstate_suspended(&s));
	assert_int_equal(s.deadline, 1000 + GRACE);
	/* Repeated notifications are not news. */
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 1500), LS_NONE);
	assert_int_equal(s.deadline, 1000 + GRACE);
	assert_int_equal(step(&s, tick, 1000 + GRACE - 1), LS_NONE);
	assert_int_equal(step(&s, link_ev(IF_OURS, true), 1000 + GRACE - 1), LS_RESUME);
	assert_false(linkstate_suspended(&s));
	assert_int_equal(step(&s, link_ev(IF_OURS, true), 7000), LS_NONE);
	/* A second loss gets a fresh grace period. */
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 20000), LS_SUSPEND);
	assert_int_equal(s.deadline, 20000 + GRACE);
}

static void test_carrier_lost_past_grace_closes(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 1000), LS_SUSPEND);
	assert_int_equal(step(&s, tick, 1000 + GRACE), LS_CLOSE_GRACE_EXPIRED);
	assert_true(s.closed);
	assert_int_equal(step(&s, link_ev(IF_OURS, true), 1000 + GRACE + 1), LS_NONE);
}

static void test_carrier_back_after_deadline_before_tick_closes(void **state)
{
	struct linkstate s;

	/* The timer and the netlink message land in the same loop iteration. */
	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 0), LS_SUSPEND);
	assert_int_equal(step(&s, link_ev(IF_OURS, true), GRACE), LS_CLOSE_GRACE_EXPIRED);
}

static void test_zero_grace_closes_at_once(void **state)
{
	struct linkstate_event down = link_ev(IF_OURS, false);
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(linkstate_step(&s, &down, 1000, 0), LS_CLOSE_GRACE_EXPIRED);
	assert_true(s.closed);
}

static void test_other_links_do_not_matter(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OTHER, false), 1), LS_NONE);
	assert_int_equal(step(&s, link_gone(IF_OTHER), 2), LS_NONE);
	assert_int_equal(step(&s, tick, 100000), LS_NONE);
	assert_false(linkstate_suspended(&s));
	assert_false(s.closed);
}

static void test_link_deleted_closes(void **state)
{
	struct linkstate s;

	tunnel(&s, false);
	assert_int_equal(step(&s, link_gone(IF_OURS), 1), LS_CLOSE);
}

static void test_route_via_other_interface_closes(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, route_ok(IF_OURS), 1), LS_NONE);
	assert_int_equal(step(&s, route_ok(IF_OTHER), 2), LS_CLOSE);

	/* Also while suspended: the grace period does not protect it. */
	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 1), LS_SUSPEND);
	assert_int_equal(step(&s, route_ok(IF_OTHER), 2), LS_CLOSE);
}

static void test_no_route_suspends_bridge_until_it_returns(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, route_err(-ENETUNREACH), 10), LS_SUSPEND);
	assert_int_equal(s.deadline, 10 + GRACE);
	assert_int_equal(step(&s, route_err(-ENETUNREACH), 20), LS_NONE);
	assert_int_equal(step(&s, route_ok(IF_OURS), 30), LS_RESUME);
}

static void test_resume_needs_both_carrier_and_route(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 0), LS_SUSPEND);
	assert_int_equal(step(&s, route_err(-ENETUNREACH), 10), LS_NONE);
	assert_int_equal(step(&s, link_ev(IF_OURS, true), 20), LS_NONE);
	assert_true(linkstate_suspended(&s));
	assert_int_equal(step(&s, route_ok(IF_OURS), 30), LS_RESUME);
	/* The deadline stays that of the first trouble. */
	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 0), LS_SUSPEND);
	assert_int_equal(step(&s, route_err(-EHOSTUNREACH), GRACE - 1), LS_NONE);
	assert_int_equal(step(&s, tick, GRACE), LS_CLOSE_GRACE_EXPIRED);
}

static void test_portal_ignores_carrier_and_missing_routes(void **state)
{
	struct linkstate s;

	tunnel(&s, false);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 0), LS_NONE);
	assert_int_equal(step(&s, route_err(-ENETUNREACH), 0), LS_NONE);
	assert_int_equal(step(&s, tick, 10 * GRACE), LS_NONE);
	assert_false(linkstate_suspended(&s));
	assert_int_equal(step(&s, route_ok(IF_OURS), 1), LS_NONE);
	assert_int_equal(step(&s, addr_del("10.1.0.2", false), 2), LS_CLOSE);
}

static void test_unknown_interface_is_learned_from_the_first_route(void **state)
{
	struct sockaddr_in sin = v4("10.1.0.2");
	struct linkstate s;

	assert_int_equal(linkstate_init(&s, (struct sockaddr *)&sin, 0, true), 0);
	/* Until we know the interface, link events cannot be ours. */
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 0), LS_NONE);
	assert_int_equal(step(&s, link_gone(0), 0), LS_NONE);
	assert_int_equal(step(&s, route_ok(IF_OURS), 1), LS_NONE);
	assert_int_equal(s.ifindex, IF_OURS);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 2), LS_SUSPEND);
}

static void test_address_deleted_while_suspended_closes(void **state)
{
	struct linkstate s;

	tunnel(&s, true);
	assert_int_equal(step(&s, link_ev(IF_OURS, false), 0), LS_SUSPEND);
	assert_int_equal(step(&s, addr_del("10.1.0.2", false), 1), LS_CLOSE);
	assert_int_equal(step(&s, tick, GRACE), LS_NONE);
}

static void test_decision_names(void **state)
{
	assert_string_equal(linkstate_decision_str(LS_NONE), "none");
	assert_string_equal(linkstate_decision_str(LS_CLOSE), "close");
	assert_string_equal(linkstate_decision_str(LS_SUSPEND), "suspend");
	assert_string_equal(linkstate_decision_str(LS_RESUME), "resume");
	assert_string_equal(linkstate_decision_str(LS_CLOSE_GRACE_EXPIRED), "close (grace expired)");
}

/*
 * Every sequence of SEQ_LEN events from the alphabet below, each at one of
 * three time steps, for a bridge and a portal tunnel.  Checked after every
 * step, from the outside only:
 *  - nothing but NONE after a CLOSE*;
 *  - SUSPEND only from "not suspended", and it leaves the tunnel suspended
 *    with deadline = now + grace;
 *  - RESUME only from "suspended", before the deadline, and it leaves the
 *    tunnel not suspended;
 *  - CLOSE_GRACE_EXPIRED only from "suspended" at or after the deadline;
 *  - CLOSE only for our address gone (not held elsewhere), our link deleted
 *    or a route by another interface;
 *  - a portal is never suspended;
 *  - a suspended bridge reaching its deadline is closed by the next tick.
 */
#define SEQ_LEN 4

static struct linkstate_event alphabet(int i)
{
	switch (i) {
	case 0: return addr_del("10.1.0.2", false);
	case 1: return addr_del("10.1.0.2", true);
	case 2: return addr_del("10.1.0.9", false);
	case 3: return link_ev(IF_OURS, false);
	case 4: return link_ev(IF_OURS, true);
	case 5: return link_ev(IF_OTHER, false);
	case 6: return link_gone(IF_OURS);
	case 7: return link_gone(IF_OTHER);
	case 8: return route_ok(IF_OURS);
	case 9: return route_ok(IF_OTHER);
	case 10: return route_err(-ENETUNREACH);
	default: return tick;
	}
}
#define N_EVENTS 12
static const uint64_t time_steps[] = { 0, GRACE - 1, GRACE };
#define N_TIMES 3
#define N_SYMBOLS (N_EVENTS * N_TIMES)

static bool closes_for_address(const struct linkstate_event *ev)
{
	return (ev->type == LS_EV_ADDR_DEL && !ev->still_local && ev->addr[3] == 2) ||
	       (ev->type == LS_EV_LINK_GONE && ev->ifindex == IF_OURS) ||
	       (ev->type == LS_EV_ROUTE && !ev->route_err && ev->ifindex == IF_OTHER);
}

static void check_sequence(const int *seq, bool bridge, unsigned long *checked)
{
	struct linkstate s;
	uint64_t now = 1000;
	bool closed = false;

	tunnel(&s, bridge);
	for (int k = 0; k < SEQ_LEN; k++) {
		struct linkstate_event ev = alphabet(seq[k] % N_EVENTS);
		bool was = linkstate_suspended(&s);
		uint64_t deadline = s.deadline;
		enum linkstate_decision d;

		now += time_steps[seq[k] / N_EVENTS];
		d = linkstate_step(&s, &ev, now, GRACE);
		(*checked)++;

		if (closed) {
			assert_int_equal(d, LS_NONE);
			continue;
		}
		switch (d) {
		case LS_NONE:
			assert_int_equal(linkstate_suspended(&s), was);
			if (was && ev.type == LS_EV_TICK)
				assert_true(now < deadline);
			break;
		case LS_SUSPEND:
			assert_true(bridge);
			assert_false(was);
			assert_true(linkstate_suspended(&s));
			assert_int_equal(s.deadline, now + GRACE);
			break;
		case LS_RESUME:
			assert_true(was);
			assert_true(now < deadline);
			assert_false(linkstate_suspended(&s));
			break;
		case LS_CLOSE_GRACE_EXPIRED:
			assert_true(was);
			assert_true(now >= deadline);
			break;
		case LS_CLOSE:
			assert_true(closes_for_address(&ev));
			break;
		}
		if (d == LS_CLOSE || d == LS_CLOSE_GRACE_EXPIRED) {
			assert_true(s.closed);
			assert_false(linkstate_suspended(&s));
			closed = true;
		} else {
			assert_false(s.closed);
			/* An address-gone event never survives unnoticed. */
			assert_false(closes_for_address(&ev));
		}
		if (!bridge)
			assert_false(linkstate_suspended(&s));
	}
}

static void test_every_sequence_keeps_the_rules(void **state)
{
	int seq[SEQ_LEN] = { 0 };
	unsigned long checked = 0;

	for (;;) {
		check_sequence(seq, true, &checked);
		check_sequence(seq, false, &checked);
		int k = 0;
		while (k < SEQ_LEN && ++seq[k] == N_SYMBOLS)
			seq[k++] = 0;
		if (k == SEQ_LEN)
			break;
	}
	/* 36^4 sequences, two roles, four steps each. */
	assert_int_equal(checked, 2ul * 36 * 36 * 36 * 36 * SEQ_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_normalizes_v4_mapped_ipv6),
		cmocka_unit_test(test_deleting_our_address_closes_at_once),
		cmocka_unit_test(test_other_addresses_do_not_matter),
		cmocka_unit_test(test_ipv6_address_deleted),
		cmocka_unit_test(test_carrier_lost_then_back_within_grace_resumes),
		cmocka_unit_test(test_carrier_lost_past_grace_closes),
		cmocka_unit_test(test_carrier_back_after_deadline_before_tick_closes),
		cmocka_unit_test(test_zero_grace_closes_at_once),
		cmocka_unit_test(test_other_links_do_not_matter),
		cmocka_unit_test(test_link_deleted_closes),
		cmocka_unit_test(test_route_via_other_interface_closes),
		cmocka_unit_test(test_no_route_suspends_bridge_until_it_returns),
		cmocka_unit_test(test_resume_needs_both_carrier_and_route),
		cmocka_unit_test(test_portal_ignores_carrier_and_missing_routes),
		cmocka_unit_test(test_unknown_interface_is_learned_from_the_first_route),
		cmocka_unit_test(test_address_deleted_while_suspended_closes),
		cmocka_unit_test(test_decision_names),
		cmocka_unit_test(test_every_sequence_keeps_the_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
