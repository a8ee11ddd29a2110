// SPDX-License-Identifier: MIT
#include "policy.h"

static int pick_pass(const struct picker_view *v, size_t n, bool allow_stalled)
{
	int best = -1;
	unsigned best_live = 0;

	for (size_t i = 0; i < n; i++) {
		if (v[i].closed || v[i].suspended || v[i].draining || (v[i].stalled && !allow_stalled))
			continue;
		if (best < 0 || v[i].live_sessions < best_live) {
			best = (int)i;
			best_live = v[i].live_sessions;
		}
	}
	if (best >= 0)
		return best;
	/* V2Ray's pass 2: every worker draining; it still uses one that is
	 * not closed rather than failing the user. */
	for (size_t i = 0; i < n; i++) {
		if (v[i].closed || v[i].suspended || (v[i].stalled && !allow_stalled))
			continue;
		if (best < 0 || v[i].live_sessions < best_live) {
			best = (int)i;
			best_live = v[i].live_sessions;
		}
	}
	return best;
}

int picker_pick(const struct picker_view *v, size_t n)
{
	int best = pick_pass(v, n, false);

	return best >= 0 ? best : pick_pass(v, n, true);
}

enum heartbeat_action portal_heartbeat(uint32_t total_sessions, bool draining, bool closed)
{
	if (draining || closed)
		return HEARTBEAT_NONE;
	if (total_sessions > PORTAL_DRAIN_AFTER_SESSIONS)
		return HEARTBEAT_DRAIN;
	return HEARTBEAT_ACTIVE;
}

bool portal_drained_tunnel_may_close(bool draining, unsigned live_user_sessions, bool replacement_up)
{
	return draining && live_user_sessions == 0 && replacement_up;
}

bool bridge_should_open_tunnel(const struct bridge_tunnel_view *v, size_t n)
{
	unsigned tunnels = 0, sessions = 0;

	for (size_t i = 0; i < n; i++) {
		if (!v[i].active)
			continue;
		tunnels++;
		sessions += v[i].live_sessions;
	}
	return tunnels == 0 || sessions / tunnels > BRIDGE_SESSIONS_PER_TUNNEL;
}

bool bridge_tunnel_idle_expired(bool active, uint64_t last_rx_ms, uint64_t now_ms,
				uint64_t idle_timeout_ms)
{
	return active && now_ms >= last_rx_ms && now_ms - last_rx_ms >= idle_timeout_ms;
}

uint16_t portal_next_session_id(uint16_t *counter, bool (*in_use)(void *ctx, uint16_t id), void *ctx)
{
	/* At most 65536 tries: the caller bounds live sessions far below that. */
	for (unsigned tries = 0; tries < 65536; tries++) {
		uint16_t id = ++*counter;

		if (id == 0)
			continue;
		if (in_use && in_use(ctx, id))
			continue;
		return id;
	}
	return 0;
}
