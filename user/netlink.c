// SPDX-License-Identifier: MIT
/*
 * Netlink monitor.  One non-blocking socket subscribed to the rtnetlink
 * groups carries both the notifications and our dump replies; a second,
 * blocking one (100 ms timeout) answers route lookups so that a lookup never
 * consumes or reorders monitor messages.
 */
#include "netlink.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/time.h>
#include <net/if.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#include "log.h"
#include "loop.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Dumps come in skbs of up to 32 KiB when the reader offers that much. */
#define LINKMON_RECV_BUF 32768
/* Room for the kernel to queue a burst (e.g. 1000 routes flushed at once). */
#define LINKMON_SOCK_BUF (4 << 20)
#define LINKMON_QUERY_TIMEOUT_MS 100
#define LINKMON_DUMP_RETRY_MS 200

struct link_ent {
	int ifindex;
	bool running;
	uint32_t gen;
	char name[IF_NAMESIZE];
};

struct addr_ent {
	int family;
	int ifindex;
	bool usable;        /* not tentative / DAD-failed (IPv6) */
	uint32_t gen;
	uint8_t addr[16];
};

enum dump_phase {
	DUMP_IDLE = 0,
	DUMP_LINKS,
	DUMP_ADDRS,
};

struct linkmon {
	struct loop *loop;
	struct loop_io io;
	bool io_added;
	struct mnl_socket *mon;    /* notifications + dumps */
	struct mnl_socket *query;  /* route lookups */
	const struct linkmon_ops *ops;
	void *ctx;

	struct link_ent *links;
	size_t n_links, cap_links;
	struct addr_ent *addrs;
	size_t n_addrs, cap_addrs;

	enum dump_phase phase;
	uint32_t seq;          /* last sequence number used on mon */
	uint32_t dump_seq;     /* the running dump's request */
	uint32_t gen;          /* entries seen by the running dump carry this */
	bool synced;           /* initial dump complete: changes are news */
	bool redump;           /* dump again once the running one is done */
	bool routes_dirty;     /* a route message in this batch */
	struct loop_timer retry;  /* a refused dump is tried again */
	uint32_t query_seq;
	unsigned long overruns;
};

/* ------------------------------------------------------------------ table */

static struct link_ent *link_find(const struct linkmon *m, int ifindex)
{
	for (size_t i = 0; i < m->n_links; i++)
		if (m->links[i].ifindex == ifindex)
			return &m->links[i];
	return NULL;
}

