// SPDX-License-Identifier: MIT
/*
 * Link glue: netlink events -> linkstate decisions -> tunnel actions.
 *
 * Per tunnel we keep a struct linkstate keyed by tunnel id (ids are never
 * reused, pointers are), matched against px->all_tunnels at every event:
 * the tunnel layer needs no "closed" hook and we never hold a pointer to a
 * freed tunnel.  Route lookups are synchronous kernel queries; one pass over
 * the tunnels asks once per (peer, local) address pair.
 */
#include "linkwatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <uthash.h>

#include "linkstate.h"
#include "log.h"
#include "loop.h"
#include "netlink.h"
#include "proxy.h"

struct lw_ent {
	UT_hash_handle hh;          /* lw->ents, by id */
	struct linkwatch *lw;
	uint64_t id;
	struct tunnel *t;           /* valid from lw_sync() to the end of the callback */
	uint32_t seen;              /* lw_sync() generation */
	struct linkstate s;
	struct sockaddr_storage local, peer;
	struct loop_timer grace;
};

#define ROUTE_CACHE 16

struct route_cache {            /* one pass: lookups by address pair */
	size_t n;
	struct {
		struct sockaddr_storage dst, src;
		int err, oif;
	} e[ROUTE_CACHE];
};

struct linkwatch {
	struct proxy *px;
	struct linkmon *mon;
	uint64_t grace_ms;
	struct lw_ent *ents;
	uint32_t gen;
	struct sockaddr_storage *portal; /* per bridge: where its tunnels went */
};

/* ------------------------------------------------------------- helpers */

static const char *ifname(struct linkwatch *lw, int ifindex, char buf[IF_NAMESIZE])
{
	if (ifindex <= 0)
		return "?";
	return linkmon_link_name(lw->mon, ifindex, buf);
}

static const char *ip_str(int family, const void *addr, char *buf, size_t cap)
{
	if (!inet_ntop(family, addr, buf, (socklen_t)cap))
		snprintf(buf, cap, "?");
	return buf;
}

/* Same address, ports ignored (v4-mapped not folded: both come from one socket). */
static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
	return false;
}

static void route_lookup(struct linkwatch *lw, struct route_cache *rc,
			 const struct sockaddr_storage *dst, const struct sockaddr_storage *src,
			 int *err, int *oif)
{
	for (size_t i = 0; rc && src && i < rc->n; i++) {
		if (same_ip(&rc->e[i].dst, dst) && same_ip(&rc->e[i].src, src)) {
			*err = rc->e[i].err;
			*oif = rc->e[i].oif;
			return;
		}
	}
	*oif = 0;
	*err = linkmon_route_get(lw->mon, (const struct sockaddr *)dst,
				 src ? (const struct sockaddr *)src : NULL, oif);
	if (rc && src && rc->n < ROUTE_CACHE) {
		rc->e[rc->n].dst = *dst;
		rc->e[rc->n].src = *src;
		rc->e[rc->n].err = *err;
		rc->e[rc->n].oif = *oif;
		rc->n++;
	}
}

static struct sockaddr_storage *bridge_portal(struct linkwatch *lw, struct bridge *b)
{
	size_t i = (size_t)(b - lw->px->bridges);

	return i < lw->px->n_bridges ? &lw->portal[i] : NULL;
}

static void ent_free(struct linkwatch *lw, struct lw_ent *e)
{
	HASH_DEL(lw->ents, e);
	loop_timer_disarm(lw->px->loop, &e->grace);
	free(e);
}

/* ---------------------------------------------------------- bookkeeping */

static struct lw_ent *ent_add(struct linkwatch *lw, struct tunnel *t)
{
	struct lw_ent *e = calloc(1, sizeof(*e));
	socklen_t llen = sizeof(e->local), plen = sizeof(e->peer);
	char a[80], b[80], n[IF_NAMESIZE];
	int err, oif;

