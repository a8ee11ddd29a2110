// SPDX-License-Identifier: MIT
/*
 * The netlink monitor's parser and table (user/netlink.c), fed messages built
 * with libmnl as the kernel would send them, then the messages it hands to
 * the per-tunnel decision (user/linkstate.c) as the glue does.  The last test
 * runs the real socket in a fresh network namespace (root only, else skipped).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <cmocka.h>

#include "linkstate.h"
#include "log.h"
#include "netlink.h"

/* ---------------------------------------------------------- the "kernel" */

struct batch {
	uint8_t buf[16384];
	size_t len;
};

static struct nlmsghdr *put(struct batch *b, uint16_t type, uint16_t flags, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(b->buf + b->len);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	return nlh;
}

static void done(struct batch *b, struct nlmsghdr *nlh)
{
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	assert_true(b->len < sizeof(b->buf) - 512);
}

static void put_link(struct batch *b, uint16_t type, uint32_t seq, int ifindex,
		     const char *name, unsigned flags)
{
	struct nlmsghdr *nlh = put(b, type, seq ? NLM_F_MULTI : 0, seq);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = flags;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	mnl_attr_put_u32(nlh, IFLA_MTU, 1500);
	done(b, nlh);
}

static void put_addr(struct batch *b, uint16_t type, uint32_t seq, const char *ip,
		     int ifindex, uint32_t flags)
{
	struct nlmsghdr *nlh = put(b, type, seq ? NLM_F_MULTI : 0, seq);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	uint8_t addr[16];
	int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
	size_t len = family == AF_INET6 ? 16 : 4;

	assert_int_equal(inet_pton(family, ip, addr), 1);
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_prefixlen = family == AF_INET6 ? 64 : 24;
	ifa->ifa_index = (uint32_t)ifindex;
	ifa->ifa_flags = (uint8_t)flags;
	mnl_attr_put(nlh, IFA_ADDRESS, len, addr);
	if (family == AF_INET)
		mnl_attr_put(nlh, IFA_LOCAL, len, addr);
	mnl_attr_put_u32(nlh, IFA_FLAGS, flags);
	done(b, nlh);
}

static void put_route(struct batch *b, uint16_t type, int family, unsigned rtm_flags)
{
	struct nlmsghdr *nlh = put(b, type, 0, 0);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_type = RTN_UNICAST;
	rtm->rtm_flags = rtm_flags;
	mnl_attr_put_u32(nlh, RTA_OIF, 2);
	done(b, nlh);
}

static void put_done(struct batch *b, uint32_t seq)
{
	struct nlmsghdr *nlh = put(b, NLMSG_DONE, NLM_F_MULTI, seq);
	int *zero = mnl_nlmsg_put_extra_header(nlh, sizeof(int));

	*zero = 0;
	done(b, nlh);
}

static void put_error(struct batch *b, uint32_t seq, int err)
{
	struct nlmsghdr *nlh = put(b, NLMSG_ERROR, 0, seq);
	struct nlmsgerr *e = mnl_nlmsg_put_extra_header(nlh, sizeof(*e));

	e->error = err;
	done(b, nlh);
}

static void feed(struct linkmon *m, struct batch *b)
{
	assert_int_equal(linkmon_feed(m, b->buf, b->len), 0);
	b->len = 0;
}

/* ------------------------------------------------------- what we were told */

#define MAX_CALLS 32

struct call {
	char what;        /* 'a' address, 'l' link, 'r' routes */
	bool flag;        /* added / running */
	bool gone;
	int family;
	char ip[INET6_ADDRSTRLEN];
	int ifindex;
};

struct rec {
	struct call calls[MAX_CALLS];
	int n;
};

/* A full record drops the rest (the netns test makes hundreds of calls). */
static struct call *slot(struct rec *r)
{
	static struct call overflow;

	return r->n < MAX_CALLS ? &r->calls[r->n++] : &overflow;
}

static void on_addr(void *ctx, bool added, int family, const void *addr, int ifindex)
{
	struct call *c = slot(ctx);

	*c = (struct call){ .what = 'a', .flag = added, .family = family, .ifindex = ifindex };
	inet_ntop(family, addr, c->ip, sizeof(c->ip));
}