static size_t addr_len(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

static struct addr_ent *addr_find(const struct linkmon *m, int family, const void *addr,
				  int ifindex)
{
	for (size_t i = 0; i < m->n_addrs; i++) {
		struct addr_ent *a = &m->addrs[i];

		if (a->family == family && a->ifindex == ifindex &&
		    memcmp(a->addr, addr, addr_len(family)) == 0)
			return a;
	}
	return NULL;
}

static void *grow(void *arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return arr;
	ncap = *cap ? *cap * 2 : 16;
	p = realloc(arr, ncap * size);
	if (p)
		*cap = ncap;
	return p;
}

int linkmon_link_running(const struct linkmon *m, int ifindex)
{
	const struct link_ent *e = link_find(m, ifindex);

	return e ? e->running : -ENOENT;
}

const char *linkmon_link_name(const struct linkmon *m, int ifindex, char *buf)
{
	const struct link_ent *e = link_find(m, ifindex);

	if (e && e->name[0])
		snprintf(buf, IF_NAMESIZE, "%s", e->name);
	else
		snprintf(buf, IF_NAMESIZE, "if%d", ifindex);
	return buf;
}

bool linkmon_addr_local(const struct linkmon *m, int family, const void *addr)
{
	for (size_t i = 0; i < m->n_addrs; i++)
		if (m->addrs[i].family == family &&
		    memcmp(m->addrs[i].addr, addr, addr_len(family)) == 0)
			return true;
	return false;
}

bool linkmon_synced(const struct linkmon *m)
{
	return m->synced;
}

uint32_t linkmon_dump_seq(const struct linkmon *m)
{
	return m->phase == DUMP_IDLE ? 0 : m->dump_seq;
}

unsigned long linkmon_overruns(const struct linkmon *m)
{
	return m->overruns;
}

int linkmon_fd(const struct linkmon *m)
{
	return m->mon ? mnl_socket_get_fd(m->mon) : -1;
}

/*
 * Removal copies the entry out and swaps the last one in before the callback
 * runs, so a callback that queries the table sees it without the entry.
 */
static void addr_remove(struct linkmon *m, size_t i, bool notify)
{
	struct addr_ent gone = m->addrs[i];

	m->addrs[i] = m->addrs[--m->n_addrs];
	if (notify && m->synced && m->ops->addr_changed)
		m->ops->addr_changed(m->ctx, false, gone.family, gone.addr, gone.ifindex);
}

static void link_remove(struct linkmon *m, size_t i)
{
	int ifindex = m->links[i].ifindex;

	m->links[i] = m->links[--m->n_links];
	/* The kernel sends RTM_DELADDR before RTM_DELLINK; after an overrun
	 * those may be lost, so addresses go with their link. */
	for (size_t j = 0; j < m->n_addrs;) {
		if (m->addrs[j].ifindex == ifindex)
			addr_remove(m, j, true);
		else
			j++;
	}
	if (m->synced && m->ops->link_changed)
		m->ops->link_changed(m->ctx, ifindex, false, true);
}

/* ---------------------------------------------------------------- dumping */

static int send_dump(struct linkmon *m, uint16_t type)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = m->dump_seq = ++m->seq;
	if (type == RTM_GETLINK) {
		struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

		ifi->ifi_family = AF_UNSPEC;
	} else {
		struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));

		ifa->ifa_family = AF_UNSPEC; /* IPv4 and IPv6 */
	}
	if (!m->mon) /* feed-only: the test plays the kernel */
		return 0;
	if (mnl_socket_sendto(m->mon, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	return 0;
}

static void dump_start(struct linkmon *m);

static void dump_retry(struct loop *l, void *ctx)
{
	struct linkmon *m = ctx;

	dump_start(m);
}

/* A dump request failed to go out or was refused: try again shortly. */
static void dump_failed(struct linkmon *m, int err)
{
	log_warn("netlink: dump failed: %s; retrying", strerror(-err));
	m->phase = DUMP_IDLE;
	m->redump = false;
	if (m->loop)
		loop_timer_arm(m->loop, &m->retry, LINKMON_DUMP_RETRY_MS, dump_retry, m);
}

static void dump_start(struct linkmon *m)
{
	int err;

	/* One dump at a time per socket (the kernel says EBUSY otherwise). */
	if (m->phase != DUMP_IDLE) {
		m->redump = true;
		return;
	}
	m->redump = false;
	m->gen++;
	m->phase = DUMP_LINKS;
	err = send_dump(m, RTM_GETLINK);
	if (err)
		dump_failed(m, err);
}

/* NLMSG_DONE of our dump: whatever the dump did not mention is gone. */
static void dump_done(struct linkmon *m)
{
	int err;

	if (m->phase == DUMP_LINKS) {
		for (size_t i = 0; i < m->n_links;) {
			if (m->links[i].gen != m->gen)
				link_remove(m, i);
			else
				i++;
		}
		m->phase = DUMP_ADDRS;
		err = send_dump(m, RTM_GETADDR);
		if (err)
			dump_failed(m, err);
		return;
	}

	for (size_t i = 0; i < m->n_addrs;) {
		if (m->addrs[i].gen != m->gen)
			addr_remove(m, i, true);
		else
			i++;
	}
	m->phase = DUMP_IDLE;
	if (!m->synced) {
		m->synced = true;
		log_debug("netlink: %zu links, %zu addresses", m->n_links, m->n_addrs);
	} else {
		/* Route notifications may have been lost with the rest. */
		m->routes_dirty = true;
	}
	if (m->redump)
		dump_start(m);
}

void linkmon_overrun(struct linkmon *m)
{
	m->overruns++;
	log_warn("netlink: notifications lost (receive buffer overrun), dumping again");
	dump_start(m);
}

/* ---------------------------------------------------------------- parsing */

struct attrs {
	const struct nlattr *tb[(IFLA_MAX > IFA_MAX ? IFLA_MAX : IFA_MAX) + 1];
};

/* Index the attributes after a hdrlen-byte header; a message whose
 * attributes do not end exactly at its end is malformed. */
static int parse_attrs(const struct nlmsghdr *nlh, size_t hdrlen, int max, struct attrs *a)
{
	const struct nlattr *attr;
	const char *tail = mnl_nlmsg_get_payload_tail(nlh);

	memset(a, 0, sizeof(*a));
	if (mnl_nlmsg_get_payload_len(nlh) < hdrlen)
		return -EBADMSG;
	mnl_attr_for_each(attr, nlh, hdrlen) {
		uint16_t type = mnl_attr_get_type(attr);

		/* Unknown (newer kernel) attributes are skipped, not errors. */
		if (type <= max)
			a->tb[type] = attr;
	}
	if ((const char *)attr != tail)
		return -EBADMSG;
	return 0;
}

static void link_msg(struct linkmon *m, const struct nlmsghdr *nlh)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *name;
	struct link_ent *e;
	struct attrs a;
	bool running;

	if (parse_attrs(nlh, sizeof(*ifi), IFLA_MAX, &a) < 0 || ifi->ifi_index <= 0) {
		log_debug("netlink: malformed link message ignored");
		return;
	}
	/* RTNLGRP_LINK also carries bridge-port messages (AF_BRIDGE); their
	 * RTM_DELLINK means "left the bridge", not "deleted". */
	if (ifi->ifi_family != AF_UNSPEC) {
		log_debug("netlink: link message for family %u ignored", ifi->ifi_family);
		return;
	}
	e = link_find(m, ifi->ifi_index);

	if (nlh->nlmsg_type == RTM_DELLINK) {
		if (e)
			link_remove(m, (size_t)(e - m->links));
		return;
	}

	running = (ifi->ifi_flags & IFF_RUNNING) != 0;
	if (!e) {
		struct link_ent *arr = grow(m->links, &m->cap_links, m->n_links, sizeof(*arr));

		if (!arr) {
			log_warn("netlink: out of memory for link %d", ifi->ifi_index);
			return;
		}
		m->links = arr;
		e = &m->links[m->n_links++];
		memset(e, 0, sizeof(*e));
		e->ifindex = ifi->ifi_index;
		e->running = running;
		/* A new link carries no tunnel yet: not news for anyone. */
	} else if (e->running != running) {
		e->running = running;
		if (m->synced && m->ops->link_changed)
			m->ops->link_changed(m->ctx, e->ifindex, running, false);
	}
	e->gen = m->gen;
	name = a.tb[IFLA_IFNAME];
	if (name && mnl_attr_validate(name, MNL_TYPE_NUL_STRING) == 0)
		snprintf(e->name, sizeof(e->name), "%s", mnl_attr_get_str(name));
}