	if (!e)
		return NULL;
	if (getsockname(t->io.fd, (struct sockaddr *)&e->local, &llen) < 0 ||
	    getpeername(t->io.fd, (struct sockaddr *)&e->peer, &plen) < 0) {
		log_debug("tunnel %llu: no addresses (%s): not watched", (unsigned long long)t->id,
			  strerror(errno));
		free(e);
		return NULL;
	}
	route_lookup(lw, NULL, &e->peer, &e->local, &err, &oif);
	if (linkstate_init(&e->s, (struct sockaddr *)&e->local, err ? 0 : oif,
			   t->role == TUNNEL_BRIDGE) < 0) {
		free(e);
		return NULL;
	}
	e->lw = lw;
	e->id = t->id;
	e->t = t;
	e->seen = lw->gen;
	HASH_ADD(hh, lw->ents, id, sizeof(e->id), e);
	if (t->role == TUNNEL_BRIDGE && t->bridge) {
		struct sockaddr_storage *p = bridge_portal(lw, t->bridge);

		if (p)
			*p = e->peer;
	}
	log_debug("tunnel %llu: %s -> %s leaves by %s", (unsigned long long)t->id,
		  sockaddr_str((struct sockaddr *)&e->local, a, sizeof(a)),
		  sockaddr_str((struct sockaddr *)&e->peer, b, sizeof(b)),
		  err ? strerror(-err) : ifname(lw, oif, n));
	return e;
}

/* Match entries to live tunnels: adopt the unknown, drop the closed. */
static void lw_sync(struct linkwatch *lw)
{
	struct lw_ent *e, *tmp;
	struct tunnel *t;

	lw->gen++;
	for (t = lw->px->all_tunnels; t; t = t->all_next) {
		if (t->closed)
			continue;
		HASH_FIND(hh, lw->ents, &t->id, sizeof(t->id), e);
		if (e) {
			e->t = t;
			e->seen = lw->gen;
		} else if (!t->connecting) {
			ent_add(lw, t);
		}
	}
	HASH_ITER(hh, lw->ents, e, tmp)
		if (e->seen != lw->gen)
			ent_free(lw, e);
}

/* ----------------------------------------------------------- the bridge */

bool linkwatch_bridge_may_dial(struct linkwatch *lw, struct bridge *b)
{
	struct sockaddr_storage *portal;
	int err, oif = 0;

	if (!lw)
		return true;
	portal = bridge_portal(lw, b);
	if (!portal || !portal->ss_family)
		return true; /* never connected: let the dial find out */
	route_lookup(lw, NULL, portal, NULL, &err, &oif);
	if (err == -ENETUNREACH || err == -EHOSTUNREACH)
		return false;
	return err || linkmon_link_running(lw->mon, oif) != 0;
}

static bool bridge_has_usable_tunnel(const struct bridge *b)
{
	for (size_t i = 0; i < b->tunnels.n; i++) {
		const struct tunnel *t = b->tunnels.v[i];

		if (!t->closed && !t->draining && !t->suspended)
			return true;
	}
	return false;
}

/* A path to the portal may have appeared: bridges without a usable tunnel
 * dial now rather than at their next 2 s tick. */
static void bridges_redial(struct linkwatch *lw)
{
	struct proxy *px = lw->px;

	for (size_t i = 0; i < px->n_bridges; i++) {
		struct bridge *b = &px->bridges[i];

		if (!bridge_has_usable_tunnel(b) && linkwatch_bridge_may_dial(lw, b))
			bridge_dial_now(b);
	}
}

/*
 * A dial still in progress when the carrier returns sent its SYN while the
 * link had none; its retransmission backoff (1 s, 3 s, ...) would delay the
 * replacement.  Start it again.
 */
static void restart_dials_on(struct linkwatch *lw, int ifindex)
{
	struct tunnel *t, *next;
	char n[IF_NAMESIZE], why[96];

	for (t = lw->px->all_tunnels; t; t = next) {
		struct sockaddr_storage local, *portal;
		socklen_t len = sizeof(local);
		int err, oif;

		next = t->all_next;
		if (t->closed || !t->connecting || t->role != TUNNEL_BRIDGE || !t->bridge)
			continue;
		portal = bridge_portal(lw, t->bridge);
		if (!portal || !portal->ss_family ||
		    getsockname(t->io.fd, (struct sockaddr *)&local, &len) < 0)
			continue;
		route_lookup(lw, NULL, portal, &local, &err, &oif);
		if (err || oif != ifindex)
			continue;
		snprintf(why, sizeof(why), "dialed while %s had no carrier; dialing again",
			 ifname(lw, ifindex, n));
		tunnel_close(t, why); /* the bridge redials at once */
	}
}

