// SPDX-License-Identifier: MIT
#include "linkstate.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>

int linkstate_init(struct linkstate *s, const struct sockaddr *local, int ifindex,
		   bool watch_path)
{
	memset(s, 0, sizeof(*s));
	s->ifindex = ifindex;
	s->watch_path = watch_path;

	if (local->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)local;

		s->family = AF_INET;
		memcpy(s->addr, &sin->sin_addr, 4);
		return 0;
	}
	if (local->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)local;

		/* A dual-stack socket talking IPv4 reports ::ffff:a.b.c.d; the
		 * kernel announces the address as plain IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			s->family = AF_INET;
			memcpy(s->addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			s->family = AF_INET6;
			memcpy(s->addr, &sin6->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

void linkstate_addr_event(struct linkstate_event *ev, int family, const void *addr,
			  int ifindex, bool still_local)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = LS_EV_ADDR_DEL;
	ev->family = family;
	memcpy(ev->addr, addr, family == AF_INET6 ? 16 : 4);
	ev->ifindex = ifindex;
	ev->still_local = still_local;
}

static bool addr_is_ours(const struct linkstate *s, const struct linkstate_event *ev)
{
	size_t len = s->family == AF_INET6 ? 16 : 4;

	return ev->family == s->family && memcmp(ev->addr, s->addr, len) == 0;
}

static enum linkstate_decision close_now(struct linkstate *s, enum linkstate_decision d)
{
	s->closed = true;
	return d;
}

/*
 * The path flags changed (or may have): compare "suspended" before and after.
 * A path that comes back after the deadline does not resume: the timer may
 * simply not have run yet in this loop iteration.
 */
static enum linkstate_decision path_changed(struct linkstate *s, bool was, uint64_t now,
					    uint64_t grace)
{
	bool is = linkstate_suspended(s);

	if (!was && is) {
		/* linkGraceSeconds 0: no patience at all. */
		if (grace == 0)
			return close_now(s, LS_CLOSE_GRACE_EXPIRED);
		s->deadline = now + grace;
		return LS_SUSPEND;
	}
	if (was && now >= s->deadline)
		return close_now(s, LS_CLOSE_GRACE_EXPIRED);
	if (was && !is)
		return LS_RESUME;
	return LS_NONE;
}

enum linkstate_decision linkstate_step(struct linkstate *s, const struct linkstate_event *ev,
				       uint64_t now_ms, uint64_t grace_ms)
{
	bool was = linkstate_suspended(s);

	if (s->closed)
		return LS_NONE;

	switch (ev->type) {
	case LS_EV_ADDR_DEL:
		/* The same address on another interface keeps the 4-tuple valid
		 * (weak host model); the route check covers where it leaves by. */
		if (addr_is_ours(s, ev) && !ev->still_local)
			return close_now(s, LS_CLOSE);
		return LS_NONE;

	case LS_EV_LINK_GONE:
		if (s->ifindex && ev->ifindex == s->ifindex)
			return close_now(s, LS_CLOSE);
		return LS_NONE;

	case LS_EV_LINK:
		if (!s->watch_path || !s->ifindex || ev->ifindex != s->ifindex)
			return LS_NONE;
		s->carrier_down = !ev->running;
		return path_changed(s, was, now_ms, grace_ms);

	case LS_EV_ROUTE:
		if (ev->route_err) {
			/* No route at all: like a lost carrier, TCP survives a
			 * route that comes back; the portal cannot dial, so it
			 * only cares about the address. */
			if (!s->watch_path)
				return LS_NONE;
			s->no_route = true;
			return path_changed(s, was, now_ms, grace_ms);
		}
		if (ev->ifindex <= 0)
			return LS_NONE;
		if (!s->ifindex)
			s->ifindex = ev->ifindex;
		/* Our packets would now leave by another interface, still with
		 * the old source address, which that path may not route back
		 * (and the old interface is no longer ours to wait for): treat
		 * it as the address gone, start over on a fresh connection. */
		if (ev->ifindex != s->ifindex)
			return close_now(s, LS_CLOSE);
		if (!s->watch_path)
			return LS_NONE;
		s->no_route = false;
		return path_changed(s, was, now_ms, grace_ms);

	case LS_EV_TICK:
		if (was && now_ms >= s->deadline)
			return close_now(s, LS_CLOSE_GRACE_EXPIRED);
		return LS_NONE;
	}
	return LS_NONE;
}

const char *linkstate_decision_str(enum linkstate_decision d)
{
	switch (d) {
	case LS_NONE: return "none";
	case LS_CLOSE: return "close";
	case LS_SUSPEND: return "suspend";
	case LS_RESUME: return "resume";
	case LS_CLOSE_GRACE_EXPIRED: return "close (grace expired)";
	}
	return "?";
}
