// SPDX-License-Identifier: MIT
/*
 * One tunnel connection: Mux.Cool frames in and out, its session table, its
 * write queue, and the userspace data path between the tunnel and each
 * session's local socket.
 *
 * Flow control, which V2Ray lacks (§1.7 of the reference):
 *  - toward a local socket, each session buffers at most sessionBufferBytes;
 *    above that the tunnel stops reading (only this tunnel, only until the
 *    session drains), and a session that makes no progress for
 *    sessionStallTimeout is ended with End+Error and reset, so the tunnel
 *    resumes.  A stalled consumer costs others at most that long.
 *  - toward the tunnel, local sockets are read only while the tunnel's write
 *    queue is below TUNNEL_OUT_HIGH; reading the tunnel never waits for our
 *    own writes, so a peer that blocks cannot deadlock us.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "control.h"
#include "kpath.h"
#include "log.h"
#include "policy.h"
#include "proxy.h"

enum cur_kind {
	CUR_DISCARD = 0, /* payload of this frame is dropped */
	CUR_STREAM,      /* payload goes to t->cur's local socket */
	CUR_DATAGRAM,    /* payload is one datagram for t->cur: gather it */
	CUR_CONTROL,     /* bridge: payload is one Control message: gather it */
	CUR_END,         /* End frame: payload dropped, act at frame end */
};

#define RX_BUDGET (4u * 1024 * 1024) /* bytes handled per callback before yielding */
#define UP_BUDGET (512u * 1024)       /* bytes read from one local socket per turn */

static void tunnel_rx(struct tunnel *t);
static void tunnel_tx(struct tunnel *t);
static void session_pump_up(struct session *s);
static void session_flush_local(struct session *s);
static void session_destroy(struct session *s);
static void waitq_push(struct tunnel *t, struct session *s);
static void tunnel_lift_peer_pauses(struct tunnel *t);