static void on_link(void *ctx, int ifindex, bool running, bool gone)
{
	*slot(ctx) = (struct call){ .what = 'l', .flag = running, .gone = gone, .ifindex = ifindex };
}

static void on_routes(void *ctx)
{
	*slot(ctx) = (struct call){ .what = 'r' };
}

static const struct linkmon_ops ops = {
	.addr_changed = on_addr,
	.link_changed = on_link,
	.routes_changed = on_routes,
};

static bool local(struct linkmon *m, const char *ip)
{
	uint8_t addr[16];
	int family = strchr(ip, ':') ? AF_INET6 : AF_INET;

	inet_pton(family, ip, addr);
	return linkmon_addr_local(m, family, addr);
}

#define UP_RUNNING (IFF_UP | IFF_RUNNING | 0x10000 /* IFF_LOWER_UP */)

/* lo (1), veth0 (2) running with 10.1.0.2 and fd00::2, eth1 (3) without carrier. */
static void initial_dump(struct linkmon *m, struct rec *r)
{
	struct batch b = { 0 };
	uint32_t seq = linkmon_dump_seq(m);

	assert_int_not_equal(seq, 0);
	put_link(&b, RTM_NEWLINK, seq, 1, "lo", UP_RUNNING | IFF_LOOPBACK);
	put_link(&b, RTM_NEWLINK, seq, 2, "veth0", UP_RUNNING);
	put_link(&b, RTM_NEWLINK, seq, 3, "eth1", IFF_UP);
	put_done(&b, seq);
	feed(m, &b);
	assert_false(linkmon_synced(m));
	seq = linkmon_dump_seq(m);
	assert_int_not_equal(seq, 0);
	put_addr(&b, RTM_NEWADDR, seq, "127.0.0.1", 1, IFA_F_PERMANENT);
	put_addr(&b, RTM_NEWADDR, seq, "10.1.0.2", 2, IFA_F_PERMANENT);
	put_addr(&b, RTM_NEWADDR, seq, "fd00::2", 2, IFA_F_PERMANENT);
	put_done(&b, seq);
	feed(m, &b);
	assert_true(linkmon_synced(m));
	assert_int_equal(linkmon_dump_seq(m), 0);
	/* The initial state is not news. */
	assert_int_equal(r->n, 0);
}

/* The ctx of the monitor under test (cmocka keeps one state pointer). */
static struct rec *last_rec;

static int setup_rec(void **state)
{
	last_rec = calloc(1, sizeof(*last_rec));
	struct linkmon *m = linkmon_new_feed(&ops, last_rec);

	assert_non_null(m);
	initial_dump(m, last_rec);
	*state = m;
	return 0;
}

static int teardown_rec(void **state)
{
	linkmon_free(*state);
	free(last_rec);
	last_rec = NULL;
	return 0;
}

/* ------------------------------------------------------------------ tests */

static void test_initial_dump_fills_the_table(void **state)
{
	struct linkmon *m = *state;
	char name[IF_NAMESIZE];

	assert_int_equal(linkmon_link_running(m, 1), 1);
	assert_int_equal(linkmon_link_running(m, 2), 1);
	assert_int_equal(linkmon_link_running(m, 3), 0);
	assert_int_equal(linkmon_link_running(m, 9), -ENOENT);
	assert_string_equal(linkmon_link_name(m, 2, name), "veth0");
	assert_string_equal(linkmon_link_name(m, 9, name), "if9");
	assert_true(local(m, "10.1.0.2"));
	assert_true(local(m, "fd00::2"));
	assert_true(local(m, "127.0.0.1"));
	assert_false(local(m, "10.1.0.3"));
	/* No sockets in feed mode. */
	assert_int_equal(linkmon_fd(m), -1);
}