static void addr_msg(struct linkmon *m, const struct nlmsghdr *nlh)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *at;
	struct addr_ent *e;
	struct attrs a;
	uint32_t flags;
	bool usable, was_usable;
	size_t alen;

	if (parse_attrs(nlh, sizeof(*ifa), IFA_MAX, &a) < 0) {
		log_debug("netlink: malformed address message ignored");
		return;
	}
	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) {
		log_debug("netlink: address message for family %u ignored", ifa->ifa_family);
		return;
	}
	alen = addr_len(ifa->ifa_family);
	/* IFA_LOCAL is the local end of a point-to-point link, where
	 * IFA_ADDRESS names the peer; otherwise they are the same. */
	at = a.tb[IFA_LOCAL] ? a.tb[IFA_LOCAL] : a.tb[IFA_ADDRESS];
	if (!at || mnl_attr_get_payload_len(at) != alen || ifa->ifa_index == 0) {
		log_debug("netlink: address message without a usable address ignored");
		return;
	}
	e = addr_find(m, ifa->ifa_family, mnl_attr_get_payload(at), (int)ifa->ifa_index);

	if (nlh->nlmsg_type == RTM_DELADDR) {
		if (e) {
			addr_remove(m, (size_t)(e - m->addrs), true);
		} else if (m->synced && m->ops->addr_changed) {
			/* Not in the table (lost with an overrun?): say it anyway,
			 * a needless "removed" costs nothing. */
			m->ops->addr_changed(m->ctx, false, ifa->ifa_family,
					     mnl_attr_get_payload(at), (int)ifa->ifa_index);
		}
		return;
	}

	flags = ifa->ifa_flags;
	if (a.tb[IFA_FLAGS] && mnl_attr_validate(a.tb[IFA_FLAGS], MNL_TYPE_U32) == 0)
		flags = mnl_attr_get_u32(a.tb[IFA_FLAGS]);
	/* A tentative IPv6 address cannot be a source yet: it "appears" when
	 * duplicate address detection is over. */
	usable = !(flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED));
	if (!e) {
		struct addr_ent *arr = grow(m->addrs, &m->cap_addrs, m->n_addrs, sizeof(*arr));

		if (!arr) {
			log_warn("netlink: out of memory for an address");
			return;
		}
		m->addrs = arr;
		e = &m->addrs[m->n_addrs++];
		memset(e, 0, sizeof(*e));
		e->family = ifa->ifa_family;
		e->ifindex = (int)ifa->ifa_index;
		memcpy(e->addr, mnl_attr_get_payload(at), alen);
		was_usable = false;
	} else {
		was_usable = e->usable;
	}
	e->usable = usable;
	e->gen = m->gen;
	if (usable && !was_usable && m->synced && m->ops->addr_changed)
		m->ops->addr_changed(m->ctx, true, e->family, e->addr, e->ifindex);
}