/* A non-blocking connect: -1 still in progress, 0 connected, else its errno. */
static int connect_result(int fd, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		return -1;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

/* ---------- chunk queue ---------- */

/* Append iov[0..n) minus its first `skip` bytes as one chunk. */
static int chunkq_append_iov(struct chunkq *q, const struct iovec *iov, int n, size_t skip)
{
	size_t total = 0, off = 0;
	struct chunk *c;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (skip >= total)
		return 0;
	c = malloc(sizeof(*c) + total - skip);
	if (!c)
		return -ENOMEM;
	c->next = NULL;
	c->off = 0;
	c->len = (uint32_t)(total - skip);
	for (int i = 0; i < n; i++) {
		size_t len = iov[i].iov_len;
		const uint8_t *base = iov[i].iov_base;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		memcpy(c->data + off, base + skip, len - skip);
		off += len - skip;
		skip = 0;
	}
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += c->len;
	return 0;
}

/* Drop n bytes from the front. */
static void chunkq_consume(struct chunkq *q, size_t n)
{
	q->bytes -= n;
	while (n) {
		struct chunk *c = q->head;
		size_t left = c->len - c->off;

		if (n < left) {
			c->off += (uint32_t)n;
			return;
		}
		n -= left;
		q->head = c->next;
		if (!q->head)
			q->tail = NULL;
		free(c);
	}
}

void chunkq_clear(struct chunkq *q)
{
	while (q->head) {
		struct chunk *c = q->head;

		q->head = c->next;
		free(c);
	}
	q->tail = NULL;
	q->bytes = 0;
}

static int chunkq_iov(const struct chunkq *q, struct iovec *iov, int max)
{
	int n = 0;

	for (struct chunk *c = q->head; c && n < max; c = c->next) {
		iov[n].iov_base = c->data + c->off;
		iov[n].iov_len = c->len - c->off;
		n++;
	}
	return n;
}

/* ---------- tunnel send side ---------- */

static void tunnel_schedule_close(struct tunnel *t, const char *reason);

/*
 * Queue one whole frame (header a, payload b).  When nothing is queued the
 * frame is written at once from the caller's buffers and only what the
 * socket did not take is copied.
 */
static int tunnel_queue(struct tunnel *t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	struct iovec iov[2] = { { (void *)a, alen }, { (void *)b, blen } };
	size_t done = 0;

	if (t->closed || t->failed)
		return -EPIPE;
	if (!t->out.bytes && !t->connecting) {
		ssize_t n = writev(t->io.fd, iov, blen ? 2 : 1);

		if (n > 0) {
			done = (size_t)n;
			t->tx_bytes += (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			tunnel_schedule_close(t, strerror(errno));
			return -EPIPE;
		}
		if (done == alen + blen)
			return 0;
	}
	if (chunkq_append_iov(&t->out, iov, 2, done) < 0) {
		tunnel_schedule_close(t, "out of memory");
		return -ENOMEM;
	}
	if (t->out.bytes > TUNNEL_OUT_HARD) {
		tunnel_schedule_close(t, "peer is not reading the tunnel");
		return -EPIPE;
	}
	return 0;
}

int tunnel_send_frame(struct tunnel *t, const struct mux_frame *f, const uint8_t *data, size_t len)
{
	uint8_t hdr[MUX_HDR_MAX];
	struct mux_frame fr = *f;
	ssize_t hlen;

	if (data || len) {
		fr.option |= MUX_OPT_DATA;
		fr.has_data = true;
		fr.data_len = (uint16_t)len;
	}
	hlen = mux_encode_header(hdr, sizeof(hdr), &fr);
	if (hlen < 0)
		return (int)hlen;
	return tunnel_queue(t, hdr, (size_t)hlen, data, len);
}

static void tunnel_send_end(struct tunnel *t, uint16_t id, bool error)
{
	uint8_t hdr[6] = { 0, 4, (uint8_t)(id >> 8), (uint8_t)id, MUX_END, error ? MUX_OPT_ERROR : 0 };

	tunnel_queue(t, hdr, sizeof(hdr), NULL, 0);
}

static void wait_service(struct loop *l, void *ctx);

static void tunnel_wake_waiters(struct tunnel *t)
{
	if (t->wait_head && !t->wait_scheduled && t->out.bytes < TUNNEL_OUT_LOW) {
		t->wait_scheduled = true;
		loop_defer(t->px->loop, wait_service, t);
	}
}

static void tunnel_tx(struct tunnel *t)
{
	struct iovec iov[64];

	while (t->out.bytes) {
		int n = chunkq_iov(&t->out, iov, 64);
		ssize_t w = writev(t->io.fd, iov, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				tunnel_close(t, strerror(errno));
			return;
		}
		t->tx_bytes += (size_t)w;
		chunkq_consume(&t->out, (size_t)w);
	}
	if (t->closing) {
		tunnel_close(t, t->close_reason);
		return;
	}
	tunnel_wake_waiters(t);
}

/* ---------- sessions ---------- */

struct session *session_find(struct tunnel *t, uint16_t id)
{
	struct session *s;

	HASH_FIND(hh, t->sessions, &id, sizeof(id), s);
	return s;
}

static void session_on_io(struct loop *l, struct loop_io *io, uint32_t events);

static struct session *session_alloc(struct tunnel *t, uint16_t id, enum session_kind kind)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->id = id;
	s->t = t;
	s->kind = kind;
	s->io.fd = -1;
	s->serial = ++t->px->next_session_serial;
	HASH_ADD(hh, t->sessions, id, sizeof(s->id), s);
	t->live_sessions++;
	return s;
}

static int session_watch(struct session *s, int fd)
{
	return loop_add(s->t->px->loop, &s->io, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, session_on_io);
}

struct session *session_new_bridge(struct tunnel *t, uint16_t id, enum session_kind kind)
{
	return session_alloc(t, id, kind);
}

static bool id_in_use(void *ctx, uint16_t id)
{
	return session_find(ctx, id) != NULL;
}

/* Portal: allocate an id, send New (with the first payload if we have it). */
struct session *tunnel_open_session(struct tunnel *t, enum session_kind kind, int fd,
				    const struct mux_target *target, const uint8_t *first, size_t first_len)
{
	struct mux_frame f = { .status = MUX_NEW, .target = *target };
	uint16_t id = portal_next_session_id(&t->next_id, id_in_use, t);
	struct session *s;

	if (!id)
		return NULL;
	s = session_alloc(t, id, kind);
	if (!s)
		return NULL;
	t->total_sessions++;
	f.session_id = id;
	if (fd >= 0 && session_watch(s, fd) < 0) {
		session_destroy(s);
		return NULL;
	}
	/* kernel path: attach before New, so no frame of it can come first */
	kpath_session_settled(s);
	if (tunnel_send_frame(t, &f, first, first_len) < 0) {
		session_destroy(s);
		return NULL;
	}
	s->sent += first_len;
	return s;
}

static void session_unblock_tunnel(struct session *s);

/* End with error toward the peer and reset the local socket. */
void session_abort(struct session *s)
{
	if (s->dead)
		return;
	kpath_session_release(s, true);
	if (s->io.fd >= 0) {
		loop_del(s->t->px->loop, &s->io);
		sock_reset_close(s->io.fd);
		s->io.fd = -1;
	}
	session_end(s, true, NULL);
}

static void session_stall_fired(struct loop *l, void *ctx)
{
	struct session *s = ctx;

	log_warn("tunnel %llu session %u: no progress for %us with %zu bytes buffered: ended with error, reset",
		 (unsigned long long)s->t->id, s->id, s->t->px->cfg->revsock.session_stall_timeout_s,
		 s->to_local.bytes);
	session_abort(s);
}

static void session_stall_arm(struct session *s)
{
	loop_timer_arm(s->t->px->loop, &s->stall, s->t->px->cfg->revsock.session_stall_timeout_s * 1000ULL,
		       session_stall_fired, s);
}

void session_note_progress(struct session *s)
{
	if (!s->dead && (s->blocking_tunnel || s->flow_paused))
		session_stall_arm(s);
}

/* Our pause of this session is over: tell the peer (if it can still hear it). */
static void session_flow_resume(struct session *s)
{
	s->flow_paused = false;
	tunnel_send_flow(s->t, s->id, false);
	if (!s->blocking_tunnel)
		loop_timer_disarm(s->t->px->loop, &s->stall);
}

/*
 * Where a session that asked its peer to pause pauses the whole tunnel: what
 * was on its way when the pause left still arrives, up to the pipe between
 * the two processes (our tunnel queue and both sockets' buffers: several MB
 * on loopback; a slow TCG VM once passed twice the bound).  A peer that said
 * it is revsock honours the pause, so only that pipe can come: four times the
 * bound.  Otherwise (V2Ray ignores it) twice the bound, then the tunnel
 * pauses as without flow control.
 */
static size_t flow_block_at(const struct tunnel *t, size_t limit)
{
	return t->peer_revsock ? 4 * limit : 2 * limit;
}

/*
 * The bound on a session's buffer toward its local socket.
 *
 * At the bound a side asks its peer to stop reading this session's socket
 * (Control flow_pause, tunnel_send_flow) and keeps reading the tunnel, so the
 * other sessions keep their throughput; what was already on its way lands in
 * the buffer (flow_block_at).  Without flow control (UDP, no control session,
 * a bridge toward a V2Ray portal) or past flow_block_at, the tunnel's reads
 * pause until the buffer is down to half the bound.  Either way the stall
 * timer ends a session whose consumer makes no progress for
 * sessionStallTimeout while its buffer is full.
 */
static void session_check_bound(struct session *s)
{
	struct tunnel *t = s->t;
	size_t limit = t->px->cfg->revsock.session_buffer_bytes;

	if (!s->flow_paused && s->to_local.bytes >= limit && s->kind == SESSION_TCP &&
	    tunnel_send_flow(t, s->id, true) == 0) {
		s->flow_paused = true;
		if (!s->blocking_tunnel)
			session_stall_arm(s);
		log_debug("tunnel %llu session %u: buffer full (%zu bytes), asked the peer to pause it",
			  (unsigned long long)t->id, s->id, s->to_local.bytes);
	}
	if (s->to_local.bytes >= (s->flow_paused ? flow_block_at(t, limit) : limit) && !s->blocking_tunnel) {
		/* a tunnel with a stream parser cannot really be paused: kpath.c
		 * watches what piles up and takes it off the kernel path if needed */
		kpath_tunnel_hold(t);
		s->blocking_tunnel = true;
		t->rx_blocked_by = s;
		session_stall_arm(s);
		tunnel_lift_peer_pauses(t);
		log_debug("tunnel %llu session %u: buffer full (%zu bytes), tunnel paused",
			  (unsigned long long)t->id, s->id, s->to_local.bytes);
	} else if (s->blocking_tunnel && s->to_local.bytes <= limit / 2) {
		session_unblock_tunnel(s);
	}
	if (s->flow_paused && s->to_local.bytes <= limit / 2)
		session_flow_resume(s);
}

/*
 * Per-session flow control, revsock's Control extension (proto/reverse.proto):
 * a side whose buffer toward a local socket is full asks the peer to stop
 * reading that session's socket.  The portal always may (a V2Ray bridge
 * ignores the message); the bridge only once the portal said it is revsock
 * (a V2Ray portal does not read its control session).  Not after DRAIN: the
 * control session is closing (and a V2Ray bridge would read the message as
 * ACTIVE).
 */
/* One encoded Control message (n bytes or -errno) as a Keep on the control session. */
static int send_control_keep(struct tunnel *t, const uint8_t *msg, ssize_t n)
{
	struct mux_frame f = { .session_id = MUX_CONTROL_SESSION_ID, .status = MUX_KEEP };

	if (n < 0)
		return (int)n;
	return tunnel_send_frame(t, &f, msg, (size_t)n);
}

int tunnel_send_flow(struct tunnel *t, uint16_t sid, bool pause)
{
	uint8_t msg[16];

	if (!t->control_open || t->draining || (t->role == TUNNEL_BRIDGE && !t->peer_revsock))
		return -ENOTCONN;
	return send_control_keep(t, msg, control_encode_flow(msg, sizeof(msg), CONTROL_ACTIVE, pause ? &sid : NULL,
							     pause ? 1 : 0, pause ? NULL : &sid, pause ? 0 : 1));
}

void tunnel_send_revsock_hello(struct tunnel *t)
{
	uint8_t msg[8];

	send_control_keep(t, msg, control_encode_revsock_hello(msg, sizeof(msg)));
}

/* A Control message from the peer: its hello (it is revsock: it reads and
 * honours flow messages; a bridge answers the portal's hello so the portal
 * knows too), then its flow_pause / flow_resume lists. */
void tunnel_peer_flow(struct tunnel *t, const struct control_msg *m)
{
	if (m->revsock && !t->peer_revsock) {
		t->peer_revsock = true;
		log_debug("tunnel %llu: the %s is revsock: per-session flow control both ways",
			  (unsigned long long)t->id, t->role == TUNNEL_BRIDGE ? "portal" : "bridge");
		if (t->role == TUNNEL_BRIDGE)
			tunnel_send_revsock_hello(t);
	}
	for (size_t i = 0; i < m->npause; i++) {
		struct session *s = session_find(t, m->pause[i]);

		/* not while our own reads are blocked: see tunnel_lift_peer_pauses */
		if (s && !t->rx_blocked_by)
			session_peer_flow(s, true);
	}
	for (size_t i = 0; i < m->nresume; i++) {
		struct session *s = session_find(t, m->resume[i]);

		if (s)
			session_peer_flow(s, false);
	}
}

/* The control session is closing: no flow message can pass any more.  Resume
 * what we paused (while we still can send) and lift what the peer paused. */
void tunnel_flow_end(struct tunnel *t)
{
	struct session *s, *tmp;

	HASH_ITER(hh, t->sessions, s, tmp)
		if (s->flow_paused)
			session_flow_resume(s);
	tunnel_lift_peer_pauses(t);
}

/* The peer's flow_pause / flow_resume for this session. */
void session_peer_flow(struct session *s, bool pause)
{
	if (s->dead || s->peer_paused == pause)
		return;
	s->peer_paused = pause;
	log_debug("tunnel %llu session %u: the peer asked to %s it", (unsigned long long)s->t->id, s->id,
		  pause ? "pause" : "resume");
	if (!pause && s->io.fd >= 0 && !s->connecting)
		waitq_push(s->t, s); /* the socket may hold what we left unread: read it soon */
}

/*
 * A session's buffer toward its local socket blocks this tunnel's reads.
 * Then no flow_resume from the peer can be read, and a pause must not outlast
 * that: an echo service stops reading while its replies cannot be sent, its
 * replies wait on a paused session, the resume waits behind the tunnel's
 * unread bytes: a deadlock the stall timer would end after 5 s (seen in the
 * suite's tcp_echo).  So every pause is lifted while the reads are blocked;
 * the peer falls back to pausing its own reads (flow_block_at) if the session
 * keeps coming.
 */
static void tunnel_lift_peer_pauses(struct tunnel *t)
{
	struct session *s, *tmp;

	HASH_ITER(hh, t->sessions, s, tmp)
		session_peer_flow(s, false);
}

static void rx_resume(struct loop *l, void *ctx)
{
	struct tunnel *t = ctx;

	t->rx_scheduled = false;
	if (!t->closed)
		tunnel_rx(t);
}

static void tunnel_schedule_rx(struct tunnel *t)
{
	if (!t->rx_scheduled && !t->closed) {
		t->rx_scheduled = true;
		loop_defer(t->px->loop, rx_resume, t);
	}
}

static void session_unblock_tunnel(struct session *s)
{
	struct tunnel *t = s->t;

	if (!s->blocking_tunnel)
		return;
	s->blocking_tunnel = false;
	loop_timer_disarm(t->px->loop, &s->stall);
	if (t->rx_blocked_by == s) {
		t->rx_blocked_by = NULL;
		kpath_tunnel_unhold(t);
		tunnel_schedule_rx(t);
	}
}

static void session_free_cb(struct loop *l, void *ctx)
{
	struct session *s = ctx;

	chunkq_clear(&s->to_local);
	free(s);
}

/* Forget the session everywhere and close its socket. */
static void session_destroy(struct session *s)
{
	struct tunnel *t = s->t;
	struct loop *l = t->px->loop;

	if (s->dead)
		return;
	s->dead = true;
	session_unblock_tunnel(s);
	loop_timer_disarm(l, &s->stall);
	loop_timer_disarm(l, &s->udp_idle);
	kpath_session_release(s, true);
	if (s->connecting)
		outbound_cancel(t->px, s);
	if (s->io.fd >= 0) {
		loop_del(l, &s->io);
		close(s->io.fd);
		s->io.fd = -1;
	}
	if (s->kind == SESSION_UDP_INBOUND && s->uin)
		HASH_DELETE(hh_peer, s->uin->sessions, s);
	HASH_DELETE(hh, t->sessions, s);
	t->live_sessions--;
	if (t->cur == s)
		t->cur = NULL;
	/* the wait queue holds dead sessions until serviced: skip them there */
	if (!s->in_waitq)
		loop_defer(l, session_free_cb, s);
	if (t->role == TUNNEL_PORTAL)
		portal_session_gone(t);
}

/*
 * End a session on our side: tell the peer (unless the peer ended it), and
 * close the local socket.  A graceful end first delivers what is buffered.
 */
void session_end(struct session *s, bool error, const char *why)
{
	struct tunnel *t = s->t;

	if (s->dead)
		return;
	if (why)
		log_info("tunnel %llu session %u ended%s: %s", (unsigned long long)t->id, s->id,
			 error ? " with error" : "", why);
	tunnel_send_end(t, s->id, error);
	session_destroy(s);
}

/* The peer ended it: with error, drop what is buffered; without, deliver it first. */
static void session_peer_end(struct session *s, bool error)
{
	/* A request may still sit here while the bridge connects to the
	 * service: a graceful End delivers it first, as V2Ray's pipe does. */
	if (s->kattached && !error) {
		/* kernel path: bytes may still be in flight toward the socket */
		s->close_after_flush = true;
		s->local_eof = true;
		kpath_session_peer_end(s);
		if (!s->kwait)
			session_flush_local(s);
		return;
	}
	if (error || (!s->to_local.bytes && !s->connecting) || s->kind != SESSION_TCP) {
		session_destroy(s);
		return;
	}
	/* Stop reading the user; deliver what is buffered, then close.  The
	 * entry stays in the table until then so a tunnel close finds it. */
	s->close_after_flush = true;
	s->local_eof = true;
	if (!s->connecting)
		session_flush_local(s);
}

/* Write buffered bytes toward the local socket. */
static void session_flush_local(struct session *s)
{
	struct iovec iov[64];
	bool progress = false;

	if (s->kwait) { /* kernel bytes in flight: kpath.c calls again when drained */
		session_check_bound(s);
		return;
	}
	while (s->to_local.bytes && s->io.fd >= 0) {
		int n = chunkq_iov(&s->to_local, iov, 64);
		ssize_t w;

		if (s->kind == SESSION_UDP)
			break; /* datagrams are never queued */
		w = writev(s->io.fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			session_end(s, true, strerror(errno));
			return;
		}
		chunkq_consume(&s->to_local, (size_t)w);
		s->delivered += (size_t)w;
		progress = true;
	}
	if (progress)
		session_note_progress(s);
	session_check_bound(s);
	if (s->dead)
		return;
	if (!s->to_local.bytes && s->close_after_flush)
		session_destroy(s);
	else if (!s->to_local.bytes)
		kpath_session_settled(s);
}

void session_flush(struct session *s)
{
	session_flush_local(s);
}

/* Payload from the tunnel for this session's local socket. */
/*
 * Payload from the tunnel for this session's local socket: the payloads of
 * consecutive frames, written with one sendmsg when nothing is queued; only
 * what the socket did not take is copied.
 */
static void session_deliver(struct session *s, const struct iovec *iov, int n, size_t len)
{
	size_t done = 0;

	if (!s->to_local.bytes && !s->connecting && s->io.fd >= 0 && !s->kwait) {
		struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(s->io.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0) {
			done = (size_t)w;
			s->delivered += (size_t)w;
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			session_end(s, true, strerror(errno));
			return;
		}
		if (done == len)
			return;
	}
	if (chunkq_append_iov(&s->to_local, iov, n, done) < 0) {
		session_end(s, true, "out of memory");
		return;
	}
	session_check_bound(s);
}

/* Hand the gathered payloads (all of one session) to it. */
static void gather_flush(struct tunnel *t)
{
	struct proxy *px = t->px;
	struct session *s = px->gather_s;

	if (!px->gather_n)
		return;
	px->gather_s = NULL;
	if (s && !s->dead)
		session_deliver(s, px->gather_iov, px->gather_n, px->gather_len);
	px->gather_n = 0;
	px->gather_len = 0;
	if (s && !s->dead && !s->to_local.bytes)
		kpath_session_settled(s);
}

static void gather_add(struct tunnel *t, struct session *s, const uint8_t *data, size_t len)
{
	struct proxy *px = t->px;

	if (px->gather_n && (px->gather_s != s || px->gather_n == GATHER_MAX))
		gather_flush(t);
	px->gather_s = s;
	px->gather_iov[px->gather_n].iov_base = (void *)data;
	px->gather_iov[px->gather_n].iov_len = len;
	px->gather_n++;
	px->gather_len += len;
}

static void udp_idle_fired(struct loop *l, void *ctx)
{
	session_end(ctx, false, "UDP session idle");
}

/* UDP has no end: a session ends after udpIdleTimeout without a datagram. */
void session_touch_udp(struct session *s)
{
	if (s->kind == SESSION_TCP || s->dead)
		return;
	loop_timer_arm(s->t->px->loop, &s->udp_idle, s->t->px->cfg->revsock.udp_idle_timeout_s * 1000ULL,
		       udp_idle_fired, s);
}

static void session_deliver_datagram(struct session *s, const uint8_t *data, size_t len)
{
	ssize_t w;

	if (s->connecting || s->dead)
		return; /* UDP: a datagram before the socket exists is lost, as on the wire */
	if (s->kind == SESSION_UDP_INBOUND)
		w = sendto(s->uin->io.fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&s->peer, s->peer_len);
	else
		w = send(s->io.fd, data, len, MSG_DONTWAIT);
	if (w >= 0)
		s->delivered += (size_t)w;
	session_touch_udp(s);
}

void session_send_datagram(struct session *s, const uint8_t *data, size_t len)
{
	struct tunnel *t = s->t;
	uint8_t hdr[MUX_KEEP_HDR_LEN];

	if (s->dead || t->closed)
		return;
	if (len > MUX_UDP_DATA_MAX) {
		log_debug("session %u: datagram of %zu bytes dropped (Mux.Cool UDP frames carry at most %d)",
			  s->id, len, MUX_UDP_DATA_MAX);
		return;
	}
	if (t->out.bytes > TUNNEL_OUT_HIGH)
		return; /* UDP under congestion: drop, never queue without bound */
	mux_keep_header(hdr, s->id, (uint16_t)len);
	if (tunnel_queue(t, hdr, sizeof(hdr), data, len) == 0)
		s->sent += len;
	session_touch_udp(s);
}

static void waitq_push(struct tunnel *t, struct session *s)
{
	if (s->in_waitq)
		return;
	s->in_waitq = true;
	s->wait_next = NULL;
	if (t->wait_tail)
		t->wait_tail->wait_next = s;
	else
		t->wait_head = s;
	t->wait_tail = s;
	tunnel_wake_waiters(t);
}

static void wait_service(struct loop *l, void *ctx)
{
	struct tunnel *t = ctx;
	struct session *end = t->wait_tail;

	t->wait_scheduled = false;
	/* One round over the sessions waiting now; those that still have data
	 * requeue themselves behind, so every session gets a turn. */
	while (t->wait_head && !t->closed && t->out.bytes < TUNNEL_OUT_HIGH) {
		struct session *s = t->wait_head;
		bool last = s == end;

		t->wait_head = s->wait_next;
		if (!t->wait_head)
			t->wait_tail = NULL;
		s->in_waitq = false;
		if (s->dead)
			loop_defer(l, session_free_cb, s);
		else
			session_pump_up(s);
		if (last)
			break;
	}
}

/*
 * Read up to UP_FRAMES full frames in one readv: payloads land at their wire
 * offsets with an 8-byte header slot before each, so every segment but the
 * last is full and the frames are contiguous: one write sends them all.
 */
static ssize_t read_frames(int fd, uint8_t *buf)
{
	struct iovec iov[UP_FRAMES];

	for (int i = 0; i < UP_FRAMES; i++) {
		iov[i].iov_base = buf + (size_t)i * UP_FRAME_SPAN + MUX_KEEP_HDR_LEN;
		iov[i].iov_len = MUX_STREAM_DATA_MAX;
	}
	return readv(fd, iov, UP_FRAMES);
}

/* Fill the header slots for n payload bytes read by read_frames; returns the wire length. */
static size_t frame_headers(uint8_t *buf, uint16_t sid, size_t n)
{
	size_t wire = 0;

	while (n) {
		size_t len = n < MUX_STREAM_DATA_MAX ? n : MUX_STREAM_DATA_MAX;

		mux_keep_header(buf + wire, sid, (uint16_t)len);
		wire += MUX_KEEP_HDR_LEN + len;
		n -= len;
	}
	return wire;
}

/* Read the local socket and frame what it says toward the tunnel. */
static void session_pump_up(struct session *s)
{
	struct tunnel *t = s->t;
	uint8_t *buf = t->px->scratch;
	size_t budget = UP_BUDGET;

	while (s->local_readable && !s->dead && !s->local_eof && !s->peer_paused) {
		ssize_t n;

		if (t->out.bytes >= TUNNEL_OUT_HIGH || t->connecting) {
			waitq_push(t, s);
			return;
		}
		if (!budget) {
			waitq_push(t, s); /* fairness: others first */
			return;
		}
		if (s->kind == SESSION_UDP) {
			n = recv(s->io.fd, buf + MUX_KEEP_HDR_LEN, MUX_STREAM_DATA_MAX, MSG_DONTWAIT);
			if (n >= 0) {
				session_send_datagram(s, buf + MUX_KEEP_HDR_LEN, (size_t)n);
				budget = budget > (size_t)n + 64 ? budget - (size_t)n - 64 : 0;
				continue;
			}
		} else {
			n = read_frames(s->io.fd, buf);
			if (n > 0) {
				size_t wire = frame_headers(buf, s->id, (size_t)n);

				if (tunnel_queue(t, buf, wire, NULL, 0) < 0)
					return;
				s->sent += (size_t)n;
				budget = budget > (size_t)n ? budget - (size_t)n : 0;
				continue;
			}
			if (n == 0) {
				/* V2Ray has no half-close: the user's EOF ends the session. */
				s->local_eof = true;
				session_end(s, false, NULL);
				return;
			}
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			s->local_readable = false;
			return;
		}
		if (s->kind == SESSION_UDP && errno == ECONNREFUSED)
			continue; /* ICMP from an earlier datagram: UDP carries on */
		session_end(s, true, strerror(errno));
		return;
	}
}

/* Bridge: the dial of the session's target produced a socket. */
int session_attach_fd(struct session *s, int fd, bool connecting)
{
	int err = session_watch(s, fd);

	if (err < 0)
		return err;
	s->connecting = connecting;
	if (!connecting) {
		s->local_readable = true;
		session_local_connected(s);
	}
	return 0;
}

void session_local_connected(struct session *s)
{
	s->connecting = false;
	session_flush_local(s);
	if (!s->dead)
		session_pump_up(s);
}

static void session_on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct session *s = (struct session *)((char *)io - offsetof(struct session, io));

	if (s->connecting) {
		int err = connect_result(io->fd, events);

		if (err < 0)
			return;
		if (err) {
			session_end(s, true, strerror(err));
			return;
		}
		s->local_readable = true;
		session_local_connected(s);
		return;
	}
	if (events & EPOLLOUT)
		session_flush_local(s);
	if (s->dead)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		s->local_readable = true;
		session_pump_up(s);
	}
}

