// SPDX-License-Identifier: MIT
/*
 * Outbounds: freedom (dial the target, or settings.redirect) and blackhole.
 * Dials never block the loop: connect is non-blocking and names are resolved
 * with glibc's getaddrinfo_a, whose completion is handed to the loop over a
 * pipe.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"

struct pending_dial {
	struct pending_dial *next;
	struct proxy *px;
	struct gaicb gai;
	struct addrinfo hints;
	char host[CONFIG_HOST_MAX];
	char port[8];
	int socktype;
	dial_fn cb;
	void *ctx;
	bool cancelled;
};

static struct pending_dial *pending;
static int dns_pipe[2] = { -1, -1 };
static struct loop_io dns_io;

static int dial_sockaddr(const struct sockaddr *sa, socklen_t len, int socktype, bool *connecting)
{
	int fd = socket(sa->sa_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	sock_set_common(fd, socktype == SOCK_STREAM);
	*connecting = false;
	if (connect(fd, sa, len) < 0) {
		int err = errno;

		if (err != EINPROGRESS) {
			close(fd);
			return -err;
		}
		*connecting = true;
	}
	return fd;
}

static void dns_done(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct pending_dial *d;

	while (read(dns_pipe[0], &d, sizeof(d)) == sizeof(d)) {
		struct pending_dial **pp;
		struct addrinfo *ai = d->gai.ar_result;
		int err = gai_error(&d->gai), fd = -EHOSTUNREACH;
		bool connecting = false;

		for (pp = &pending; *pp; pp = &(*pp)->next) {
			if (*pp == d) {
				*pp = d->next;
				break;
			}
		}
		if (!d->cancelled) {
			if (err == 0 && ai)
				fd = dial_sockaddr(ai->ai_addr, ai->ai_addrlen, d->socktype, &connecting);
			else
				log_info("resolve %s: %s", d->host, gai_strerror(err));
			d->cb(d->px, d->ctx, fd >= 0 ? fd : -1, connecting, fd >= 0 ? 0 : fd);
		}
		if (ai)
			freeaddrinfo(ai);
		free(d);
	}
}

/* Runs on glibc's resolver thread: only hand the request to the loop. */
static void dns_notify(union sigval sv)
{
	struct pending_dial *d = sv.sival_ptr;

	if (write(dns_pipe[1], &d, sizeof(d)) != sizeof(d))
		abort(); /* a lost completion would wedge a session */
}

static int dns_init(struct proxy *px)
{
	if (dns_pipe[0] >= 0)
		return 0;
	if (pipe2(dns_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* the writer must not drop completions: blocking write end */
	fcntl(dns_pipe[1], F_SETFL, 0);
	return loop_add(px->loop, &dns_io, dns_pipe[0], EPOLLIN, dns_done);
}

void outbound_cancel(struct proxy *px, void *ctx)
{
	for (struct pending_dial *d = pending; d; d = d->next)
		if (d->ctx == ctx)
			d->cancelled = true;
}

int outbound_dial(struct proxy *px, const struct config_outbound *ob, const struct mux_target *target,
		  dial_fn cb, void *ctx)
{
	int socktype = target->network == MUX_NET_UDP ? SOCK_DGRAM : SOCK_STREAM;
	struct sockaddr_storage ss = { 0 };
	socklen_t len = 0;
	char host[CONFIG_HOST_MAX];
	uint16_t port = target->port;
	bool connecting;
	int fd;

	if (ob->protocol == OUTBOUND_BLACKHOLE) {
		cb(px, ctx, -1, false, -ECONNREFUSED);
		return 0;
	}
	if (ob->has_redirect) {
		snprintf(host, sizeof(host), "%s", ob->redirect_host);
		if (ob->redirect_port)
			port = ob->redirect_port;
	} else {
		mux_addr_str(&target->addr, host, sizeof(host));
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		len = sizeof(*sin6);
	}
	if (len) {
		fd = dial_sockaddr((struct sockaddr *)&ss, len, socktype, &connecting);
		cb(px, ctx, fd >= 0 ? fd : -1, connecting, fd >= 0 ? 0 : fd);
		return 0;
	}
	if (!port) {
		cb(px, ctx, -1, false, -EINVAL);
		return 0;
	}
	/* A name: resolve without blocking the loop. */
	struct pending_dial *d = calloc(1, sizeof(*d));
	struct gaicb *list[1];
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD };
	int err = dns_init(px);

	if (!d || err < 0) {
		free(d);
		cb(px, ctx, -1, false, err < 0 ? err : -ENOMEM);
		return 0;
	}
	d->px = px;
	d->cb = cb;
	d->ctx = ctx;
	d->socktype = socktype;
	snprintf(d->host, sizeof(d->host), "%s", host);
	snprintf(d->port, sizeof(d->port), "%u", port);
	d->hints.ai_socktype = socktype;
	d->hints.ai_flags = AI_ADDRCONFIG;
	d->gai.ar_name = d->host;
	d->gai.ar_service = d->port;
	d->gai.ar_request = &d->hints;
	list[0] = &d->gai;
	sev.sigev_notify_function = dns_notify;
	sev.sigev_value.sival_ptr = d;
	d->next = pending;
	pending = d;
	err = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev);
	if (err) {
		pending = d->next;
		free(d);
		cb(px, ctx, -1, false, -EHOSTUNREACH);
	}
	return 0;
}