static void route_msg(struct linkmon *m, const struct nlmsghdr *nlh)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*rtm)) {
		log_debug("netlink: malformed route message ignored");
		return;
	}
	if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) {
		log_debug("netlink: route message for family %u ignored", rtm->rtm_family);
		return;
	}
	/* Cache entries (PMTU, redirects) do not change where a lookup goes. */
	if (rtm->rtm_flags & RTM_F_CLONED)
		return;
	/* Before the initial dump is over nobody has looked a route up yet. */
	if (m->synced)
		m->routes_dirty = true;
}

static void error_msg(struct linkmon *m, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*err)) {
		log_debug("netlink: short error message ignored");
		return;
	}
	if (m->phase != DUMP_IDLE && nlh->nlmsg_seq == m->dump_seq && err->error) {
		dump_failed(m, err->error);
		return;
	}
	log_debug("netlink: error %d for seq %u ignored", err->error, nlh->nlmsg_seq);
}

static void handle(struct linkmon *m, const struct nlmsghdr *nlh)
{
	bool ours = m->phase != DUMP_IDLE && nlh->nlmsg_seq == m->dump_seq;

	/* The table changed under the running dump: finish it, then again. */
	if (ours && (nlh->nlmsg_flags & NLM_F_DUMP_INTR))
		m->redump = true;

	switch (nlh->nlmsg_type) {
	case NLMSG_DONE:
		if (ours)
			dump_done(m);
		else
			log_debug("netlink: stray NLMSG_DONE seq %u ignored", nlh->nlmsg_seq);
		break;
	case NLMSG_ERROR:
		error_msg(m, nlh);
		break;
	case NLMSG_NOOP:
		break;
	case RTM_NEWLINK:
	case RTM_DELLINK:
		link_msg(m, nlh);
		break;
	case RTM_NEWADDR:
	case RTM_DELADDR:
		addr_msg(m, nlh);
		break;
	case RTM_NEWROUTE:
	case RTM_DELROUTE:
		route_msg(m, nlh);
		break;
	default:
		log_debug("netlink: unexpected message type %u ignored", nlh->nlmsg_type);
		break;
	}
}

int linkmon_feed(struct linkmon *m, const void *buf, size_t len)
{
	const struct nlmsghdr *nlh = buf;
	int rem = (int)len;
	int ret = 0;

	if (len > INT32_MAX)
		return -EINVAL;
	while (mnl_nlmsg_ok(nlh, rem)) {
		handle(m, nlh);
		nlh = mnl_nlmsg_next(nlh, &rem);
	}
	if (rem != 0) {
		log_debug("netlink: %d trailing bytes ignored", rem);
		ret = -EBADMSG;
	}
	/* Once per batch: a link going down takes many routes with it. */
	if (m->routes_dirty && m->synced) {
		m->routes_dirty = false;
		if (m->ops->routes_changed)
			m->ops->routes_changed(m->ctx);
	}
	return ret;
}

int linkmon_process(struct linkmon *m)
{
	static uint8_t buf[LINKMON_RECV_BUF];
	int fd = linkmon_fd(m);

	if (fd < 0)
		return -ENOTCONN;
	for (;;) {
		struct sockaddr_nl from;
		socklen_t fromlen = sizeof(from);
		ssize_t n;

		n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				linkmon_overrun(m);
				continue;
			}
			return -errno;
		}
		if ((size_t)n > sizeof(buf)) {
			/* Part of a message was cut off: as good as lost. */
			linkmon_overrun(m);
			continue;
		}
		/* Only the kernel speaks on these groups. */
		if (from.nl_pid != 0) {
			log_debug("netlink: message from port %u ignored", from.nl_pid);
			continue;
		}
		linkmon_feed(m, buf, (size_t)n);
	}
}

/* --------------------------------------------------------- route lookups */