/* ---------- tunnel receive side ---------- */

/* V2Ray drops the whole tunnel for a UDP frame over 2048 bytes: so do we. */
static bool udp_frame_too_large(struct tunnel *t, const struct mux_frame *f, const struct session *s)
{
	if (!f->has_data || f->data_len <= MUX_UDP_DATA_MAX)
		return false;
	if (!(s && s->kind != SESSION_TCP) && !(f->status == MUX_NEW && f->target.network == MUX_NET_UDP))
		return false;
	log_warn("tunnel %llu: malformed frame from %s: UDP frame of %u bytes (max %d)", (unsigned long long)t->id,
		 t->peer, f->data_len, MUX_UDP_DATA_MAX);
	tunnel_close(t, "packet size too large (UDP frame over 2048 bytes)");
	return true;
}

static void frame_begin(struct tunnel *t, const struct mux_frame *f)
{
	struct session *s;

	log_debug("tunnel %llu rx frame sid %u status %u option 0x%02x len %u", (unsigned long long)t->id,
		  f->session_id, f->status, f->option, f->has_data ? f->data_len : 0);
	t->cur = NULL;
	t->cur_kind = CUR_DISCARD;
	t->pkt_len = 0;
	switch (f->status) {
	case MUX_NEW:
		s = session_find(t, f->session_id);
		if (udp_frame_too_large(t, f, s) || t->role == TUNNEL_PORTAL)
			return; /* V2Ray's client ignores New from the server */
		if (f->target.addr.type == MUX_ADDR_DOMAIN &&
		    !strcmp(f->target.addr.domain.name, MUX_CONTROL_DOMAIN)) {
			t->control_open = true;
			t->cur_kind = CUR_CONTROL;
			return;
		}
		if (s) /* V2Ray silently replaces the entry */
			session_destroy(s);
		bridge_new_session(t, f);
		s = session_find(t, f->session_id);
		if (!s)
			return;
		t->cur = s;
		t->cur_kind = s->kind == SESSION_TCP ? CUR_STREAM : CUR_DATAGRAM;
		return;
	case MUX_KEEP:
		if (f->session_id == MUX_CONTROL_SESSION_ID && t->control_open) {
			t->cur_kind = CUR_CONTROL; /* bridge: the portal's; portal: a revsock bridge's flow messages */
			return;
		}
		s = session_find(t, f->session_id);
		if (!s) {
			if (f->has_data && !(t->role == TUNNEL_PORTAL && f->session_id == MUX_CONTROL_SESSION_ID))
				tunnel_send_end(t, f->session_id, false);
			return;
		}
		if (udp_frame_too_large(t, f, s))
			return;
		if (s->kattached && f->has_data) {
			gather_flush(t); /* its earlier payloads first */
			kpath_session_may_write(s); /* PAUSED: buffer until the kernel drained */
			if (s->dead)
				return;
		}
		t->cur = s;
		t->cur_kind = s->kind == SESSION_TCP ? CUR_STREAM : CUR_DATAGRAM;
		return;
	case MUX_END:
		t->cur_kind = CUR_END;
		return;
	default: /* KeepAlive: accepted, ignored (but not an oversized UDP frame) */
		if (f->has_data && f->data_len > MUX_UDP_DATA_MAX)
			udp_frame_too_large(t, f, session_find(t, f->session_id));
		return;
	}
}

