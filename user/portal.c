// SPDX-License-Identifier: MIT
/*
 * Portal (public side, mux client): tunnels arrive on an inbound routed to
 * the portal's tag with the portal's domain as target; users arrive on other
 * inbounds routed to the same tag and are multiplexed over the tunnels.
 */
#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "linkwatch.h"
#include "log.h"
#include "policy.h"
#include "proxy.h"

static void heartbeat_fired(struct loop *l, void *ctx);

/* Is there a tunnel other than t that takes new sessions? */
static bool portal_has_replacement(const struct portal *p, const struct tunnel *t)
{
	for (size_t i = 0; i < p->tunnels.n; i++) {
		const struct tunnel *o = p->tunnels.v[i];

		if (o != t && !o->draining && !o->closed && !o->closing && !o->failed && !o->suspended)
			return true;
	}
	return false;
}

/* Close the drained tunnels that have no session left, now that they may. */
static void portal_reap_drained(struct portal *p)
{
	for (size_t i = 0; i < p->tunnels.n; i++) {
		struct tunnel *t = p->tunnels.v[i];

		if (!t->closed && portal_drained_tunnel_may_close(t->draining, t->live_sessions,
								   portal_has_replacement(p, t)))
			tunnel_finish(t, "drained");
	}
}

/* Send one Control message on the control session: random 0..63 bytes as V2Ray. */
static int send_control(struct tunnel *t, enum control_state state, bool as_new)
{
	uint8_t random[CONTROL_RANDOM_MAX + 1], msg[CONTROL_MAX_ENCODED];
	struct mux_frame f = { .session_id = MUX_CONTROL_SESSION_ID, .status = as_new ? MUX_NEW : MUX_KEEP };
	ssize_t n;

	if (RAND_bytes(random, sizeof(random)) != 1)
		return -EIO;
	n = control_encode(msg, sizeof(msg), state, random + 1, random[0] % (CONTROL_RANDOM_MAX + 1));
	if (n < 0)
		return (int)n;
	if (as_new)
		mux_target_from_host(&f.target, MUX_NET_UDP, MUX_CONTROL_DOMAIN, 0);
	/* V2Ray drops empty writes, so an empty ACTIVE message is not sent. */
	if (n == 0)
		return as_new ? tunnel_send_frame(t, &f, NULL, 0) : 0;
	return tunnel_send_frame(t, &f, msg, (size_t)n);
}

void portal_tunnel_start(struct tunnel *t)
{
	/* The control session is always the first id: 1. */
	t->next_id = MUX_CONTROL_SESSION_ID;
	t->total_sessions = 1;
	t->control_open = true;
	if (send_control(t, CONTROL_ACTIVE, true) < 0) {
		tunnel_close(t, "cannot open the control session");
		return;
	}
	/* revsock's hello: a revsock bridge may send flow_pause/flow_resume back
	 * on this session (a V2Ray bridge reads an ACTIVE message) */
	tunnel_send_revsock_hello(t);
	loop_timer_arm(t->px->loop, &t->heartbeat, PORTAL_HEARTBEAT_MS, heartbeat_fired, t);
}

static void heartbeat_fired(struct loop *l, void *ctx)
{
	struct tunnel *t = ctx;

	switch (portal_heartbeat(t->total_sessions, t->draining, t->closed)) {
	case HEARTBEAT_NONE:
		return;
	case HEARTBEAT_ACTIVE:
		if (send_control(t, CONTROL_ACTIVE, false) < 0)
			return;
		break;
	case HEARTBEAT_DRAIN:
		log_info("tunnel %llu draining after %u sessions", (unsigned long long)t->id, t->total_sessions);
		tunnel_flow_end(t); /* the control session closes: no resume could follow, either way */
		t->draining = true;
		if (send_control(t, CONTROL_DRAIN, false) == 0) {
			struct mux_frame end = { .session_id = MUX_CONTROL_SESSION_ID, .status = MUX_END };

			tunnel_send_frame(t, &end, NULL, 0);
		}
		t->control_open = false;
		portal_reap_drained(t->portal);
		return;
	}
	loop_timer_arm(l, &t->heartbeat, PORTAL_HEARTBEAT_MS, heartbeat_fired, t);
}