/* ------------------------------------------------------------ decisions */

/* The bridge ends each session with End+Error: its user must not take a
 * cut stream for a complete one. */
static void close_tunnel(struct linkwatch *lw, struct lw_ent *e, const char *why)
{
	struct tunnel *t = e->t;
	struct session *s, *tmp;

	ent_free(lw, e);
	HASH_ITER(hh, t->sessions, s, tmp)
		session_end(s, true, NULL);
	tunnel_close(t, why);
}

static void grace_fired(struct loop *l, void *ctx);

/* `what` names the event and its interface; one log line results (for a
 * close it is the "tunnel <id> closed: <reason>" line). */
static void carry_out(struct linkwatch *lw, struct lw_ent *e, enum linkstate_decision d,
		      const char *what)
{
	struct tunnel *t = e->t;
	struct loop *l = lw->px->loop;
	unsigned long long grace_s = lw->grace_ms / 1000;
	uint64_t now = loop_now(l);
	char why[192];

	switch (d) {
	case LS_NONE:
		return;
	case LS_CLOSE:
		snprintf(why, sizeof(why), "%s: local address gone", what);
		close_tunnel(lw, e, why);
		return;
	case LS_CLOSE_GRACE_EXPIRED:
		snprintf(why, sizeof(why), "%s: path not back within %llus (linkGraceSeconds)", what, grace_s);
		close_tunnel(lw, e, why);
		return;
	case LS_SUSPEND: {
		bool dial = t->role == TUNNEL_BRIDGE && t->bridge &&
			    linkwatch_bridge_may_dial(lw, t->bridge);

		t->suspended = true;
		loop_timer_arm(l, &e->grace, e->s.deadline > now ? e->s.deadline - now : 0,
			       grace_fired, e);
		log_info("tunnel %llu: %s: suspended (no new sessions, live ones kept, %llus grace)%s",
			 (unsigned long long)t->id, what, grace_s,
			 t->role != TUNNEL_BRIDGE ? "" :
			 dial ? "; dialing a replacement" : "; no other route to the portal yet");
		if (dial)
			bridge_monitor_now(t->bridge);
		return;
	}
	case LS_RESUME:
		t->suspended = false;
		loop_timer_disarm(l, &e->grace);
		log_info("tunnel %llu: %s: resumed within the grace period", (unsigned long long)t->id, what);
		return;
	}
}

static void step(struct linkwatch *lw, struct lw_ent *e, const struct linkstate_event *ev,
		 const char *what)
{
	enum linkstate_decision d = linkstate_step(&e->s, ev, loop_now(lw->px->loop), lw->grace_ms);

	carry_out(lw, e, d, what);
}

static void grace_fired(struct loop *l, void *ctx)
{
	struct lw_ent *e = ctx;
	struct linkwatch *lw = e->lw;
	uint64_t id = e->id;
	struct linkstate_event ev = { .type = LS_EV_TICK };

	if (lw->px->stopping)
		return;
	lw_sync(lw); /* may free e */
	HASH_FIND(hh, lw->ents, &id, sizeof(id), e);
	if (e) {
		char n[IF_NAMESIZE], what[64];

		snprintf(what, sizeof(what), "%s on %s",
			 e->s.carrier_down ? "carrier still lost" : "still no route",
			 ifname(lw, e->s.ifindex, n));
		step(lw, e, &ev, what);
	}
}

/* ------------------------------------------------------ monitor events */

static void on_addr(void *ctx, bool added, int family, const void *addr, int ifindex)
{
	struct linkwatch *lw = ctx;
	struct lw_ent *e, *tmp;
	struct linkstate_event ev;
	char a[INET6_ADDRSTRLEN], n[IF_NAMESIZE], what[96];

	if (lw->px->stopping)
		return;
	lw_sync(lw);
	if (added) {
		bridges_redial(lw);
		return;
	}
	linkstate_addr_event(&ev, family, addr, ifindex, linkmon_addr_local(lw->mon, family, addr));
	snprintf(what, sizeof(what), "address %s deleted from %s", ip_str(family, addr, a, sizeof(a)),
		 ifname(lw, ifindex, n));
	HASH_ITER(hh, lw->ents, e, tmp)
		step(lw, e, &ev, what);
}