static int put_addr(struct nlmsghdr *nlh, uint16_t type, const struct sockaddr *sa,
		    int *family)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		mnl_attr_put(nlh, type, 4, &sin->sin_addr);
		*family = AF_INET;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			mnl_attr_put(nlh, type, 4, &sin6->sin6_addr.s6_addr[12]);
			*family = AF_INET;
		} else {
			mnl_attr_put(nlh, type, 16, &sin6->sin6_addr);
			*family = AF_INET6;
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

static int route_reply_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	int *oif = data;
	struct nlattr *attr;

	if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(*rtm))
		return MNL_CB_OK;
	switch (rtm->rtm_type) {
	case RTN_UNICAST:
	case RTN_LOCAL:
		break;
	default: /* unreachable, blackhole, prohibit, ... */
		*oif = -ENETUNREACH;
		return MNL_CB_STOP;
	}
	mnl_attr_for_each(attr, nlh, sizeof(*rtm)) {
		if (mnl_attr_get_type(attr) == RTA_OIF &&
		    mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
			*oif = (int)mnl_attr_get_u32(attr);
	}
	return MNL_CB_STOP;
}

int linkmon_route_get(struct linkmon *m, const struct sockaddr *dst, const struct sockaddr *src,
		      int *oif)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;
	int family, sfamily, ret, result = 0;
	unsigned int portid;

	if (!m->query)
		return -EOPNOTSUPP;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = ++m->query_seq;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	ret = put_addr(nlh, RTA_DST, dst, &family);
	if (ret)
		return ret;
	if (src) {
		ret = put_addr(nlh, RTA_SRC, src, &sfamily);
		if (ret)
			return ret;
		if (sfamily != family)
			return -EINVAL;
		rtm->rtm_src_len = family == AF_INET6 ? 128 : 32;
	}
	rtm->rtm_family = (unsigned char)family;
	rtm->rtm_dst_len = family == AF_INET6 ? 128 : 32;

	if (mnl_socket_sendto(m->query, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	portid = mnl_socket_get_portid(m->query);
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(m->query, buf, sizeof(buf));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		/* Replies to an earlier lookup that timed out carry an older seq:
		 * mnl_cb_run says -ESRCH for those; read on. */
		ret = mnl_cb_run(buf, (size_t)n, m->query_seq, portid, route_reply_cb, &result);
		if (ret < 0 && errno == ESRCH)
			continue;
		if (ret < 0)
			return -errno;
		break;
	}
	if (result < 0)
		return result;
	if (result == 0)
		return -ENETUNREACH;
	*oif = result;
	return 0;
}

/* ------------------------------------------------------------ life cycle */

static void on_readable(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct linkmon *m = container_of(io, struct linkmon, io);
	int err = linkmon_process(m);

	if (err)
		log_warn("netlink: read failed: %s", strerror(-err));
}

struct linkmon *linkmon_new_feed(const struct linkmon_ops *ops, void *ctx)
{
	struct linkmon *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->ops = ops;
	m->ctx = ctx;
	dump_start(m);
	return m;
}

static struct mnl_socket *open_sock(int flags, unsigned int groups)
{
	struct mnl_socket *s = mnl_socket_open2(NETLINK_ROUTE, flags | SOCK_CLOEXEC);

	if (!s)
		return NULL;
	if (mnl_socket_bind(s, groups, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;

		mnl_socket_close(s);
		errno = e;
		return NULL;
	}
	return s;
}

struct linkmon *linkmon_new(struct loop *l, const struct linkmon_ops *ops, void *ctx)
{
	const unsigned int groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR |
				    RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
	struct timeval tv = { .tv_usec = LINKMON_QUERY_TIMEOUT_MS * 1000 };
	int sz = LINKMON_SOCK_BUF, err;
	struct linkmon *m;

	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->loop = l;
	m->ops = ops;
	m->ctx = ctx;

	m->mon = open_sock(SOCK_NONBLOCK, groups);
	if (!m->mon)
		goto fail;
	/* FORCE needs CAP_NET_ADMIN; without it take what rmem_max allows. */
	if (setsockopt(linkmon_fd(m), SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(linkmon_fd(m), SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));

	m->query = open_sock(0, 0);
	if (!m->query)
		goto fail;
	if (setsockopt(mnl_socket_get_fd(m->query), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		goto fail;

	if (l) {
		err = loop_add(l, &m->io, linkmon_fd(m), EPOLLIN, on_readable);
		if (err < 0) {
			errno = -err;
			goto fail;
		}
		m->io_added = true;
	}
	dump_start(m);
	return m;

fail:
	err = errno ? errno : ENOMEM;
	linkmon_free(m);
	errno = err;
	return NULL;
}

void linkmon_free(struct linkmon *m)
{
	if (!m)
		return;
	if (m->loop)
		loop_timer_disarm(m->loop, &m->retry);
	if (m->io_added)
		loop_del(m->loop, &m->io);
	if (m->mon)
		mnl_socket_close(m->mon);
	if (m->query)
		mnl_socket_close(m->query);
	free(m->links);
	free(m->addrs);
	free(m);
}