static void frame_end(struct tunnel *t, const struct mux_frame *f)
{
	struct session *s = t->cur;

	switch (t->cur_kind) {
	case CUR_DATAGRAM:
		if (s && !s->dead && (f->has_data))
			session_deliver_datagram(s, t->pkt, t->pkt_len);
		break;
	case CUR_CONTROL:
		if (f->has_data && t->pkt_len) {
			if (t->role == TUNNEL_BRIDGE)
				bridge_control_block(t, t->pkt, t->pkt_len);
			else
				portal_control_block(t, t->pkt, t->pkt_len);
		}
		break;
	case CUR_END:
		if (t->role == TUNNEL_BRIDGE && f->session_id == MUX_CONTROL_SESSION_ID && t->control_open) {
			t->control_open = false;
			tunnel_flow_end(t); /* no flow message can pass any more */
			break;
		}
		s = session_find(t, f->session_id);
		if (s)
			session_peer_end(s, f->option & MUX_OPT_ERROR);
		break;
	default:
		break;
	}
	t->cur = NULL;
	t->cur_kind = CUR_DISCARD;
	t->pkt_len = 0;
}

/* Returns false when the tunnel must stop processing (closed or paused). */
static bool frame_data(struct tunnel *t, const struct mux_event *ev)
{
	switch (t->cur_kind) {
	case CUR_STREAM:
		if (t->cur && !t->cur->dead)
			gather_add(t, t->cur, ev->data, ev->len);
		break;
	case CUR_DATAGRAM:
	case CUR_CONTROL:
		/* UDP frames over 2048 bytes were refused at FRAME; a Control
		 * message that large is not one (V2Ray's are <= 68 bytes). */
		if (t->pkt_len + ev->len <= sizeof(t->pkt)) {
			memcpy(t->pkt + t->pkt_len, ev->data, ev->len);
			t->pkt_len += ev->len;
		}
		break;
	default:
		break;
	}
	return !t->closed && !t->rx_blocked_by;
}