static void test_address_deleted_is_reported_once_removed(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };

	put_addr(&b, RTM_DELADDR, 0, "10.1.0.2", 2, IFA_F_PERMANENT);
	feed(m, &b);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->calls[0].what, 'a');
	assert_false(r->calls[0].flag);
	assert_int_equal(r->calls[0].family, AF_INET);
	assert_string_equal(r->calls[0].ip, "10.1.0.2");
	assert_int_equal(r->calls[0].ifindex, 2);
	assert_false(local(m, "10.1.0.2"));
	assert_true(local(m, "fd00::2"));
}

static void test_address_added_and_ipv6_after_dad(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };

	put_addr(&b, RTM_NEWADDR, 0, "10.1.0.3", 2, IFA_F_PERMANENT);
	put_addr(&b, RTM_NEWADDR, 0, "10.1.0.3", 2, IFA_F_PERMANENT); /* again: not news */
	put_addr(&b, RTM_NEWADDR, 0, "fd00::3", 2, IFA_F_PERMANENT | IFA_F_TENTATIVE);
	feed(m, &b);
	assert_int_equal(r->n, 1);
	assert_true(r->calls[0].flag);
	assert_string_equal(r->calls[0].ip, "10.1.0.3");

	/* DAD done: the flags lose TENTATIVE (IFA_FLAGS is 32 bits). */
	put_addr(&b, RTM_NEWADDR, 0, "fd00::3", 2, IFA_F_PERMANENT);
	feed(m, &b);
	assert_int_equal(r->n, 2);
	assert_true(r->calls[1].flag);
	assert_int_equal(r->calls[1].family, AF_INET6);
	assert_string_equal(r->calls[1].ip, "fd00::3");
}

static void test_carrier_changes_are_reported_once(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };

	put_link(&b, RTM_NEWLINK, 0, 2, "veth0", IFF_UP);         /* carrier lost */
	put_link(&b, RTM_NEWLINK, 0, 2, "veth0", IFF_UP);         /* repeated */
	put_link(&b, RTM_NEWLINK, 0, 2, "veth0", UP_RUNNING);     /* back */
	put_link(&b, RTM_NEWLINK, 0, 3, "eth1-renamed", IFF_UP);  /* rename only */
	feed(m, &b);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->calls[0].what, 'l');
	assert_int_equal(r->calls[0].ifindex, 2);
	assert_false(r->calls[0].flag);
	assert_false(r->calls[0].gone);
	assert_true(r->calls[1].flag);
	char name[IF_NAMESIZE];
	assert_string_equal(linkmon_link_name(m, 3, name), "eth1-renamed");
}

static void test_link_deleted_takes_its_addresses(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;

	/* A bridge port leaving its bridge: AF_BRIDGE, not a deletion. */
	nlh = put(&b, RTM_DELLINK, 0, 0);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_BRIDGE;
	ifi->ifi_index = 2;
	done(&b, nlh);
	feed(m, &b);
	assert_int_equal(r->n, 0);
	assert_int_equal(linkmon_link_running(m, 2), 1);

	/* The DELADDRs were lost: the link takes both addresses with it. */
	put_link(&b, RTM_DELLINK, 0, 2, "veth0", 0);
	feed(m, &b);
	assert_int_equal(r->n, 3);
	assert_int_equal(r->calls[0].what, 'a');
	assert_int_equal(r->calls[1].what, 'a');
	assert_false(r->calls[0].flag);
	assert_false(r->calls[1].flag);
	assert_int_equal(r->calls[2].what, 'l');
	assert_true(r->calls[2].gone);
	assert_int_equal(r->calls[2].ifindex, 2);
	assert_int_equal(linkmon_link_running(m, 2), -ENOENT);
	assert_false(local(m, "10.1.0.2"));
	assert_false(local(m, "fd00::2"));
}

static void test_route_changes_are_coalesced_per_batch(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };

	put_route(&b, RTM_DELROUTE, AF_INET, 0);
	put_route(&b, RTM_DELROUTE, AF_INET6, 0);
	put_route(&b, RTM_NEWROUTE, AF_INET, 0);
	feed(m, &b);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->calls[0].what, 'r');

	/* Cache entries and other families are not route changes. */
	put_route(&b, RTM_NEWROUTE, AF_INET, RTM_F_CLONED);
	put_route(&b, RTM_NEWROUTE, AF_BRIDGE, 0);
	feed(m, &b);
	assert_int_equal(r->n, 1);
}

