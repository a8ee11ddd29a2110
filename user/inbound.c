// SPDX-License-Identifier: MIT
/*
 * dokodemo-door inbounds: every connection (TCP) or client address (UDP) is
 * sent to settings.address:port through routing.  Routed to a portal, a
 * connection whose target is the portal's domain is a tunnel; anything else
 * is a user session multiplexed over the portal's tunnels.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "router.h"

static struct portal *find_portal(struct proxy *px, const char *tag)
{
	for (size_t i = 0; tag && i < px->n_portals; i++)
		if (!strcmp(px->portals[i].cfg->tag, tag))
			return &px->portals[i];
	return NULL;
}

/* Where a connection from inbound `in` to `target` goes. */
static struct portal *inbound_route(struct proxy *px, const struct config_inbound *in,
				    const struct mux_target *target)
{
	const char *tag = router_route(px->cfg, in->tag, target);
	struct portal *p;

	if (!tag) /* V2Ray: no rule matched -> the first outbound */
		tag = px->cfg->n_outbounds ? px->cfg->outbounds[0].tag : NULL;
	p = find_portal(px, tag);
	if (!p) {
		const struct config_outbound *ob = tag ? config_find_outbound(px->cfg, tag) : NULL;

		if (!ob || ob->protocol == OUTBOUND_BLACKHOLE)
			log_info("inbound %s: connection %s", in->tag, ob ? "blocked (blackhole)" : "has no outbound");
		else
			log_warn("inbound %s: routed to freedom outbound \"%s\": revsock relays inbounds only through portals",
				 in->tag, tag);
	}
	return p;
}

static int inbound_target(const struct config_inbound *in, uint8_t network, struct mux_target *t)
{
	return mux_target_from_host(t, network, in->address, in->target_port);
}

static void tcp_accept(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct tcp_inbound *in = (struct tcp_inbound *)((char *)io - offsetof(struct tcp_inbound, io));
	struct proxy *px = in->px;

	/* Bounded: at most 256 accepts per wakeup, then let the rest run. */
	for (int i = 0; i < 256; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct mux_target target;
		struct portal *p;
		char peer[80];
		int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_warn("inbound %s: accept: %s", in->cfg->tag, strerror(errno));
			return;
		}
		sock_set_common(fd, true);
		if (inbound_target(in->cfg, MUX_NET_TCP, &target) < 0 || !(p = inbound_route(px, in->cfg, &target))) {
			close(fd);
			continue;
		}
		if (target.addr.type == MUX_ADDR_DOMAIN && !strcmp(target.addr.domain.name, p->cfg->domain))
			portal_tunnel_accepted(p, fd, sockaddr_str((struct sockaddr *)&ss, peer, sizeof(peer)));
		else
			portal_user_accepted(p, fd, &target);
	}
	/* listeners are level-triggered: what is left is accepted next round */
}

static void udp_readable(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct udp_inbound *in = (struct udp_inbound *)((char *)io - offsetof(struct udp_inbound, io));
	uint8_t *buf = in->px->scratch;

	for (int i = 0; i < 1024; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct mux_target target;
		struct session *s;
		struct portal *p;
		ssize_t n;

		memset(&ss, 0, sizeof(ss)); /* the whole struct is the hash key */
		n = recvfrom(io->fd, buf, MUX_STREAM_DATA_MAX, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		HASH_FIND(hh_peer, in->sessions, &ss, sizeof(ss), s);
		if (s) {
			session_send_datagram(s, buf, (size_t)n);
			continue;
		}
		if (inbound_target(in->cfg, MUX_NET_UDP, &target) < 0 || !(p = inbound_route(in->px, in->cfg, &target)))
			continue;
		portal_udp_session(p, in, &ss, len, &target, buf, (size_t)n);
	}
}

static int listen_socket(const struct config_inbound *cfg, int socktype)
{
	struct addrinfo hints = { .ai_socktype = socktype, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char port[8];
	int fd = -1, one = 1, err;
	const char *proto = socktype == SOCK_STREAM ? "tcp" : "udp";

	snprintf(port, sizeof(port), "%u", cfg->port);
	err = getaddrinfo(cfg->listen, port, &hints, &ai);
	if (err) {
		log_err("inbound \"%s\": listen address \"%s\": %s", cfg->tag, cfg->listen, gai_strerror(err));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		goto fail;
	if (socktype == SOCK_STREAM && listen(fd, 4096) < 0)
		goto fail;
	freeaddrinfo(ai);
	return fd;
fail:
	err = errno;
	log_err("inbound \"%s\": listen %s:%u/%s: %s", cfg->tag, cfg->listen, cfg->port, proto, strerror(err));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return -err;
}

int inbounds_start(struct proxy *px)
{
	const struct config *c = px->cfg;

	px->tcp_in = calloc(c->n_inbounds ? c->n_inbounds : 1, sizeof(*px->tcp_in));
	px->udp_in = calloc(c->n_inbounds ? c->n_inbounds : 1, sizeof(*px->udp_in));
	if (!px->tcp_in || !px->udp_in)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_inbounds; i++) {
		const struct config_inbound *cfg = &c->inbounds[i];
		int fd, err;

		if (cfg->network & NET_TCP) {
			struct tcp_inbound *in = &px->tcp_in[px->n_tcp_in];

			fd = listen_socket(cfg, SOCK_STREAM);
			if (fd < 0)
				return fd;
			in->px = px;
			in->cfg = cfg;
			err = loop_add(px->loop, &in->io, fd, EPOLLIN, tcp_accept);
			if (err < 0) {
				close(fd);
				return err;
			}
			px->n_tcp_in++;
		}
		if (cfg->network & NET_UDP) {
			struct udp_inbound *in = &px->udp_in[px->n_udp_in];

			fd = listen_socket(cfg, SOCK_DGRAM);
			if (fd < 0)
				return fd;
			in->px = px;
			in->cfg = cfg;
			err = loop_add(px->loop, &in->io, fd, EPOLLIN, udp_readable);
			if (err < 0) {
				close(fd);
				return err;
			}
			px->n_udp_in++;
		}
	}
	return 0;
}

/* Stop accepting.  UDP sockets stay open until their sessions are gone. */
void inbounds_stop(struct proxy *px)
{
	for (size_t i = 0; i < px->n_tcp_in; i++) {
		if (px->tcp_in[i].io.fn) {
			loop_del(px->loop, &px->tcp_in[i].io);
			close(px->tcp_in[i].io.fd);
		}
	}
	px->n_tcp_in = 0;
}