static void tunnel_drop_rbuf(struct tunnel *t)
{
	if (t->rbuf_own)
		free(t->rbuf);
	t->rbuf = NULL;
	t->rbuf_own = false;
	t->rbuf_off = t->rbuf_len = 0;
}

/* Paused with bytes of the shared read buffer left: keep them. */
static void tunnel_keep_rbuf(struct tunnel *t)
{
	size_t left = t->rbuf_len - t->rbuf_off;
	uint8_t *own;

	if (t->rbuf_own || t->closed)
		return;
	if (!left) {
		tunnel_drop_rbuf(t);
		return;
	}
	own = malloc(left);
	if (!own) {
		tunnel_close(t, "out of memory");
		return;
	}
	memcpy(own, t->rbuf + t->rbuf_off, left);
	t->rbuf = own;
	t->rbuf_own = true;
	t->rbuf_off = 0;
	t->rbuf_len = left;
}

/* Decode what is buffered; false when paused or closed. */
static bool tunnel_process(struct tunnel *t)
{
	/* Until the decoder asks for more: a frame's last event (FRAME_END)
	 * comes after its last byte was consumed. */
	for (;;) {
		struct mux_event ev;
		size_t used = mux_decode(&t->dec, t->rbuf + t->rbuf_off, t->rbuf_len - t->rbuf_off, &ev);

		t->rbuf_off += used;
		switch (ev.type) {
		case MUX_EV_NEED_MORE:
			gather_flush(t);
			tunnel_drop_rbuf(t);
			return !t->closed && !t->rx_blocked_by;
		case MUX_EV_ERROR:
			t->px->gather_n = 0; /* the tunnel's sessions end with it */
			log_warn("tunnel %llu: malformed frame from %s: %s", (unsigned long long)t->id, t->peer,
				 mux_decode_strerror(ev.error));
			tunnel_close(t, mux_decode_strerror(ev.error));
			return false;
		case MUX_EV_FRAME:
			/* Gathered payloads go out before any other frame is acted
			 * on: only Keep frames of the same session extend them. */
			if (t->px->gather_n && (ev.frame.status != MUX_KEEP || !t->px->gather_s ||
						t->px->gather_s->id != ev.frame.session_id))
				gather_flush(t);
			frame_begin(t, &ev.frame);
			if (t->closed || t->rx_blocked_by) {
				gather_flush(t);
				return false;
			}
			break;
		case MUX_EV_DATA:
			if (!frame_data(t, &ev)) {
				gather_flush(t);
				return false;
			}
			break;
		case MUX_EV_FRAME_END:
			t->kframes++;
			frame_end(t, &ev.frame);
			if (t->closed || t->rx_blocked_by) {
				gather_flush(t);
				return false;
			}
			break;
		}
	}
}