static void test_address_removal_comes_before_routes(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };

	/* What `ip addr del` produces: the address, then its routes. */
	put_route(&b, RTM_DELROUTE, AF_INET, 0);
	put_addr(&b, RTM_DELADDR, 0, "10.1.0.2", 2, IFA_F_PERMANENT);
	put_route(&b, RTM_DELROUTE, AF_INET, 0);
	feed(m, &b);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->calls[0].what, 'a');
	assert_int_equal(r->calls[1].what, 'r');
}

static void test_unexpected_messages_are_ignored(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;

	/* A neighbour message, an unknown type, a stray DONE and error. */
	nlh = put(&b, RTM_NEWNEIGH, 0, 0);
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ndmsg));
	done(&b, nlh);
	nlh = put(&b, 0x7ff, 0, 0);
	done(&b, nlh);
	put_done(&b, 4242);
	put_error(&b, 4243, -EPERM);
	nlh = put(&b, NLMSG_NOOP, 0, 0);
	done(&b, nlh);
	/* Too short for its header. */
	nlh = put(&b, RTM_NEWLINK, 0, 0);
	done(&b, nlh);
	nlh = put(&b, RTM_NEWADDR, 0, 0);
	done(&b, nlh);
	nlh = put(&b, RTM_NEWROUTE, 0, 0);
	done(&b, nlh);
	/* An address message without an address, one with a short one, one
	 * for an unknown family. */
	nlh = put(&b, RTM_DELADDR, 0, 0);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_index = 2;
	done(&b, nlh);
	nlh = put(&b, RTM_DELADDR, 0, 0);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET6;
	ifa->ifa_index = 2;
	mnl_attr_put_u32(nlh, IFA_ADDRESS, 0x0a010002);
	done(&b, nlh);
	nlh = put(&b, RTM_DELADDR, 0, 0);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_PACKET;
	ifa->ifa_index = 2;
	mnl_attr_put_u32(nlh, IFA_ADDRESS, 0x0a010002);
	done(&b, nlh);
	/* An attribute that overruns its message. */
	nlh = put(&b, RTM_NEWLINK, 0, 0);
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	((struct ifinfomsg *)mnl_nlmsg_get_payload(nlh))->ifi_index = 2;
	mnl_attr_put_u32(nlh, IFLA_MTU, 1);
	((struct nlattr *)((char *)nlh + nlh->nlmsg_len - 8))->nla_len = 200;
	done(&b, nlh);
	feed(m, &b);

	assert_int_equal(r->n, 0);
	assert_true(linkmon_synced(m));
	assert_true(local(m, "10.1.0.2"));
	assert_int_equal(linkmon_link_running(m, 2), 1);
}

static void test_truncated_buffer_keeps_whole_messages(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };

	put_addr(&b, RTM_DELADDR, 0, "10.1.0.2", 2, IFA_F_PERMANENT);
	put_addr(&b, RTM_DELADDR, 0, "fd00::2", 2, IFA_F_PERMANENT);
	assert_int_equal(linkmon_feed(m, b.buf, b.len - 10), -EBADMSG);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->calls[0].ip, "10.1.0.2");
	assert_true(local(m, "fd00::2"));
}

