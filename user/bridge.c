// SPDX-License-Identifier: MIT
/*
 * Bridge (private side, mux server): dials tunnels to the portal, keeps
 * enough of them open (V2Ray's monitor rule), answers the control session
 * locally and dispatches user sessions through routing to outbounds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "control.h"
#include "linkwatch.h"
#include "log.h"
#include "policy.h"
#include "proxy.h"
#include "router.h"

#define BRIDGE_REDIAL_MIN_MS 500 /* after a tunnel dies: redial soon, not in a loop */

static void monitor_fired(struct loop *l, void *ctx);

static const struct config_outbound *route_outbound(struct proxy *px, const char *inbound_tag,
						    const struct mux_target *target, const char **tag_out)
{
	const char *tag = router_route(px->cfg, inbound_tag, target);

	if (!tag) /* V2Ray: no rule matched -> the first outbound */
		tag = px->cfg->n_outbounds ? px->cfg->outbounds[0].tag : NULL;
	*tag_out = tag;
	return tag ? config_find_outbound(px->cfg, tag) : NULL;
}

static void tunnel_dialed(struct proxy *px, void *ctx, int fd, bool connecting, int err)
{
	struct bridge *b = ctx;
	struct tunnel *t;

	if (err) {
		log_warn("bridge %s: cannot reach the portal: %s", b->cfg->tag, strerror(-err));
		return;
	}
	t = tunnel_new(px, fd, TUNNEL_BRIDGE, connecting, b->cfg->domain);
	if (!t) {
		close(fd);
		return;
	}
	t->bridge = b;
	if (tunnel_list_add(&b->tunnels, t) < 0) {
		tunnel_close(t, "out of memory");
		return;
	}
	if (!connecting)
		bridge_tunnel_connected(t);
}

static void bridge_dial(struct bridge *b)
{
	struct proxy *px = b->px;
	struct mux_target target;
	const struct config_outbound *ob;
	const char *tag;

	if (mux_target_from_host(&target, MUX_NET_TCP, b->cfg->domain, 0) < 0) {
		log_err("bridge %s: invalid domain \"%s\"", b->cfg->tag, b->cfg->domain);
		return;
	}
	ob = route_outbound(px, b->cfg->tag, &target, &tag);
	if (!ob) {
		log_warn("bridge %s: no outbound for the tunnel (%s)", b->cfg->tag, tag ? tag : "no rule");
		return;
	}
	b->last_dial_ms = loop_now(px->loop);
	outbound_dial(px, ob, &target, tunnel_dialed, b);
}

static void monitor_fired(struct loop *l, void *ctx)
{
	struct bridge *b = ctx;
	struct proxy *px = b->px;
	struct bridge_tunnel_view v[256];
	uint64_t idle_ms = px->cfg->revsock.tunnel_idle_timeout_s * 1000ULL;
	size_t n = 0;

	if (px->stopping)
		return;
	for (size_t i = 0; i < b->tunnels.n; i++) {
		struct tunnel *t = b->tunnels.v[i];
		bool active = !t->closed && !t->draining && !t->suspended;

		if (active && !t->connecting &&
		    bridge_tunnel_idle_expired(active, t->last_rx_ms, loop_now(l), idle_ms)) {
			char why[96];

			snprintf(why, sizeof(why), "no byte from the portal for %us",
				 px->cfg->revsock.tunnel_idle_timeout_s);
			tunnel_close(t, why); /* removes itself from b->tunnels */
			i--;
			continue;
		}
		if (n < 256)
			v[n++] = (struct bridge_tunnel_view){ .active = active,
							      .live_sessions = t->live_sessions + t->control_open };
	}
	if (bridge_should_open_tunnel(v, n) && linkwatch_bridge_may_dial(px->linkwatch, b))
		bridge_dial(b);
	loop_timer_arm(l, &b->monitor, BRIDGE_MONITOR_MS, monitor_fired, b);
}

