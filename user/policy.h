/* SPDX-License-Identifier: MIT */
/*
 * The reverse proxy's decisions, as pure functions of state and time:
 * which tunnel a portal picks, when a portal tunnel drains, when a bridge
 * opens a tunnel, when a bridge gives up on a silent tunnel.  No I/O, no
 * clock: the caller passes `now` (milliseconds) and carries out the result.
 * Numbers are V2Ray 4.34's (shared/reference/mux-cool-and-reverse.md §2).
 */
#ifndef REVSOCK_POLICY_H
#define REVSOCK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PORTAL_HEARTBEAT_MS 2000
#define PORTAL_DRAIN_AFTER_SESSIONS 256 /* drain once total sessions > 256 */
#define BRIDGE_MONITOR_MS 2000
#define BRIDGE_SESSIONS_PER_TUNNEL 16   /* open another when live/tunnels > 16 */

/* What the portal picker needs to know of one tunnel (V2Ray: a mux client worker). */
struct picker_view {
	unsigned live_sessions; /* including the control session */
	bool draining;
	bool closed;
	bool suspended;         /* link trouble: keep sessions, take no new ones */
	bool stalled;           /* in retransmission with nothing acked: likely dead */
};

/*
 * V2Ray's StaticMuxPicker, minus its quirk: closed (and suspended) tunnels are
 * never picked.  Pass 1: fewest live sessions among non-draining tunnels, ties
 * to the earliest.  Pass 2 (all draining): fewest among the rest.
 * Stalled tunnels are taken only when every other choice is gone: better a
 * slow tunnel than none.
 * Returns an index into v[0..n) or -1 when no tunnel can take a session.
 */
int picker_pick(const struct picker_view *v, size_t n);

enum heartbeat_action {
	HEARTBEAT_NONE = 0,     /* draining or closed: the task has stopped */
	HEARTBEAT_ACTIVE,       /* send Control{ACTIVE} on session 1 */
	HEARTBEAT_DRAIN,        /* send Control{DRAIN}, then End(session 1) */
};

/* At a heartbeat tick: total_sessions is the tunnel's allocation counter
 * (every session ever opened on it, control session included). */
enum heartbeat_action portal_heartbeat(uint32_t total_sessions, bool draining, bool closed);

/* A draining tunnel closes once its last user session has ended and a
 * replacement is up: until then new users still go to it (V2Ray's picker
 * pass 2), since a V2Ray bridge opens the replacement only at its next tick. */
bool portal_drained_tunnel_may_close(bool draining, unsigned live_user_sessions, bool replacement_up);

/* What the bridge monitor needs to know of one tunnel (V2Ray: a bridge worker). */
struct bridge_tunnel_view {
	bool active;            /* connected, not closed, last Control state ACTIVE */
	unsigned live_sessions; /* including its control session */
};

/* V2Ray's monitor rule over active tunnels: open one more when there are
 * none or when live sessions / tunnels (integer division) > 16. */
bool bridge_should_open_tunnel(const struct bridge_tunnel_view *v, size_t n);

/* An active tunnel silent (no byte from the portal) for idle_timeout_ms is
 * dead: close and replace it.  Drained tunnels are exempt: a portal stops
 * its heartbeats after DRAIN. */
bool bridge_tunnel_idle_expired(bool active, uint64_t last_rx_ms, uint64_t now_ms,
				uint64_t idle_timeout_ms);

/* Session ids on the portal (mux client): a per-tunnel counter, pre-
 * incremented, so the control session is 1 and users start at 2.  Unlike
 * V2Ray, skip 0 and ids still in use after the counter wraps. */
uint16_t portal_next_session_id(uint16_t *counter, bool (*in_use)(void *ctx, uint16_t id), void *ctx);

#endif