static void test_overrun_redump_reports_what_was_missed(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };
	uint32_t seq;

	linkmon_overrun(m);
	seq = linkmon_dump_seq(m);
	assert_int_not_equal(seq, 0);
	/* While we were deaf: veth0 lost its carrier, eth1 vanished, 10.1.0.2
	 * moved to 10.1.0.7. */
	put_link(&b, RTM_NEWLINK, seq, 1, "lo", UP_RUNNING | IFF_LOOPBACK);
	put_link(&b, RTM_NEWLINK, seq, 2, "veth0", IFF_UP);
	put_done(&b, seq);
	feed(m, &b);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->calls[0].what, 'l');
	assert_int_equal(r->calls[0].ifindex, 2);
	assert_false(r->calls[0].flag);
	assert_int_equal(r->calls[1].what, 'l');
	assert_int_equal(r->calls[1].ifindex, 3);
	assert_true(r->calls[1].gone);

	seq = linkmon_dump_seq(m);
	assert_int_not_equal(seq, 0);
	put_addr(&b, RTM_NEWADDR, seq, "127.0.0.1", 1, IFA_F_PERMANENT);
	put_addr(&b, RTM_NEWADDR, seq, "10.1.0.7", 2, IFA_F_PERMANENT);
	put_addr(&b, RTM_NEWADDR, seq, "fd00::2", 2, IFA_F_PERMANENT);
	put_done(&b, seq);
	feed(m, &b);
	assert_int_equal(r->n, 5);
	assert_int_equal(r->calls[2].what, 'a');
	assert_true(r->calls[2].flag);
	assert_string_equal(r->calls[2].ip, "10.1.0.7");
	assert_int_equal(r->calls[3].what, 'a');
	assert_false(r->calls[3].flag);
	assert_string_equal(r->calls[3].ip, "10.1.0.2");
	/* Route notifications may have been lost too. */
	assert_int_equal(r->calls[4].what, 'r');
	assert_int_equal(linkmon_dump_seq(m), 0);
}

static void test_overrun_during_a_dump_dumps_again_after_it(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };
	uint32_t seq, seq2;

	linkmon_overrun(m);
	seq = linkmon_dump_seq(m);
	linkmon_overrun(m); /* the kernel would say EBUSY to a second dump */
	assert_int_equal(linkmon_dump_seq(m), seq);
	put_link(&b, RTM_NEWLINK, seq, 1, "lo", UP_RUNNING);
	put_link(&b, RTM_NEWLINK, seq, 2, "veth0", UP_RUNNING);
	put_link(&b, RTM_NEWLINK, seq, 3, "eth1", IFF_UP);
	put_done(&b, seq);
	seq2 = seq + 1;
	put_addr(&b, RTM_NEWADDR, seq2, "127.0.0.1", 1, 0);
	put_addr(&b, RTM_NEWADDR, seq2, "10.1.0.2", 2, 0);
	put_addr(&b, RTM_NEWADDR, seq2, "fd00::2", 2, 0);
	put_done(&b, seq2);
	feed(m, &b);
	/* Nothing changed; the second dump has started. */
	assert_int_equal(r->n, 1);
	assert_int_equal(r->calls[0].what, 'r');
	assert_true(linkmon_dump_seq(m) > seq2);
}

static void test_interrupted_dump_is_repeated(void **state)
{
	struct linkmon *m = *state;
	struct batch b = { 0 };
	struct nlmsghdr *nlh;
	uint32_t seq;

	linkmon_overrun(m);
	seq = linkmon_dump_seq(m);
	put_link(&b, RTM_NEWLINK, seq, 1, "lo", UP_RUNNING);
	put_link(&b, RTM_NEWLINK, seq, 2, "veth0", UP_RUNNING);
	put_link(&b, RTM_NEWLINK, seq, 3, "eth1", IFF_UP);
	nlh = (struct nlmsghdr *)(b.buf + b.len);
	put_done(&b, seq);
	nlh->nlmsg_flags |= NLM_F_DUMP_INTR;
	feed(m, &b);
	seq = linkmon_dump_seq(m);
	put_addr(&b, RTM_NEWADDR, seq, "127.0.0.1", 1, 0);
	put_addr(&b, RTM_NEWADDR, seq, "10.1.0.2", 2, 0);
	put_addr(&b, RTM_NEWADDR, seq, "fd00::2", 2, 0);
	put_done(&b, seq);
	feed(m, &b);
	assert_true(linkmon_dump_seq(m) > seq);
}