static void tunnel_rx(struct tunnel *t)
{
	size_t budget = RX_BUDGET;

	if (t->rx_blocked_by || t->closed || t->connecting)
		return;
	if (t->rbuf && !tunnel_process(t))
		return;
	while (t->rx_more) {
		ssize_t n;

		if (!budget) {
			tunnel_schedule_rx(t); /* let other sockets run */
			return;
		}
		n = read(t->kpath ? t->mbox.fd : t->io.fd, t->px->rbuf, TUNNEL_RBUF_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (t->kpath && kpath_mailbox_empty(t))
					continue; /* off the kernel path: read the socket now */
				t->rx_more = false;
				return;
			}
			tunnel_close(t, strerror(errno));
			return;
		}
		if (n == 0) {
			tunnel_close(t, t->kpath ? "kernel path: mailbox closed" : "peer closed the tunnel");
			return;
		}
		if (t->kpath)
			t->mbox_read += (size_t)n;
		t->last_rx_ms = loop_now(t->px->loop);
		t->rx_bytes += (size_t)n;
		t->rbuf = t->px->rbuf;
		t->rbuf_own = false;
		t->rbuf_off = 0;
		t->rbuf_len = (size_t)n;
		budget = budget > (size_t)n ? budget - (size_t)n : 0;
		if (!tunnel_process(t)) {
			tunnel_keep_rbuf(t);
			return;
		}
	}
}

