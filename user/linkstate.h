/* SPDX-License-Identifier: MIT */
/*
 * What a link, address or route event means for one tunnel.  Pure: no I/O,
 * the clock is an argument.  The glue (user/linkwatch.c) feeds it events from
 * the netlink monitor and carries the decision out on the tunnel.
 *
 * Two kinds of trouble, handled differently because TCP reacts differently:
 *  - address gone (the local address is deleted, or the route to the peer now
 *    leaves by another interface): the connection's 4-tuple can never carry a
 *    packet again, so waiting is pointless -> CLOSE at once.
 *  - carrier lost (IFF_RUNNING cleared, or no route at all, address still
 *    there): TCP retransmits and may well survive -> SUSPEND (no new sessions,
 *    keep live ones, dial a replacement) and start a grace period; RESUME when
 *    the path is back before it ends, CLOSE_GRACE_EXPIRED otherwise.
 */
#ifndef REVSOCK_LINKSTATE_H
#define REVSOCK_LINKSTATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum linkstate_decision {
	LS_NONE = 0,
	LS_CLOSE,               /* address gone: close now, End+Error its sessions */
	LS_SUSPEND,             /* carrier lost: no new sessions, dial a replacement */
	LS_RESUME,              /* path back within the grace period */
	LS_CLOSE_GRACE_EXPIRED, /* path still down when the grace period ended */
};

enum linkstate_event_type {
	LS_EV_ADDR_DEL = 1, /* family/addr deleted; still_local: present elsewhere */
	LS_EV_LINK,         /* ifindex's IFF_RUNNING is now `running` */
	LS_EV_LINK_GONE,    /* ifindex deleted */
	LS_EV_ROUTE,        /* a fresh route lookup to the peer: route_err or oif */
	LS_EV_TICK,         /* time passes (the grace timer fired) */
};

struct linkstate_event {
	enum linkstate_event_type type;
	int family;          /* ADDR_DEL: AF_INET or AF_INET6 */
	uint8_t addr[16];    /* ADDR_DEL: network byte order */
	bool still_local;    /* ADDR_DEL: another interface still holds the address */
	int ifindex;         /* LINK, LINK_GONE; ROUTE: the output interface */
	bool running;        /* LINK */
	int route_err;       /* ROUTE: 0, or the lookup's negative errno */
};

struct linkstate {
	int family;          /* AF_INET or AF_INET6 (v4-mapped IPv6 becomes AF_INET) */
	uint8_t addr[16];    /* the tunnel's local address */
	int ifindex;         /* the interface it leaves by; 0 = not known yet */
	bool watch_path;     /* bridge: carrier/route loss suspends; portal: ignored */
	bool carrier_down;   /* the link lost IFF_RUNNING */
	bool no_route;       /* the last route lookup found no route to the peer */
	uint64_t deadline;   /* grace period end (ms), meaningful while suspended */
	bool closed;         /* a CLOSE* decision was returned: nothing more happens */
};

/*
 * Start watching a tunnel whose local address is `local` (from getsockname)
 * and which leaves by `ifindex` (0 when unknown: the first ROUTE event sets
 * it).  Returns 0, or -EAFNOSUPPORT for a family other than IPv4/IPv6.
 */
int linkstate_init(struct linkstate *s, const struct sockaddr *local, int ifindex,
		   bool watch_path);

static inline bool linkstate_suspended(const struct linkstate *s)
{
	return !s->closed && (s->carrier_down || s->no_route);
}

/*
 * Apply one event at time now_ms (grace_ms is revsock.linkGraceSeconds in ms)
 * and return what the tunnel must do.  Idempotent for repeated events: a
 * second "link down" while suspended returns LS_NONE.  After a CLOSE* every
 * call returns LS_NONE.  While suspended the caller arms a timer for
 * s->deadline and feeds LS_EV_TICK when it fires.  grace_ms 0 turns a
 * suspension into LS_CLOSE_GRACE_EXPIRED at once.
 */
enum linkstate_decision linkstate_step(struct linkstate *s, const struct linkstate_event *ev,
				       uint64_t now_ms, uint64_t grace_ms);

/* "close", "suspend", ... for log lines. */
const char *linkstate_decision_str(enum linkstate_decision d);

/* Fill an LS_EV_ADDR_DEL event from a raw address (4 or 16 bytes). */
void linkstate_addr_event(struct linkstate_event *ev, int family, const void *addr,
			  int ifindex, bool still_local);

#endif