static void test_refused_dump_stops_and_keeps_the_table(void **state)
{
	struct linkmon *m = *state;
	struct rec *r = last_rec;
	struct batch b = { 0 };
	uint32_t seq;

	linkmon_overrun(m);
	seq = linkmon_dump_seq(m);
	put_error(&b, seq, -EBUSY);
	feed(m, &b);
	assert_int_equal(linkmon_dump_seq(m), 0);
	assert_int_equal(r->n, 0);
	assert_true(local(m, "10.1.0.2"));
	/* A late DONE for it is stray, not the end of a dump. */
	put_done(&b, seq);
	feed(m, &b);
	assert_int_equal(r->n, 0);
}

static void test_notifications_during_the_initial_dump_are_not_news(void **state)
{
	struct rec r = { 0 };
	struct linkmon *m = linkmon_new_feed(&ops, &r);
	struct batch b = { 0 };
	uint32_t seq = linkmon_dump_seq(m);

	put_link(&b, RTM_NEWLINK, seq, 2, "veth0", UP_RUNNING);
	put_link(&b, RTM_NEWLINK, 0, 2, "veth0", IFF_UP);
	put_route(&b, RTM_NEWROUTE, AF_INET, 0);
	put_done(&b, seq);
	feed(m, &b);
	seq = linkmon_dump_seq(m);
	put_addr(&b, RTM_NEWADDR, 0, "10.1.0.5", 2, 0);
	put_addr(&b, RTM_NEWADDR, seq, "10.1.0.2", 2, 0);
	put_done(&b, seq);
	feed(m, &b);
	assert_true(linkmon_synced(m));
	assert_int_equal(r.n, 0);
	assert_int_equal(linkmon_link_running(m, 2), 0);
	/* Learned from a notification during the dump: not swept away. */
	assert_true(local(m, "10.1.0.5"));
	assert_true(local(m, "10.1.0.2"));
	assert_int_equal(linkmon_route_get(m, (struct sockaddr *)&(struct sockaddr_in){ .sin_family = AF_INET },
					   NULL, &(int){ 0 }), -EOPNOTSUPP);
	linkmon_free(m);
}

/*
 * Monitor -> decision, as the glue wires them: a bridge tunnel from
 * 10.1.0.2 over veth0 (2).
 */
struct glue {
	struct linkmon *m;
	struct linkstate s;
	uint64_t now;
	enum linkstate_decision last;
	int decisions;
};

static void glue_decide(struct glue *g, const struct linkstate_event *ev)
{
	enum linkstate_decision d = linkstate_step(&g->s, ev, g->now, 5000);

	if (d != LS_NONE) {
		g->last = d;
		g->decisions++;
	}
}

static void glue_addr(void *ctx, bool added, int family, const void *addr, int ifindex)
{
	struct glue *g = ctx;
	struct linkstate_event ev;

	if (added)
		return;
	linkstate_addr_event(&ev, family, addr, ifindex, linkmon_addr_local(g->m, family, addr));
	glue_decide(g, &ev);
}

static void glue_link(void *ctx, int ifindex, bool running, bool gone)
{
	struct glue *g = ctx;
	struct linkstate_event ev = {
		.type = gone ? LS_EV_LINK_GONE : LS_EV_LINK, .ifindex = ifindex, .running = running,
	};

	glue_decide(g, &ev);
}

static const struct linkmon_ops glue_ops = { .addr_changed = glue_addr, .link_changed = glue_link };