void tunnel_rx_ready(struct tunnel *t)
{
	t->rx_more = true;
	tunnel_rx(t);
}

static void tunnel_on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct tunnel *t = (struct tunnel *)((char *)io - offsetof(struct tunnel, io));

	if (t->connecting) {
		int err = connect_result(io->fd, events);

		if (err < 0)
			return;
		if (err) {
			tunnel_close(t, strerror(err));
			return;
		}
		t->connecting = false;
		t->last_rx_ms = loop_now(l);
		kpath_tunnel_start(t); /* before any byte of it is read */
		bridge_tunnel_connected(t);
		if (t->closed)
			return;
		events |= EPOLLIN; /* data may already wait */
	}
	if (events & EPOLLOUT)
		tunnel_tx(t);
	if (t->closed)
		return;
	if (t->kpath) {
		/* frames arrive on the mailbox; the socket only tells of its end */
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			kpath_tunnel_peer_closed(t);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		t->rx_more = true;
		tunnel_rx(t);
	}
}

/* ---------- tunnel lifetime ---------- */

int tunnel_list_add(struct tunnel_list *l, struct tunnel *t)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct tunnel **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = t;
	return 0;
}

/* Keeps the order: it is the picker's tie-break. */
void tunnel_list_remove(struct tunnel_list *l, const struct tunnel *t)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i] == t) {
			memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
			l->n--;
			return;
		}
	}
}

