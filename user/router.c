// SPDX-License-Identifier: MIT
/*
 * Field-rule routing as V2Ray 4.34 does it with domainStrategy "AsIs":
 * rules in order, first match wins, every condition a rule names must hold.
 * Nothing is resolved: a domain rule only ever sees domain targets and an
 * ip rule only IP targets, so a rule naming both can never match (V2Ray
 * behaves the same).
 */
#include "router.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

bool router_domain_matches(const struct config_domain *d, const char *domain)
{
	size_t dlen, vlen;

	if (!domain)
		return false;
	switch (d->kind) {
	case DOMAIN_MATCH_FULL:
		return strcasecmp(domain, d->value) == 0;
	case DOMAIN_MATCH_SUFFIX:
		/* "domain:b.c" matches b.c and x.b.c but not xb.c. */
		dlen = strlen(domain);
		vlen = strlen(d->value);
		if (dlen < vlen || strcasecmp(domain + dlen - vlen, d->value) != 0)
			return false;
		return dlen == vlen || domain[dlen - vlen - 1] == '.';
	case DOMAIN_MATCH_SUBSTR:
		return strcasestr(domain, d->value) != NULL;
	}
	return false;
}

static bool cidr_matches(const struct config_cidr *c, const struct mux_addr *a)
{
	const uint8_t *ip;
	unsigned full, rest;

	if (a->type == MUX_ADDR_IPV4 && c->family == AF_INET)
		ip = a->v4;
	else if (a->type == MUX_ADDR_IPV6 && c->family == AF_INET6)
		ip = a->v6;
	else
		return false;   /* v4 rules never match v6 targets, as in V2Ray */
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(ip, c->addr, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff00u >> rest);

		/* c->addr is stored masked by the parser. */
		if ((ip[full] & mask) != c->addr[full])
			return false;
	}
	return true;
}

static bool rule_matches(const struct config_rule *r, const char *inbound_tag,
			 const struct mux_target *t)
{
	size_t i;

	if (r->n_inbound_tags) {
		if (!inbound_tag)
			return false;
		for (i = 0; i < r->n_inbound_tags; i++)
			if (strcmp(r->inbound_tags[i], inbound_tag) == 0)
				break;
		if (i == r->n_inbound_tags)
			return false;
	}
	if (r->network) {
		unsigned net = t->network == MUX_NET_TCP ? NET_TCP :
			       t->network == MUX_NET_UDP ? NET_UDP : 0;

		if (!(r->network & net))
			return false;
	}
	if (r->n_ports) {
		for (i = 0; i < r->n_ports; i++)
			if (t->port >= r->ports[i].from && t->port <= r->ports[i].to)
				break;
		if (i == r->n_ports)
			return false;
	}
	if (r->n_domains) {
		char name[MUX_DOMAIN_MAX + 1];
		size_t len;

		if (t->addr.type != MUX_ADDR_DOMAIN)
			return false;
		/* Trust len, not a terminator, for a name off the wire. */
		len = t->addr.domain.len;
		/* An embedded NUL would make C compare a prefix of the name,
		 * where V2Ray compares all of it: such a name matches no
		 * domain condition. */
		if (memchr(t->addr.domain.name, '\0', len))
			return false;
		memcpy(name, t->addr.domain.name, len);
		name[len] = '\0';
		for (i = 0; i < r->n_domains; i++)
			if (router_domain_matches(&r->domains[i], name))
				break;
		if (i == r->n_domains)
			return false;
	}
	if (r->n_ips) {
		for (i = 0; i < r->n_ips; i++)
			if (cidr_matches(&r->ips[i], &t->addr))
				break;
		if (i == r->n_ips)
			return false;
	}
	return true;
}

const char *router_route(const struct config *c, const char *inbound_tag,
			 const struct mux_target *target)
{
	size_t i;

	for (i = 0; i < c->n_rules; i++)
		if (rule_matches(&c->rules[i], inbound_tag, target))
			return c->rules[i].outbound_tag;
	return NULL;
}