static void test_messages_drive_the_tunnel_decision(void **state)
{
	struct glue g = { 0 };
	struct rec dummy = { 0 };
	struct sockaddr_in local = { .sin_family = AF_INET };
	struct batch b = { 0 };

	g.m = linkmon_new_feed(&glue_ops, &g);
	assert_non_null(g.m);
	initial_dump(g.m, &dummy);
	inet_pton(AF_INET, "10.1.0.2", &local.sin_addr);
	assert_int_equal(linkstate_init(&g.s, (struct sockaddr *)&local, 2, true), 0);

	/* Carrier lost for a second: suspend, then resume. */
	g.now = 1000;
	put_link(&b, RTM_NEWLINK, 0, 2, "veth0", IFF_UP);
	feed(g.m, &b);
	assert_int_equal(g.last, LS_SUSPEND);
	g.now = 2000;
	put_link(&b, RTM_NEWLINK, 0, 2, "veth0", UP_RUNNING);
	feed(g.m, &b);
	assert_int_equal(g.last, LS_RESUME);

	/* Another address goes: nothing.  The same address on a second
	 * interface, then deleted from the first: nothing either. */
	put_addr(&b, RTM_DELADDR, 0, "fd00::2", 2, 0);
	put_addr(&b, RTM_NEWADDR, 0, "10.1.0.2", 3, 0);
	put_addr(&b, RTM_DELADDR, 0, "10.1.0.2", 2, 0);
	feed(g.m, &b);
	assert_int_equal(g.decisions, 2);

	/* Gone everywhere: close. */
	put_addr(&b, RTM_DELADDR, 0, "10.1.0.2", 3, 0);
	feed(g.m, &b);
	assert_int_equal(g.last, LS_CLOSE);
	assert_int_equal(g.decisions, 3);
	linkmon_free(g.m);
}

/* --------------------------------------------------- the real kernel, root */

static int wait_for(struct linkmon *m, bool (*cond)(struct linkmon *m, void *arg), void *arg)
{
	for (int i = 0; i < 50; i++) {
		struct pollfd p = { .fd = linkmon_fd(m), .events = POLLIN };

		if (cond(m, arg))
			return 0;
		poll(&p, 1, 20);
		if (linkmon_process(m) < 0)
			return -1;
	}
	return cond(m, arg) ? 0 : -1;
}

static bool is_synced(struct linkmon *m, void *arg)
{
	return linkmon_synced(m);
}

static bool link_gone(struct linkmon *m, void *arg)
{
	return linkmon_link_running(m, *(int *)arg) == -ENOENT && linkmon_dump_seq(m) == 0;
}

static bool link_not_running(struct linkmon *m, void *arg)
{
	return linkmon_link_running(m, *(int *)arg) == 0;
}

static bool all_200(struct linkmon *m, void *arg)
{
	for (uint32_t i = 1; i <= 200; i++)
		if (!linkmon_addr_local(m, AF_INET, &(struct in_addr){ htonl(0x0a4e0000 | i) }))
			return false;
	return linkmon_dump_seq(m) == 0;
}

#define CHILD_CHECK(cond) do { if (!(cond)) { fprintf(stderr, "netns check failed: %s (line %d)\n", #cond, __LINE__); _exit(1); } } while (0)