/* Control message from a revsock bridge on the control session (flow control). */
void portal_control_block(struct tunnel *t, const uint8_t *data, size_t len)
{
	struct control_msg m;

	if (control_decode_msg(data, len, &m) < 0) {
		log_warn("tunnel %llu: unparsable Control message from the bridge (%zu bytes) ignored",
			 (unsigned long long)t->id, len);
		return;
	}
	tunnel_peer_flow(t, &m);
}

void portal_tunnel_accepted(struct portal *p, int fd, const char *peer)
{
	struct tunnel *t = tunnel_new(p->px, fd, TUNNEL_PORTAL, false, peer);

	if (!t) {
		close(fd);
		return;
	}
	t->portal = p;
	if (tunnel_list_add(&p->tunnels, t) < 0) {
		tunnel_close(t, "out of memory");
		return;
	}
	log_info("tunnel %llu up from %s (portal %s)", (unsigned long long)t->id, peer, p->cfg->tag);
	linkwatch_tunnel_up(p->px->linkwatch, t);
	portal_tunnel_start(t);
	portal_reap_drained(p);
}

void portal_tunnel_gone(struct tunnel *t)
{
	if (t->portal)
		tunnel_list_remove(&t->portal->tunnels, t);
}

void portal_session_gone(struct tunnel *t)
{
	if (!t->closed && portal_drained_tunnel_may_close(t->draining, t->live_sessions,
							   portal_has_replacement(t->portal, t)))
		tunnel_finish(t, "drained");
}

static struct tunnel *portal_pick(struct portal *p)
{
	struct picker_view v[64];
	size_t n = p->tunnels.n < 64 ? p->tunnels.n : 64;
	int i;

	for (size_t k = 0; k < n; k++) {
		struct tunnel *t = p->tunnels.v[k];

		v[k] = (struct picker_view){
			.live_sessions = t->live_sessions + t->control_open,
			.draining = t->draining,
			.closed = t->closed || t->closing || t->failed,
			.suspended = t->suspended,
			.stalled = linkwatch_tunnel_stalled(t),
		};
	}
	i = picker_pick(v, n);
	return i < 0 ? NULL : p->tunnels.v[i];
}

void portal_user_accepted(struct portal *p, int fd, const struct mux_target *target)
{
	uint8_t *first = p->px->scratch;
	struct tunnel *t = portal_pick(p);
	ssize_t n;

	if (!t) {
		log_warn("portal %s: no tunnel available, user connection closed", p->cfg->tag);
		close(fd);
		return;
	}
	/* New goes out at once (V2Ray waits 100 ms); the first payload rides in
	 * it only if it has already arrived. */
	n = recv(fd, first, MUX_STREAM_DATA_MAX, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close(fd);
		return;
	}
	if (!tunnel_open_session(t, SESSION_TCP, fd, target, first, n > 0 ? (size_t)n : 0)) {
		log_warn("portal %s: cannot open a session on tunnel %llu", p->cfg->tag, (unsigned long long)t->id);
		close(fd);
	}
}

struct session *portal_udp_session(struct portal *p, struct udp_inbound *uin,
				   const struct sockaddr_storage *peer, socklen_t peer_len,
				   const struct mux_target *target, const uint8_t *first, size_t len)
{
	struct tunnel *t = portal_pick(p);
	struct session *s;

	if (!t) {
		log_warn("portal %s: no tunnel available, datagram dropped", p->cfg->tag);
		return NULL;
	}
	if (len > MUX_UDP_DATA_MAX)
		len = 0; /* oversized datagram: open the session without it */
	s = tunnel_open_session(t, SESSION_UDP_INBOUND, -1, target, first, len);
	if (!s)
		return NULL;
	s->uin = uin;
	memcpy(&s->peer, peer, sizeof(s->peer));
	s->peer_len = peer_len;
	HASH_ADD(hh_peer, uin->sessions, peer, sizeof(s->peer), s);
	session_touch_udp(s);
	return s;
}
