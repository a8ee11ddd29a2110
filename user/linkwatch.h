/* SPDX-License-Identifier: MIT */
/*
 * Glue between the netlink monitor (netlink.c), the per-tunnel decision
 * (linkstate.c) and the tunnels (proxy.h): carries the decisions out.
 *
 *   address gone      -> tunnel_close at once (the bridge then redials)
 *   carrier lost      -> t->suspended (picker and bridge monitor skip it),
 *                        the bridge redials if a route by a running link exists,
 *                        grace timer; back in time -> resume, else close
 *   route appears     -> the bridge redials now, not at its next 2 s tick
 *
 * Wiring (proxy.c / bridge.c / portal.c):
 *   proxy_start:              px->linkwatch = linkwatch_start(px);  (NULL: run without)
 *   proxy_free:               linkwatch_stop(px->linkwatch);
 *   bridge_tunnel_connected,
 *   portal_tunnel_accepted:   linkwatch_tunnel_up(px->linkwatch, t);
 *   before bridge_dial:       if (!linkwatch_bridge_may_dial(px->linkwatch, b)) skip
 *   portal_pick:              prefer tunnels with !linkwatch_tunnel_stalled(t)
 * Closed tunnels need no call: entries are dropped lazily by tunnel id.
 * Tunnels never announced are adopted at the next event (their interface is
 * then learned late, so a route change before that goes unnoticed).
 */
#ifndef REVSOCK_LINKWATCH_H
#define REVSOCK_LINKWATCH_H

#include <stdbool.h>

struct proxy;
struct tunnel;
struct bridge;
struct linkwatch;

/* NULL (with a warning logged) when netlink is unavailable. */
struct linkwatch *linkwatch_start(struct proxy *px);
void linkwatch_stop(struct linkwatch *lw);

/* A tunnel is connected: learn its local address and outgoing interface. */
void linkwatch_tunnel_up(struct linkwatch *lw, struct tunnel *t);

/* False when the route to this bridge's portal leaves by a link without
 * carrier (a SYN there is lost); true when unknown or lw is NULL. */
bool linkwatch_bridge_may_dial(struct linkwatch *lw, struct bridge *b);

/*
 * The portal cannot see the bridge's links: when the bridge's address goes,
 * the portal's tunnel socket just stops being acked.  True while the tunnel
 * is in retransmission timeout with nothing acked since (TCP_INFO).  For the
 * picker: prefer tunnels that are not stalled, fall back to them if all are.
 */
bool linkwatch_tunnel_stalled(const struct tunnel *t);

#endif