static void real_kernel_child(void)
{
	struct rec r = { 0 };
	struct linkmon *m;
	struct sockaddr_in dst = { .sin_family = AF_INET }, src = { .sin_family = AF_INET };
	int oif = 0, va, vb;

	if (unshare(CLONE_NEWNET) < 0)
		_exit(77);
	if (system("ip link set lo up && ip link add rsva type veth peer name rsvb && "
		   "ip link set rsva up && ip link set rsvb up && "
		   "ip addr add 10.77.0.1/24 dev rsva") != 0)
		_exit(77);
	m = linkmon_new(NULL, &ops, &r);
	CHILD_CHECK(m);
	CHILD_CHECK(wait_for(m, is_synced, NULL) == 0);
	va = (int)if_nametoindex("rsva");
	vb = (int)if_nametoindex("rsvb");
	CHILD_CHECK(va > 0 && vb > 0);
	CHILD_CHECK(linkmon_addr_local(m, AF_INET, &(struct in_addr){ htonl(0x0a4d0001) }));

	inet_pton(AF_INET, "10.77.0.2", &dst.sin_addr);
	inet_pton(AF_INET, "10.77.0.1", &src.sin_addr);
	CHILD_CHECK(linkmon_route_get(m, (struct sockaddr *)&dst, (struct sockaddr *)&src, &oif) == 0);
	CHILD_CHECK(oif == va);
	inet_pton(AF_INET, "192.0.2.1", &dst.sin_addr);
	CHILD_CHECK(linkmon_route_get(m, (struct sockaddr *)&dst, NULL, &oif) == -ENETUNREACH);

	/* Carrier: the peer going down clears IFF_RUNNING on ours. */
	r.n = 0;
	CHILD_CHECK(system("ip link set rsvb down") == 0);
	CHILD_CHECK(wait_for(m, link_not_running, &va) == 0);
	CHILD_CHECK(linkmon_addr_local(m, AF_INET, &(struct in_addr){ htonl(0x0a4d0001) }));
	/* The route survives a lost carrier (linkdown), same interface. */
	inet_pton(AF_INET, "10.77.0.2", &dst.sin_addr);
	CHILD_CHECK(linkmon_route_get(m, (struct sockaddr *)&dst, (struct sockaddr *)&src, &oif) == 0);
	CHILD_CHECK(oif == va);
	CHILD_CHECK(system("ip link set rsvb up") == 0);

	/* Address deleted: reported, and gone from the table. */
	r.n = 0;
	CHILD_CHECK(system("ip addr del 10.77.0.1/24 dev rsva") == 0);
	for (int i = 0; i < 50 && !(r.n > 0 && r.calls[r.n - 1].what == 'r'); i++) {
		struct pollfd p = { .fd = linkmon_fd(m), .events = POLLIN };
		poll(&p, 1, 20);
		linkmon_process(m);
	}
	bool seen = false;
	for (int i = 0; i < r.n; i++)
		if (r.calls[i].what == 'a' && !r.calls[i].flag &&
		    strcmp(r.calls[i].ip, "10.77.0.1") == 0 && r.calls[i].ifindex == va)
			seen = true;
	CHILD_CHECK(seen);
	CHILD_CHECK(!linkmon_addr_local(m, AF_INET, &(struct in_addr){ htonl(0x0a4d0001) }));
	CHILD_CHECK(linkmon_route_get(m, (struct sockaddr *)&dst, NULL, &oif) == -ENETUNREACH);

	/* Overrun: a tiny receive buffer, a burst of addresses, nobody reading.
	 * The re-dump must still end with every address in the table. */
	int small = 1;
	CHILD_CHECK(setsockopt(linkmon_fd(m), SOL_SOCKET, SO_RCVBUFFORCE, &small, sizeof(small)) == 0);
	CHILD_CHECK(system(
			   "for i in $(seq 1 200); do echo addr add 10.78.0.$i/32 dev rsvb; done "
			   "| ip -batch -") == 0);
	r.n = 0;
	CHILD_CHECK(wait_for(m, all_200, NULL) == 0);
	CHILD_CHECK(linkmon_overruns(m) > 0);
	small = 1 << 20;
	CHILD_CHECK(setsockopt(linkmon_fd(m), SOL_SOCKET, SO_RCVBUFFORCE, &small, sizeof(small)) == 0);

	/* A link deleted. */
	r.n = 0;
	CHILD_CHECK(system("ip link del rsva") == 0);
	CHILD_CHECK(wait_for(m, link_gone, &va) == 0);
	linkmon_free(m);
	_exit(0);
}

static void test_real_kernel_in_a_fresh_netns(void **state)
{
	int status;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		real_kernel_child();
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_initial_dump_fills_the_table, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_address_deleted_is_reported_once_removed, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_address_added_and_ipv6_after_dad, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_carrier_changes_are_reported_once, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_link_deleted_takes_its_addresses, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_route_changes_are_coalesced_per_batch, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_address_removal_comes_before_routes, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_unexpected_messages_are_ignored, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_truncated_buffer_keeps_whole_messages, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_overrun_redump_reports_what_was_missed, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_overrun_during_a_dump_dumps_again_after_it, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_interrupted_dump_is_repeated, setup_rec, teardown_rec),
		cmocka_unit_test_setup_teardown(test_refused_dump_stops_and_keeps_the_table, setup_rec, teardown_rec),
		cmocka_unit_test(test_notifications_during_the_initial_dump_are_not_news),
		cmocka_unit_test(test_messages_drive_the_tunnel_decision),
		cmocka_unit_test(test_real_kernel_in_a_fresh_netns),
	};

	/* The overrun and dump-failure warnings are expected here. */
	log_threshold = getenv("TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