static void on_link(void *ctx, int ifindex, bool running, bool gone)
{
	struct linkwatch *lw = ctx;
	struct lw_ent *e, *tmp;
	struct linkstate_event ev = {
		.type = gone ? LS_EV_LINK_GONE : LS_EV_LINK, .ifindex = ifindex, .running = running,
	};
	char n[IF_NAMESIZE], what[64];

	if (lw->px->stopping)
		return;
	snprintf(what, sizeof(what), "%s %s", gone ? "deleted interface" :
		 running ? "carrier back on" : "carrier lost on", ifname(lw, ifindex, n));
	lw_sync(lw);
	HASH_ITER(hh, lw->ents, e, tmp)
		step(lw, e, &ev, what);
	if (running) {
		restart_dials_on(lw, ifindex);
		bridges_redial(lw);
	}
}

static void on_routes(void *ctx)
{
	struct linkwatch *lw = ctx;
	struct route_cache rc = { 0 };
	struct lw_ent *e, *tmp;
	char n[IF_NAMESIZE], n2[IF_NAMESIZE], what[128];

	if (lw->px->stopping)
		return;
	lw_sync(lw);
	HASH_ITER(hh, lw->ents, e, tmp) {
		struct linkstate_event ev = { .type = LS_EV_ROUTE };

		route_lookup(lw, &rc, &e->peer, &e->local, &ev.route_err, &ev.ifindex);
		if (ev.route_err)
			snprintf(what, sizeof(what), "route to the peer by %s lost (%s)",
				 ifname(lw, e->s.ifindex, n), strerror(-ev.route_err));
		else if (ev.ifindex != e->s.ifindex && e->s.ifindex)
			snprintf(what, sizeof(what), "route to the peer moved from %s to %s",
				 ifname(lw, e->s.ifindex, n), ifname(lw, ev.ifindex, n2));
		else
			snprintf(what, sizeof(what), "route to the peer back by %s", ifname(lw, ev.ifindex, n));
		step(lw, e, &ev, what);
	}
	bridges_redial(lw);
}

static const struct linkmon_ops ops = {
	.addr_changed = on_addr,
	.link_changed = on_link,
	.routes_changed = on_routes,
};

/* --------------------------------------------------------- the portal */

bool linkwatch_tunnel_stalled(const struct tunnel *t)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (t->closed || t->connecting ||
	    getsockopt(t->io.fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return false;
	/* A retransmission timeout fired and nothing has been acked since:
	 * the path is broken right now (a lost segment recovered by fast
	 * retransmit does not count). */
	return ti.tcpi_retransmits > 0 || ti.tcpi_backoff > 0;
}

/* ------------------------------------------------------------ lifecycle */

struct linkwatch *linkwatch_start(struct proxy *px)
{
	struct linkwatch *lw = calloc(1, sizeof(*lw));

	if (!lw)
		goto fail;
	lw->px = px;
	lw->grace_ms = px->cfg->revsock.link_grace_s * 1000ULL;
	lw->portal = calloc(px->n_bridges ? px->n_bridges : 1, sizeof(*lw->portal));
	if (!lw->portal)
		goto fail;
	lw->mon = linkmon_new(px->loop, &ops, lw);
	if (!lw->mon)
		goto fail;
	return lw;

fail:
	log_warn("netlink monitor unavailable (%s): link, address and route changes are not followed",
		 strerror(errno ? errno : ENOMEM));
	if (lw)
		free(lw->portal);
	free(lw);
	return NULL;
}

void linkwatch_tunnel_up(struct linkwatch *lw, struct tunnel *t)
{
	struct lw_ent *e;

	if (!lw || t->closed)
		return;
	HASH_FIND(hh, lw->ents, &t->id, sizeof(t->id), e);
	if (!e)
		ent_add(lw, t);
}

void linkwatch_stop(struct linkwatch *lw)
{
	struct lw_ent *e, *tmp;

	if (!lw)
		return;
	HASH_ITER(hh, lw->ents, e, tmp)
		ent_free(lw, e);
	linkmon_free(lw->mon);
	free(lw->portal);
	free(lw);
}