void bridge_monitor_now(struct bridge *b)
{
	uint64_t now = loop_now(b->px->loop), delay = 0;

	if (b->px->stopping)
		return;
	if (now < b->last_dial_ms + BRIDGE_REDIAL_MIN_MS)
		delay = b->last_dial_ms + BRIDGE_REDIAL_MIN_MS - now;
	loop_timer_arm(b->px->loop, &b->monitor, delay, monitor_fired, b);
}

/* A path to the portal just appeared (netlink): dial now, no throttle. */
void bridge_dial_now(struct bridge *b)
{
	if (!b->px->stopping)
		loop_timer_arm(b->px->loop, &b->monitor, 0, monitor_fired, b);
}

int bridge_start(struct bridge *b)
{
	loop_timer_arm(b->px->loop, &b->monitor, 0, monitor_fired, b);
	return 0;
}

void bridge_tunnel_connected(struct tunnel *t)
{
	char addr[80];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(t->io.fd, (struct sockaddr *)&ss, &len) == 0)
		snprintf(t->peer, sizeof(t->peer), "%s", sockaddr_str((struct sockaddr *)&ss, addr, sizeof(addr)));
	t->last_rx_ms = loop_now(t->px->loop);
	log_info("tunnel %llu connected to %s (bridge %s)", (unsigned long long)t->id, t->peer, t->bridge->cfg->tag);
	linkwatch_tunnel_up(t->px->linkwatch, t);
}

void bridge_tunnel_gone(struct tunnel *t)
{
	struct bridge *b = t->bridge;

	if (b)
		tunnel_list_remove(&b->tunnels, t);
	/* A lost tunnel is replaced at once, not at the next 2 s tick. */
	if (b && !t->draining)
		bridge_monitor_now(b);
}

void bridge_control_block(struct tunnel *t, const uint8_t *data, size_t len)
{
	struct control_msg m;
	enum control_state state;

	if (control_decode_msg(data, len, &m) < 0) {
		log_warn("tunnel %llu: unparsable Control message (%zu bytes) ignored", (unsigned long long)t->id, len);
		return;
	}
	tunnel_peer_flow(t, &m); /* revsock's flow control (a revsock portal) */
	state = m.state;
	if (state == CONTROL_DRAIN && !t->draining) {
		t->draining = true;
		log_info("tunnel %llu: portal sent DRAIN; opening a replacement", (unsigned long long)t->id);
		bridge_monitor_now(t->bridge);
	} else if (state == CONTROL_ACTIVE) {
		t->draining = false;
	}
}

static void session_dialed(struct proxy *px, void *ctx, int fd, bool connecting, int err)
{
	struct session *s = ctx;

	if (err) {
		session_end(s, true, strerror(-err));
		return;
	}
	if (session_attach_fd(s, fd, connecting) < 0) {
		close(fd);
		session_end(s, true, "cannot watch the socket");
	}
}

void bridge_new_session(struct tunnel *t, const struct mux_frame *f)
{
	struct proxy *px = t->px;
	const struct config_outbound *ob;
	const char *tag;
	struct session *s;
	char host[300];

	ob = route_outbound(px, t->bridge->cfg->tag, &f->target, &tag);
	if (!ob || ob->protocol != OUTBOUND_FREEDOM) {
		log_info("tunnel %llu session %u to %s:%u: %s", (unsigned long long)t->id, f->session_id,
			 mux_addr_str(&f->target.addr, host, sizeof(host)), f->target.port,
			 ob ? "blocked (blackhole)" : "no outbound");
		tunnel_send_frame(t, &(struct mux_frame){ .session_id = f->session_id, .status = MUX_END,
							  .option = ob ? 0 : MUX_OPT_ERROR }, NULL, 0);
		return;
	}
	s = session_new_bridge(t, f->session_id, f->target.network == MUX_NET_UDP ? SESSION_UDP : SESSION_TCP);
	if (!s) {
		tunnel_send_frame(t, &(struct mux_frame){ .session_id = f->session_id, .status = MUX_END,
							  .option = MUX_OPT_ERROR }, NULL, 0);
		return;
	}
	s->connecting = true;
	outbound_dial(px, ob, &f->target, session_dialed, s);
}