struct tunnel *tunnel_new(struct proxy *px, int fd, enum tunnel_role role, bool connecting, const char *peer)
{
	struct tunnel *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->px = px;
	t->role = role;
	t->id = ++px->next_tunnel_id;
	t->connecting = connecting;
	t->last_rx_ms = loop_now(px->loop);
	snprintf(t->peer, sizeof(t->peer), "%s", peer ? peer : "?");
	mux_decoder_init(&t->dec);
	if (loop_add(px->loop, &t->io, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, tunnel_on_io) < 0)
		goto fail;
	t->all_next = px->all_tunnels;
	if (px->all_tunnels)
		px->all_tunnels->all_prev = t;
	px->all_tunnels = t;
	if (!connecting)
		kpath_tunnel_start(t); /* before any byte of it is read */
	return t;
fail:
	free(t);
	return NULL;
}

static void tunnel_free_cb(struct loop *l, void *ctx)
{
	struct tunnel *t = ctx;

	chunkq_clear(&t->out);
	tunnel_drop_rbuf(t);
	free(t);
}

static void tunnel_close_cb(struct loop *l, void *ctx)
{
	struct tunnel *t = ctx;

	t->close_scheduled = false;
	if (t->failed || !t->out.bytes)
		tunnel_close(t, t->close_reason);
}

/* Close from inside the send path (callers may be iterating sessions). */
static void tunnel_schedule_close(struct tunnel *t, const char *reason)
{
	if (t->closed || t->failed)
		return;
	t->failed = true;
	snprintf(t->close_reason, sizeof(t->close_reason), "%s", reason);
	if (!t->close_scheduled) {
		t->close_scheduled = true;
		loop_defer(t->px->loop, tunnel_close_cb, t);
	}
}

/* Graceful: send what is queued (e.g. DRAIN and End), then close. */
void tunnel_finish(struct tunnel *t, const char *reason)
{
	if (t->closed || t->closing || t->failed)
		return;
	t->closing = true;
	snprintf(t->close_reason, sizeof(t->close_reason), "%s", reason);
	if (!t->close_scheduled) {
		t->close_scheduled = true;
		loop_defer(t->px->loop, tunnel_close_cb, t);
	}
}

void tunnel_close(struct tunnel *t, const char *reason)
{
	struct session *s, *tmp;
	struct proxy *px = t->px;

	if (t->closed)
		return;
	t->closed = true;
	log_info("tunnel %llu closed: %s", (unsigned long long)t->id, reason);
	/* The tunnel is gone: every session ends toward its user (EOF). */
	HASH_ITER(hh, t->sessions, s, tmp)
		session_destroy(s);
	for (s = t->wait_head; s; s = t->wait_head) {
		t->wait_head = s->wait_next;
		s->in_waitq = false;
		if (s->dead)
			loop_defer(px->loop, session_free_cb, s);
	}
	t->wait_tail = NULL;
	loop_timer_disarm(px->loop, &t->heartbeat);
	loop_timer_disarm(px->loop, &t->idle);
	kpath_tunnel_stop(t);
	loop_del(px->loop, &t->io);
	close(t->io.fd);
	if (t->all_prev)
		t->all_prev->all_next = t->all_next;
	else
		px->all_tunnels = t->all_next;
	if (t->all_next)
		t->all_next->all_prev = t->all_prev;
	if (t->role == TUNNEL_PORTAL)
		portal_tunnel_gone(t);
	else
		bridge_tunnel_gone(t);
	loop_defer(px->loop, tunnel_free_cb, t);
	if (px->stopping && !px->all_tunnels)
		loop_stop(px->loop);
}
