/* SPDX-License-Identifier: MIT */
/*
 * The V2Ray JSON subset a reverse setup uses, plus revsock's own "revsock"
 * object.  Parsing is pure (no sockets, no files other than the one named):
 * a key outside the subset is refused with its JSON path and the reason.
 */
#ifndef REVSOCK_CONFIG_H
#define REVSOCK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#define CONFIG_ERR_MAX 512
#define CONFIG_TAG_MAX 128
#define CONFIG_HOST_MAX 256

enum log_level {
	LOG_LVL_NONE = 0,
	LOG_LVL_ERROR,
	LOG_LVL_WARNING,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* Bit mask: "tcp" = NET_TCP, "udp" = NET_UDP, "tcp,udp" = both. */
#define NET_TCP 0x1
#define NET_UDP 0x2

struct config_reverse_entry {   /* reverse.portals[] and reverse.bridges[] */
	char tag[CONFIG_TAG_MAX];
	char domain[CONFIG_HOST_MAX];
};

struct config_inbound {          /* protocol "dokodemo-door" only */
	char tag[CONFIG_TAG_MAX];
	char listen[CONFIG_HOST_MAX];    /* default "0.0.0.0" */
	uint16_t port;
	char address[CONFIG_HOST_MAX];   /* settings.address: IP or domain */
	uint16_t target_port;            /* settings.port */
	unsigned network;                /* NET_* mask, default NET_TCP */
};

enum outbound_protocol {
	OUTBOUND_FREEDOM = 1,
	OUTBOUND_BLACKHOLE,
};

struct config_outbound {
	char tag[CONFIG_TAG_MAX];
	enum outbound_protocol protocol;
	bool has_redirect;               /* freedom settings.redirect "host:port" */
	char redirect_host[CONFIG_HOST_MAX];
	uint16_t redirect_port;          /* 0 = keep the target's port */
};

enum domain_match {
	DOMAIN_MATCH_SUBSTR = 1,         /* plain "example" */
	DOMAIN_MATCH_FULL,               /* "full:a.b.c" exact */
	DOMAIN_MATCH_SUFFIX,             /* "domain:b.c": b.c or *.b.c */
};

struct config_domain {
	enum domain_match kind;
	char value[CONFIG_HOST_MAX];     /* lower-cased */
};

struct config_cidr {
	int family;                      /* AF_INET or AF_INET6 */
	uint8_t addr[16];                /* network byte order, masked */
	uint8_t prefix;                  /* 0..32 or 0..128 */
};

struct config_port_range {
	uint16_t from, to;               /* inclusive */
};

struct config_rule {             /* routing.rules[], type "field" */
	char **inbound_tags; size_t n_inbound_tags;      /* any of */
	struct config_domain *domains; size_t n_domains; /* any of */
	struct config_cidr *ips; size_t n_ips;           /* any of */
	struct config_port_range *ports; size_t n_ports; /* any of */
	unsigned network;                                /* NET_* mask, 0 = any */
	char outbound_tag[CONFIG_TAG_MAX];
};

enum datapath_kind {
	DATAPATH_AUTO = 0,
	DATAPATH_USERSPACE,
	DATAPATH_SOCKMAP,
};

struct config_revsock {          /* top-level "revsock": our own settings */
	unsigned tunnel_idle_timeout_s;  /* tunnelIdleTimeout, default 10 */
	size_t session_buffer_bytes;     /* sessionBufferBytes, default 4 MiB */
	unsigned session_stall_timeout_s;/* sessionStallTimeout, default 5 */
	unsigned udp_idle_timeout_s;     /* udpIdleTimeout, default 60 */
	enum datapath_kind datapath;     /* datapath, default auto */
	char instance[CONFIG_TAG_MAX];   /* instance (bpffs pin dir), default "" = derived */
	unsigned link_grace_s;           /* linkGraceSeconds, default 5 */
};

struct config {
	enum log_level log_level;        /* log.loglevel, default warning */
	struct config_reverse_entry *portals; size_t n_portals;
	struct config_reverse_entry *bridges; size_t n_bridges;
	struct config_inbound *inbounds; size_t n_inbounds;
	struct config_outbound *outbounds; size_t n_outbounds;
	struct config_rule *rules; size_t n_rules;
	struct config_revsock revsock;
};

/*
 * Parse a JSON text / file.  On error returns a negative errno (-EINVAL for
 * bad content, -ENOENT/-EACCES/... for an unreadable file) and writes one line
 * into err, naming the JSON path and the reason, e.g.
 *   "inbounds[1].settings.network: \"sctp\" is not one of tcp, udp, tcp,udp"
 *   "routing.balancers: not supported by revsock"
 * Cross-references are checked too: every rule's outboundTag must name an
 * outbound or a portal ("unknown outbound tag"), every inboundTag an inbound
 * or a bridge; duplicate tags are refused.
 */
int config_parse_string(struct config *c, const char *json, char err[CONFIG_ERR_MAX]);
int config_parse_file(struct config *c, const char *path, char err[CONFIG_ERR_MAX]);
void config_free(struct config *c);
void config_defaults(struct config *c);

const struct config_outbound *config_find_outbound(const struct config *c, const char *tag);
const struct config_reverse_entry *config_find_portal(const struct config *c, const char *tag);

#endif
