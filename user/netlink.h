/* SPDX-License-Identifier: MIT */
/*
 * Netlink monitor: links, IPv4/IPv6 addresses and routes, inside the event
 * loop (libmnl, non-blocking, no thread).
 *
 * At start it dumps links then addresses into a small table (ifindex -> name,
 * IFF_RUNNING; local addresses) and from then on follows the RTNLGRP_LINK,
 * IPV4/IPV6_IFADDR and IPV4/IPV6_ROUTE notifications.  When the kernel drops
 * notifications (ENOBUFS) or a dump was interrupted, it dumps again and
 * reports what changed in between, so a missed RTM_DELADDR still reaches the
 * callbacks.  Routes are not kept: "routes changed" tells the caller to redo
 * its lookups with linkmon_route_get().
 *
 * Callbacks report changes against the table only after the initial dump (the
 * initial state is not "news").  A message the parser does not expect is
 * ignored with a debug log line.
 */
#ifndef REVSOCK_NETLINK_H
#define REVSOCK_NETLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct linkmon;

struct linkmon_ops {
	/* A local address appeared (added, or IPv6 DAD finished) or went away. */
	void (*addr_changed)(void *ctx, bool added, int family, const void *addr, int ifindex);
	/* IFF_RUNNING of ifindex changed, or the link was deleted (gone). */
	void (*link_changed)(void *ctx, int ifindex, bool running, bool gone);
	/* Some route changed (coalesced: once per batch of messages). */
	void (*routes_changed)(void *ctx);
};

/*
 * Open the monitor socket, register it with the loop and start the dump.
 * With l == NULL the sockets are opened but not registered: the caller polls
 * linkmon_fd() and calls linkmon_process().  Returns NULL with errno set.
 */
struct linkmon *linkmon_new(struct loop *l, const struct linkmon_ops *ops, void *ctx);

/* No sockets at all: a parser and table fed only by linkmon_feed() (tests). */
struct linkmon *linkmon_new_feed(const struct linkmon_ops *ops, void *ctx);

void linkmon_free(struct linkmon *m);

int linkmon_fd(const struct linkmon *m);

/* Read and handle everything pending on the socket.  0 or a negative errno. */
int linkmon_process(struct linkmon *m);

/*
 * Parse a buffer of netlink messages as if read from the socket.  Returns 0,
 * or -EBADMSG when the buffer is not a sequence of whole messages (the whole
 * messages before the fault are still handled).
 */
int linkmon_feed(struct linkmon *m, const void *buf, size_t len);

/* What the read path does on ENOBUFS: forget nothing, dump again. */
void linkmon_overrun(struct linkmon *m);
/* How many times that happened (for logs and tests). */
unsigned long linkmon_overruns(const struct linkmon *m);

/* True once the initial dump is complete. */
bool linkmon_synced(const struct linkmon *m);
/* The sequence number the running dump's replies carry (0: none; tests). */
uint32_t linkmon_dump_seq(const struct linkmon *m);

/* 1 running, 0 not running, -ENOENT unknown ifindex. */
int linkmon_link_running(const struct linkmon *m, int ifindex);
/* The link's name, or "if<N>" when unknown; buf needs IF_NAMESIZE bytes. */
const char *linkmon_link_name(const struct linkmon *m, int ifindex, char *buf);
/* True when some interface holds the local address (4 or 16 bytes). */
bool linkmon_addr_local(const struct linkmon *m, int family, const void *addr);

/*
 * Synchronous route lookup (RTM_GETROUTE on a second socket; a local kernel
 * query answered at once, bounded by a 100 ms timeout): the output interface
 * for packets to dst, from src when given.  Returns 0 and sets *oif, or a
 * negative errno (-ENETUNREACH/-EHOSTUNREACH: no route, -ETIMEDOUT).
 */
int linkmon_route_get(struct linkmon *m, const struct sockaddr *dst, const struct sockaddr *src,
		      int *oif);

#endif
