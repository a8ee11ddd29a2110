/* SPDX-License-Identifier: MIT */
/*
 * Routing: (inbound tag, target, network) -> outbound tag.  Pure.
 * V2Ray's field rules, first match wins; a rule matches when every condition
 * it names matches (inboundTag any-of, domain any-of, ip any-of, port any-of,
 * network).  A domain condition never matches an IP target and an ip
 * condition never matches a domain target (domainStrategy "AsIs").
 */
#ifndef REVSOCK_ROUTER_H
#define REVSOCK_ROUTER_H

#include "config.h"
#include "mux.h"

/* Returns the outbound tag of the first matching rule, or NULL when none
 * matches (the caller then uses the first outbound, as V2Ray does). */
const char *router_route(const struct config *c, const char *inbound_tag,
			 const struct mux_target *target);

/* Domain matching as V2Ray: full = equal, suffix = equal or ends with "." +
 * value, substr = contains.  Case-insensitive. */
bool router_domain_matches(const struct config_domain *d, const char *domain);

#endif
