/* SPDX-License-Identifier: MIT */
/*
 * sockmap engine tests (root + BPF; skipped with the reason when the kernel
 * lacks a feature).  A TCP loopback "tunnel" pair carries a generated Mux.Cool
 * stream; the engine deframes it in the kernel; checker threads verify, byte
 * by byte, what every target received, and the reader verifies every frame it
 * was passed (read from the tunnel's mailbox, never from the tunnel fd).
 *
 *   REVSOCK_BPF_BENCH_MB=N         size of the throughput cases (default 256, 0 = skip)
 *   REVSOCK_BPF_BENCH_WHICH=kuK    which of them: k bpf 8192-byte frames, u userspace
 *                                  read+write (no sockmap), K bpf 65535-byte frames
 *   REVSOCK_BPF_PRESSURE_MB=N      size of the slow-mailbox-reader case (default 64)
 *   REVSOCK_BPF_TEST=glob          cmocka test filter
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "engine_bpf.h"

/* ---- syscall wrappers: report the expression, errno and line ----------- */

#define SYS(expr)                                                                        \
	({                                                                               \
		long __r = (long)(expr);                                                 \
		if (__r < 0)                                                             \
			fail_msg("%s:%d: %s: %s", __FILE__, __LINE__, #expr, strerror(errno)); \
		__r;                                                                     \
	})
#define OK(expr)                                                                         \
	do {                                                                             \
		long __r = (long)(expr);                                                 \
		if (__r < 0)                                                             \
			fail_msg("%s:%d: %s = %ld (%s)", __FILE__, __LINE__, #expr, __r,   \
				 strerror((int)-__r));                                   \
	} while (0)

static char skip_why[256];
static bool feature_ok;

static int group_setup(void **state)
{
	int ret = bpf_engine_probe(skip_why, sizeof(skip_why));

	feature_ok = ret == 0;
	if (!feature_ok)
		fprintf(stderr, "test_bpf_engine: kernel lacks a feature: %s\n", skip_why);
	return 0;
}

#define NEED_BPF()                                                 \
	do {                                                       \
		if (!feature_ok) {                                 \
			print_message("skip: %s\n", skip_why);     \
			skip();                                    \
		}                                                  \
	} while (0)

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Connected loopback TCP pair: *a = connecting end, *b = accepted end. */
static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(sin);
	int lfd = SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));

	SYS(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)));
	SYS(listen(lfd, 1));
	SYS(getsockname(lfd, (struct sockaddr *)&sin, &l));
	*a = SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	SYS(connect(*a, (struct sockaddr *)&sin, sizeof(sin)));
	*b = SYS(accept4(lfd, NULL, NULL, SOCK_CLOEXEC));
	close(lfd);
}

static void write_all(int fd, const void *p, size_t n)
{
	const uint8_t *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail_msg("write fd %d: %s", fd, strerror(errno));
		c += w;
		n -= (size_t)w;
	}
}

/* ---- content: session sid's byte at offset o is ring[(o + sid*7919) % RING] */

#define RING (1u << 20 | 17u)
static uint8_t *ring; /* 2 * RING bytes so a slice never wraps */

static void ring_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	if (ring)
		return;
	ring = malloc(2 * (size_t)RING);
	assert_non_null(ring);
	for (size_t i = 0; i < RING; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ring[i] = (uint8_t)(x >> 32);
	}
	memcpy(ring + RING, ring, RING);
}

static const uint8_t *content(uint32_t sid, uint64_t off)
{
	return ring + (off + (uint64_t)sid * 7919) % RING;
}

/* Largest slice content() may return in one piece. */
#define SLICE_MAX RING

/* ---- scenario ----------------------------------------------------------- */

enum policy {
	POL_USER,    /* never attached: the reader verifies the payload itself */
	POL_UTARGET, /* never attached: the reader writes it to the target (userspace engine) */
	POL_PORTAL,  /* attached before any frame (no New on this side) */
	POL_AT_NEW,  /* attached when the reader sees New (bridge) */
	POL_MID,     /* attached after the reader handled `mid` Keep frames */
};

struct sess_cfg {
	enum policy pol;
	uint64_t bytes;
	bool slow; /* target's peer reads ~16 MB/s */
};

struct scenario {
	const char *name;
	int nsess;
	struct sess_cfg s[8];
	uint32_t minlen, maxlen; /* Keep payload sizes */
	int ctl_every;           /* a control frame every N frames (0 = none) */
	int ka_every;            /* a KeepAlive every N frames */
	int empty_every;         /* a Keep with dataLen 0 every N frames */
	int mid;                 /* POL_MID: Keep frames handled before attach */
	uint64_t bound;          /* 0 = default */
	uint64_t global_bound;   /* 0 = default */
	bool bench;
	bool plain_tunnel; /* the tunnel is not given to the engine (userspace reference) */
	uint32_t reader_chunk;    /* read at most this much at a time (0 = 256 KiB) */
	uint32_t reader_sleep_us; /* sleep after every read: a slow mailbox reader */
	int tun_rcvbuf;           /* SO_RCVBUF of the tunnel socket (0 = default) */
	uint32_t wchunk;          /* writer: TCP_NODELAY, every frame in writes of this many
				   * bytes (small segments: the tunnel's receive queue fills
				   * with small skbs while strparser waits for a whole frame,
				   * so TCP prunes and collapses it) */
	bool netstat;             /* report the TCP prune/collapse counters */
	int slow_sockbuf;         /* SO_SNDBUF/SO_RCVBUF of slow targets' sockets (0 = default):
				   * small buffers make the psock backlog, not the sockets,
				   * take what the reader has not read */
	int slow_start_ms;        /* slow targets' readers start this late: their backlogs
				   * reach the bounds at any machine speed (TCG VMs too) */
};

struct sess {
	const struct sess_cfg *cfg;
	int slow_start_ms;
	uint32_t sid;
	/* writer */
	uint64_t w_off;
	bool w_new, w_end;
	/* reader */
	uint64_t r_off;    /* payload bytes the reader handled */
	uint32_t r_keeps;
	bool r_new, r_end, attached;
	uint32_t slot;
	double drain_s;    /* time End waited for the drain */
	/* target: src is in the sockmap, dst is read by the checker */
	int src, dst;
	pthread_t checker;
	uint64_t got;
	char err[160];
};

struct run {
	const struct scenario *sc;
	struct bpf_engine *e;
	uint32_t tunnel;
	int tun_w, tun_r, mbox;
	uint64_t mbox_read; /* bytes read from the mailbox */
	uint64_t mb0;       /* counters.mailbox_bytes at the start */
	int64_t backlog_max; /* most bytes put in the mailbox but not yet read */
	double drain_eof_s;  /* from the tunnel's RDHUP to drained == 1 */
	struct sess ss[8];
	uint64_t seed;
	/* writer totals */
	uint64_t wire_bytes, ctl_frames, ka_frames, new_frames, end_frames, empty_frames;
	/* reader totals */
	uint64_t r_ctl, r_ka, r_new, r_end, r_frames, r_unexpected_redirect, eagain, late;
	char rerr[400], werr[100];
	volatile int sampling;
	int64_t held_max;
	int64_t held_sum_max;   /* the slow sessions' backlogs added up, at one sample */
	int64_t held_total_max; /* the program's global sum (an upper bound of the real one) */
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

/* Frame header: metaLen sid status option [New target] [dataLen]. */
static size_t hdr(uint8_t *h, uint32_t sid, uint8_t status, bool data, uint16_t len)
{
	size_t n = 0;
	uint16_t meta = status == REVSOCK_MUX_NEW ? 12 : 4;

	h[n++] = meta >> 8, h[n++] = (uint8_t)meta;
	h[n++] = (uint8_t)(sid >> 8), h[n++] = (uint8_t)sid;
	h[n++] = status, h[n++] = data ? REVSOCK_MUX_OPT_DATA : 0;
	if (status == REVSOCK_MUX_NEW) {
		h[n++] = 1; /* TCP */
		h[n++] = 0x1f, h[n++] = 0x90; /* 8080 */
		h[n++] = 1, h[n++] = 127, h[n++] = 0, h[n++] = 0, h[n++] = 1;
	}
	if (data)
		h[n++] = len >> 8, h[n++] = (uint8_t)len;
	return n;
}

static void send_frame(struct run *r, const uint8_t *h, size_t hl, const uint8_t *p, size_t pl)
{
	struct iovec iov[2] = { { (void *)h, hl }, { (void *)p, pl } };
	size_t total = hl + pl, done = 0;

	if (r->sc->wchunk) {
		static __thread uint8_t f[70000];

		memcpy(f, h, hl);
		if (pl)
			memcpy(f + hl, p, pl);
		for (size_t o = 0; o < total;) {
			size_t k = total - o < r->sc->wchunk ? total - o : r->sc->wchunk;
			ssize_t w = write(r->tun_w, f + o, k);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				snprintf(r->werr, sizeof(r->werr), "writer: %s", strerror(errno));
				return;
			}
			o += (size_t)w;
		}
		r->wire_bytes += total;
		return;
	}

	while (done < total) {
		ssize_t w = writev(r->tun_w, iov, 2);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(r->werr, sizeof(r->werr), "writer: %s", strerror(errno));
			return;
		}
		done += (size_t)w;
		for (int i = 0; i < 2 && w; i++) {
			size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;

			iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			w -= (ssize_t)k;
		}
	}
	r->wire_bytes += total;
}

static void *writer(void *arg)
{
	struct run *r = arg;
	const struct scenario *sc = r->sc;
	uint64_t seed = r->seed, nframes = 0, ctl = 0;
	uint8_t h[32];
	int live;

	for (;;) {
		int pick, n = 0, cand[8];

		for (int i = 0; i < sc->nsess; i++)
			if (!r->ss[i].w_end)
				cand[n++] = i;
		if (!n)
			break;
		live = n;
		(void)live;
		nframes++;
		if (sc->ctl_every && nframes % sc->ctl_every == 0) {
			uint8_t m[8];

			memcpy(m, &ctl, 8);
			ctl++;
			send_frame(r, h, hdr(h, 1, REVSOCK_MUX_KEEP, true, 8), m, 8);
			r->ctl_frames++;
			continue;
		}
		pick = cand[rnd(&seed) % n];
		struct sess *s = &r->ss[pick];
		if (sc->ka_every && nframes % sc->ka_every == 0) {
			uint16_t l = rnd(&seed) % 3 == 0 ? 0 : (uint16_t)(rnd(&seed) % 100);
			bool data = l || rnd(&seed) % 2;

			send_frame(r, h, hdr(h, s->sid, REVSOCK_MUX_KEEPALIVE, data, l), ring, data ? l : 0);
			r->ka_frames++;
			continue;
		}
		if (s->cfg->pol != POL_PORTAL && !s->w_new) {
			uint16_t l = 0;

			if (rnd(&seed) % 2) {
				l = 1 + rnd(&seed) % 8192;
				if (l > s->cfg->bytes - s->w_off)
					l = (uint16_t)(s->cfg->bytes - s->w_off);
			}
			send_frame(r, h, hdr(h, s->sid, REVSOCK_MUX_NEW, l > 0, l), content(s->sid, s->w_off), l);
			s->w_off += l;
			s->w_new = true;
			r->new_frames++;
			continue;
		}
		if (s->w_off == s->cfg->bytes) {
			send_frame(r, h, hdr(h, s->sid, REVSOCK_MUX_END, false, 0), NULL, 0);
			s->w_end = true;
			r->end_frames++;
			continue;
		}
		if (sc->empty_every && nframes % sc->empty_every == 0) {
			send_frame(r, h, hdr(h, s->sid, REVSOCK_MUX_KEEP, true, 0), NULL, 0);
			r->empty_frames++;
			continue;
		}
		uint64_t l = sc->minlen + rnd(&seed) % (sc->maxlen - sc->minlen + 1);
		if (l > s->cfg->bytes - s->w_off)
			l = s->cfg->bytes - s->w_off;
		send_frame(r, h, hdr(h, s->sid, REVSOCK_MUX_KEEP, true, (uint16_t)l), content(s->sid, s->w_off), l);
		s->w_off += l;
		if (r->werr[0])
			break;
	}
	shutdown(r->tun_w, SHUT_WR);
	return NULL;
}

static void *checker(void *arg)
{
	struct sess *s = arg;
	size_t cap = 256 * 1024;
	uint8_t *buf = malloc(cap);

	if (s->cfg->slow && s->slow_start_ms)
		usleep((useconds_t)s->slow_start_ms * 1000);
	for (;;) {
		ssize_t n = read(s->dst, buf, s->cfg->slow ? 65536 : cap);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(s->err, sizeof(s->err), "sid %u: read: %s", s->sid, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		for (ssize_t k = 0; k < n;) {
			size_t piece = (size_t)(n - k) < SLICE_MAX ? (size_t)(n - k) : SLICE_MAX;

			if (s->got + piece > s->cfg->bytes) {
				snprintf(s->err, sizeof(s->err), "sid %u: %llu bytes too many", s->sid,
					 (unsigned long long)(s->got + piece - s->cfg->bytes));
				goto out;
			}
			if (memcmp(buf + k, content(s->sid, s->got), piece)) {
				size_t i = 0;

				while (buf[k + i] == content(s->sid, s->got)[i])
					i++;
				snprintf(s->err, sizeof(s->err), "sid %u: content differs at offset %llu",
					 s->sid, (unsigned long long)(s->got + i));
				goto out;
			}
			s->got += piece;
			k += (ssize_t)piece;
		}
		if (s->cfg->slow)
			usleep(4000); /* 64 KiB / 4 ms: ~16 MB/s */
	}
out:
	free(buf);
	return NULL;
}

static void *sampler(void *arg)
{
	struct run *r = arg;

	while (r->sampling) {
		struct revsock_counters c;

		if (!r->sc->plain_tunnel && !bpf_engine_counters(r->e, &c)) {
			int64_t b = (int64_t)(c.mailbox_bytes - r->mb0 -
					      __atomic_load_n(&r->mbox_read, __ATOMIC_RELAXED));

			if (b > r->backlog_max)
				r->backlog_max = b;
		}
		int64_t sum = 0, tot;

		for (int i = 0; i < r->sc->nsess; i++) {
			struct sess *s = &r->ss[i];

			if (s->cfg->slow && s->attached && !s->r_end) {
				int64_t h = bpf_engine_session_held(r->e, s->slot);

				if (h > r->held_max)
					r->held_max = h;
				if (h > 0)
					sum += h;
			}
		}
		if (sum > r->held_sum_max)
			r->held_sum_max = sum;
		if (!r->sc->plain_tunnel) {
			tot = (int64_t)bpf_engine_held_total(r->e);
			if (tot > r->held_total_max)
				r->held_total_max = tot;
		}
		usleep(500);
	}
	return NULL;
}

/* ---- the reader: userspace side of the tunnel ----------------------------- */

#define RFAIL(r, ...)                                                   \
	do {                                                            \
		if (!(r)->rerr[0])                                      \
			snprintf((r)->rerr, sizeof((r)->rerr), __VA_ARGS__); \
		return -1;                                              \
	} while (0)

static struct sess *sess_by_sid(struct run *r, uint32_t sid)
{
	for (int i = 0; i < r->sc->nsess; i++)
		if (r->ss[i].sid == sid)
			return &r->ss[i];
	return NULL;
}

static bool uses_target(const struct sess *s)
{
	return s->cfg->pol != POL_USER;
}

/* A frame header was read: decide before its payload arrives. */
static int on_header(struct run *r, uint32_t sid, uint8_t status, bool data, uint16_t len)
{
	struct sess *s = sess_by_sid(r, sid);

	if (sid == 1)
		return 0;
	if (!s)
		RFAIL(r, "frame for unknown sid %u", sid);
	if (!s->attached || !data || !len)
		return 0;
	if (status == REVSOCK_MUX_KEEPALIVE)
		return 0;
	int m = bpf_engine_session_mode(r->e, s->slot);
	if (m == REVSOCK_SLOT_REDIRECT) {
		r->r_unexpected_redirect++;
		RFAIL(r, "sid %u: passed frame read while the slot redirects (ordering broken)", sid);
	}
	/* Kernel bytes of this session may still be in flight: let them reach
	 * the target before ours. */
	if (bpf_engine_session_wait_drained(r->e, s->slot, 10000)) {
		struct revsock_slot si;
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);
		int outq = 0;

		bpf_engine_session_info(r->e, s->slot, &si);
		getsockopt(s->src, IPPROTO_TCP, TCP_INFO, &ti, &tl);
		ioctl(s->src, SIOCOUTQ, &outq);
		RFAIL(r, "sid %u: drain timed out (mode %d): busy %u redir %llu base %llu written_seen %llu; "
		      "target acked %llu outq %d", sid, m, si.busy, (unsigned long long)si.redir_bytes,
		      (unsigned long long)si.base, (unsigned long long)si.written_seen,
		      (unsigned long long)ti.tcpi_bytes_acked, outq);
	}
	return 0;
}

static int on_payload(struct run *r, uint32_t sid, uint8_t status, const uint8_t *p, size_t n)
{
	struct sess *s = sess_by_sid(r, sid);

	if (sid == 1 || status == REVSOCK_MUX_KEEPALIVE)
		return 0;
	if (s->r_off + n > s->cfg->bytes)
		RFAIL(r, "sid %u: payload beyond the session's bytes", sid);
	if (uses_target(s)) {
		write_all(s->src, p, n);
	} else if (memcmp(p, content(sid, s->r_off), n)) {
		RFAIL(r, "sid %u: passed payload differs near offset %llu", sid,
		      (unsigned long long)s->r_off);
	}
	s->r_off += n;
	return 0;
}

static int attach(struct run *r, struct sess *s)
{
	int ret = bpf_engine_session_attach(r->e, r->tunnel, (uint16_t)s->sid, s->src,
					    (uint32_t)r->r_frames, &s->slot);

	if (ret)
		RFAIL(r, "sid %u: attach: %s", s->sid, strerror(-ret));
	s->attached = true;
	return 0;
}

static int on_frame_end(struct run *r, uint32_t sid, uint8_t status, const uint8_t *ctl)
{
	struct sess *s = sess_by_sid(r, sid);
	uint64_t mark;

	r->r_frames++; /* the frame is consumed: payload written */
	if (sid == 1) {
		memcpy(&mark, ctl, 8);
		if (mark != r->r_ctl)
			RFAIL(r, "control frame %llu arrived as %llu", (unsigned long long)r->r_ctl,
			      (unsigned long long)mark);
		r->r_ctl++;
		return 0;
	}
	switch (status) {
	case REVSOCK_MUX_KEEPALIVE:
		r->r_ka++;
		return 0;
	case REVSOCK_MUX_NEW:
		r->r_new++;
		s->r_new = true;
		if (s->cfg->pol == POL_AT_NEW)
			return attach(r, s);
		return 0;
	case REVSOCK_MUX_END:
		r->r_end++;
		s->r_end = true;
		if (s->r_off > s->cfg->bytes)
			RFAIL(r, "sid %u: too many bytes", sid);
		if (s->attached) {
			int m = bpf_engine_session_mode(r->e, s->slot);
			double t0 = now_s();
			int ret;

			/* ENDED, or ARMED/PAUSED: the parser saw End while the
			 * slot was PAUSED, and userspace re-armed before reading
			 * it (the parser may run far ahead of the mailbox
			 * reader).  Never REDIRECT: End would have ended it. */
			if (m == REVSOCK_SLOT_REDIRECT || m < 0)
				RFAIL(r, "sid %u: End read in mode %d (want ENDED)", sid, m);
			ret = bpf_engine_session_wait_drained(r->e, s->slot, 20000);
			if (ret)
				RFAIL(r, "sid %u: drain: %s", sid, strerror(-ret));
			s->drain_s = now_s() - t0;
			ret = bpf_engine_session_detach(r->e, s->slot, false);
			if (ret)
				RFAIL(r, "sid %u: detach: %s", sid, strerror(-ret));
			s->attached = false;
		} else if (!uses_target(s) && s->r_off != s->cfg->bytes) {
			RFAIL(r, "sid %u: %llu of %llu bytes before End", sid,
			      (unsigned long long)s->r_off, (unsigned long long)s->cfg->bytes);
		}
		if (uses_target(s))
			shutdown(s->src, SHUT_WR);
		return 0;
	case REVSOCK_MUX_KEEP:
		s->r_keeps++;
		if (s->attached) {
			int ret = bpf_engine_session_arm(r->e, s->slot, (uint32_t)r->r_frames);

			if (ret)
				RFAIL(r, "sid %u: arm: %s", sid, strerror(-ret));
		} else if (s->cfg->pol == POL_MID && s->r_keeps == (uint32_t)r->sc->mid) {
			return attach(r, s);
		}
		return 0;
	}
	RFAIL(r, "bad status %u", status);
}

/* Incremental decoder over whatever read() returns. */
static int reader(struct run *r)
{
	size_t cap = 256 * 1024;
	uint8_t *buf = malloc(cap), h[600], ctl[8];
	size_t have = 0, need = 2, plen = 0, pdone = 0;
	int st = 0; /* 0 metaLen, 1 meta, 2 dataLen, 3 payload */
	uint32_t sid = 0;
	uint8_t status = 0, option = 0;
	int ret = 0;

	int rfd = r->sc->plain_tunnel ? r->tun_r : r->mbox;
	size_t chunk = r->sc->reader_chunk ? r->sc->reader_chunk : cap;
	bool rdhup = false;
	double eof_t = 0;

	for (;;) {
		ssize_t n = read(rfd, buf, chunk);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && !r->sc->plain_tunnel) {
			/* Mailbox empty.  Before the tunnel's EOF: wait for either.
			 * After it: read until the engine says every byte the
			 * tunnel received went through the parser and every byte
			 * it put in the mailbox was read (the last messages may
			 * be header drops or redirects that wake nothing). */
			r->eagain++;
			if (!rdhup) {
				struct pollfd p[2] = { { .fd = rfd, .events = POLLIN },
						       { .fd = r->tun_r, .events = POLLRDHUP } };

				poll(p, 2, 100);
				if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
					rdhup = true;
					eof_t = now_s();
				}
				continue;
			}
			int d = bpf_engine_tunnel_drained(r->e, r->tunnel, r->mbox_read);

			if (d == 1) {
				r->drain_eof_s = now_s() - eof_t;
				break;
			}
			if (d < 0) {
				snprintf(r->rerr, sizeof(r->rerr), "tunnel_drained: %s after %llu frames",
					 strerror(-d), (unsigned long long)r->r_frames);
				ret = -1;
				break;
			}
			if (now_s() - eof_t > 60) {
				snprintf(r->rerr, sizeof(r->rerr),
					 "tunnel not drained 60 s after EOF (%llu mailbox bytes read, %llu frames)",
					 (unsigned long long)r->mbox_read, (unsigned long long)r->r_frames);
				ret = -1;
				break;
			}
			r->late++;
			struct pollfd p = { .fd = rfd, .events = POLLIN };

			poll(&p, 1, 2);
			continue;
		}
		if (n < 0) {
			snprintf(r->rerr, sizeof(r->rerr), "%s read: %s",
				 r->sc->plain_tunnel ? "tunnel" : "mailbox", strerror(errno));
			ret = -1;
			break;
		}
		if (n == 0) {
			if (!r->sc->plain_tunnel) {
				snprintf(r->rerr, sizeof(r->rerr), "mailbox read returned EOF");
				ret = -1;
			}
			break;
		}
		__atomic_store_n(&r->mbox_read, r->mbox_read + (uint64_t)n, __ATOMIC_RELAXED);
		if (r->sc->reader_sleep_us)
			usleep(r->sc->reader_sleep_us);
		for (size_t i = 0; i < (size_t)n && !ret;) {
			if (st == 3) {
				size_t k = plen - pdone < (size_t)n - i ? plen - pdone : (size_t)n - i;

				if (sid == 1 && pdone + k <= 8)
					memcpy(ctl + pdone, buf + i, k);
				ret = on_payload(r, sid, status, buf + i, k);
				pdone += k;
				i += k;
				if (pdone == plen) {
					ret = ret ? ret : on_frame_end(r, sid, status, ctl);
					st = 0, have = 0, need = 2;
				}
				continue;
			}
			size_t k = need - have < (size_t)n - i ? need - have : (size_t)n - i;

			memcpy(h + have, buf + i, k);
			have += k;
			i += k;
			if (have < need)
				continue;
			if (st == 0) {
				uint32_t meta = (uint32_t)h[0] << 8 | h[1];

				if (meta < 4 || meta > 512) {
					snprintf(r->rerr, sizeof(r->rerr), "bad metaLen %u after %llu frames",
						 meta, (unsigned long long)r->r_frames);
					ret = -1;
					break;
				}
				need = 2 + meta;
				st = 1;
				continue;
			}
			if (st == 1) {
				sid = (uint32_t)h[2] << 8 | h[3];
				status = h[4];
				option = h[5];
				if (option & REVSOCK_MUX_OPT_DATA) {
					need += 2;
					st = 2;
					continue;
				}
				plen = 0;
			} else {
				plen = (size_t)h[need - 2] << 8 | h[need - 1];
			}
			ret = on_header(r, sid, status, option & REVSOCK_MUX_OPT_DATA, (uint16_t)plen);
			if (ret)
				break;
			if (sid == 1 && plen != 8) {
				snprintf(r->rerr, sizeof(r->rerr), "control frame with %zu bytes", plen);
				ret = -1;
				break;
			}
			if (plen) {
				st = 3, pdone = 0;
			} else {
				ret = on_frame_end(r, sid, status, ctl);
				st = 0, have = 0, need = 2;
			}
		}
		if (ret)
			break;
	}
	free(buf);
	return ret;
}

/* ---- running a scenario --------------------------------------------------- */

/* TcpExt PruneCalled, RcvPruned, TCPRcvCollapsed, TCPRcvQDrop, TCPBacklogDrop
 * (/proc/net/netstat: a line of names, then a line of values). */
static void netstat_read(uint64_t v[5])
{
	static const char *want[5] = { "PruneCalled", "RcvPruned", "TCPRcvCollapsed", "TCPRcvQDrop",
				       "TCPBacklogDrop" };
	char names[8192], vals[8192];
	FILE *f = fopen("/proc/net/netstat", "r");

	memset(v, 0, 5 * sizeof(*v));
	if (!f)
		return;
	while (fgets(names, sizeof(names), f) && fgets(vals, sizeof(vals), f)) {
		char *sn, *sv, *n = strtok_r(names, " \n", &sn), *x = strtok_r(vals, " \n", &sv);

		if (!n || strcmp(n, "TcpExt:"))
			continue;
		while ((n = strtok_r(NULL, " \n", &sn)) && (x = strtok_r(NULL, " \n", &sv)))
			for (int i = 0; i < 5; i++)
				if (!strcmp(n, want[i]))
					v[i] = strtoull(x, NULL, 10);
	}
	fclose(f);
}

/* A stalled kernel path must fail the test, not hang CI. */
static const char *watchdog_name;

static void watchdog(int sig)
{
	char m[160];
	int n = snprintf(m, sizeof(m), "test_bpf_engine: %s: no progress for %d s, aborting\n",
			 watchdog_name ? watchdog_name : "?", 120);

	(void)sig;
	if (write(2, m, (size_t)n) < 0)
		_exit(3);
	_exit(2);
}

static void run_scenario(const struct scenario *sc, uint64_t seed)
{
	struct bpf_engine_opts o = { .session_bound = sc->bound, .global_bound = sc->global_bound };
	struct revsock_counters c0, c1;
	struct run *r = calloc(1, sizeof(*r));
	pthread_t wt, st;
	char why[256] = "";
	uint64_t payload = 0, redir_slots = 0, ns0[5] = { 0 }, ns1[5] = { 0 };
	double t0, dt;
	int ret;

	ring_init();
	watchdog_name = sc->name;
	signal(SIGALRM, watchdog);
	alarm(120);
	r->sc = sc;
	r->seed = seed | 1;
	ret = bpf_engine_open(&o, &r->e, why, sizeof(why));
	if (ret)
		fail_msg("bpf_engine_open: %s (%s)", strerror(-ret), why);
	tcp_pair(&r->tun_w, &r->tun_r);
	r->mbox = -1;
	if (sc->tun_rcvbuf)
		SYS(setsockopt(r->tun_r, SOL_SOCKET, SO_RCVBUF, &sc->tun_rcvbuf, sizeof(sc->tun_rcvbuf)));
	if (sc->wchunk) {
		int one = 1;

		SYS(setsockopt(r->tun_w, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
	}
	if (!sc->plain_tunnel)
		OK(bpf_engine_tunnel_add(r->e, r->tun_r, &r->tunnel, &r->mbox));
	for (int i = 0; i < sc->nsess; i++) {
		struct sess *s = &r->ss[i];

		s->cfg = &sc->s[i];
		s->slow_start_ms = sc->slow_start_ms;
		s->sid = 2 + (uint32_t)i * 37; /* spread over buckets, one collision-free set */
		s->src = s->dst = -1;
		payload += s->cfg->bytes;
		if (uses_target(s)) {
			tcp_pair(&s->src, &s->dst);
			if (s->cfg->slow && sc->slow_sockbuf) {
				SYS(setsockopt(s->src, SOL_SOCKET, SO_SNDBUF, &sc->slow_sockbuf,
					       sizeof(sc->slow_sockbuf)));
				SYS(setsockopt(s->dst, SOL_SOCKET, SO_RCVBUF, &sc->slow_sockbuf,
					       sizeof(sc->slow_sockbuf)));
			}
			assert_int_equal(pthread_create(&s->checker, NULL, checker, s), 0);
		}
		if (s->cfg->pol == POL_PORTAL)
			assert_int_equal(attach(r, s), 0);
	}
	OK(bpf_engine_counters(r->e, &c0));
	r->mb0 = c0.mailbox_bytes;
	if (sc->netstat)
		netstat_read(ns0);
	r->sampling = 1;
	assert_int_equal(pthread_create(&st, NULL, sampler, r), 0);
	t0 = now_s();
	assert_int_equal(pthread_create(&wt, NULL, writer, r), 0);
	ret = reader(r);
	for (int i = 0; i < sc->nsess && !ret; i++)
		if (!r->ss[i].r_end) {
			snprintf(r->rerr, sizeof(r->rerr),
				 "tunnel EOF before End of sid %u (%llu of %llu bytes read; %llu frames, mode %d)",
				 r->ss[i].sid, (unsigned long long)r->ss[i].r_off,
				 (unsigned long long)r->ss[i].cfg->bytes, (unsigned long long)r->r_frames,
				 r->ss[i].attached ? bpf_engine_session_mode(r->e, r->ss[i].slot) : -1);
			ret = -1;
		}
	if (ret || r->rerr[0]) {
		/* Unblock the other threads, then report. */
		shutdown(r->tun_r, SHUT_RDWR);
		shutdown(r->tun_w, SHUT_RDWR);
		for (int i = 0; i < sc->nsess; i++)
			if (r->ss[i].dst >= 0)
				shutdown(r->ss[i].dst, SHUT_RDWR);
	}
	pthread_join(wt, NULL);
	for (int i = 0; i < sc->nsess; i++)
		if (uses_target(&r->ss[i]))
			pthread_join(r->ss[i].checker, NULL);
	dt = now_s() - t0;
	r->sampling = 0;
	pthread_join(st, NULL);
	OK(bpf_engine_counters(r->e, &c1));
	alarm(0);
	if (sc->netstat) {
		netstat_read(ns1);
		print_message("%-26s TcpExt: PruneCalled %llu, RcvPruned %llu, TCPRcvCollapsed %llu, "
			      "TCPRcvQDrop %llu, TCPBacklogDrop %llu\n", sc->name,
			      (unsigned long long)(ns1[0] - ns0[0]), (unsigned long long)(ns1[1] - ns0[1]),
			      (unsigned long long)(ns1[2] - ns0[2]), (unsigned long long)(ns1[3] - ns0[3]),
			      (unsigned long long)(ns1[4] - ns0[4]));
	}

	print_message("%-26s %7.1f MB in %.2fs = %.2f GB/s; redirected %llu B/%llu frames, passed "
		      "%llu B/%llu frames, switches %llu, arm waits %llu, pauses %llu, held max %lld, eagain %llu, "
		      "mailbox backlog max %lld, EOF->drained %.3fs\n",
		      sc->name, r->wire_bytes / 1e6, dt, r->wire_bytes / dt / 1e9,
		      (unsigned long long)(c1.redir_bytes - c0.redir_bytes),
		      (unsigned long long)(c1.redir_frames - c0.redir_frames),
		      (unsigned long long)(c1.pass_bytes - c0.pass_bytes),
		      (unsigned long long)(c1.pass_frames - c0.pass_frames),
		      (unsigned long long)(c1.switches - c0.switches),
		      (unsigned long long)(c1.arm_waits - c0.arm_waits),
		      (unsigned long long)(c1.pauses - c0.pauses), (long long)r->held_max,
		      (unsigned long long)r->eagain, (long long)r->backlog_max, r->drain_eof_s);
	for (int i = 0; i < sc->nsess; i++)
		if (r->ss[i].drain_s > 0.001)
			print_message("  sid %u: End waited %.3fs for the drain\n", r->ss[i].sid,
				      r->ss[i].drain_s);

	if (ret || r->rerr[0])
		fail_msg("%s: reader: %s", sc->name, r->rerr);
	for (int i = 0; i < sc->nsess; i++) {
		struct sess *s = &r->ss[i];

		if (s->err[0])
			fail_msg("%s: target: %s", sc->name, s->err);
		if (uses_target(s) && s->got != s->cfg->bytes)
			fail_msg("%s: sid %u: target got %llu of %llu bytes", sc->name, s->sid,
				 (unsigned long long)s->got, (unsigned long long)s->cfg->bytes);
		if (!s->r_end)
			fail_msg("%s: sid %u: End never read", sc->name, s->sid);
		if (s->cfg->pol != POL_PORTAL && !s->r_new)
			fail_msg("%s: sid %u: New never read", sc->name, s->sid);
		if (s->cfg->pol == POL_USER || s->cfg->pol == POL_UTARGET)
			assert_int_equal(s->r_off, s->cfg->bytes); /* all of it was passed */
	}
	/* Every non-redirectable frame reached userspace, intact and in order. */
	assert_int_equal(r->r_ctl, r->ctl_frames);
	assert_int_equal(r->r_ka, r->ka_frames);
	assert_int_equal(r->r_new, r->new_frames);
	assert_int_equal(r->r_end, r->end_frames);
	/* Counters account for the stream (per-CPU, non-atomic: >= 95 %). */
	if (!sc->plain_tunnel) {
		uint64_t seen = (c1.redir_bytes - c0.redir_bytes) + (c1.pass_bytes - c0.pass_bytes) +
				(c1.hdr_bytes - c0.hdr_bytes);

		if (seen < r->wire_bytes * 95 / 100 || seen > r->wire_bytes)
			fail_msg("%s: counters saw %llu of %llu bytes", sc->name,
				 (unsigned long long)seen, (unsigned long long)r->wire_bytes);
		assert_int_equal(c1.drop_bytes - c0.drop_bytes, 0);
		assert_int_equal(c1.mailbox_fail - c0.mailbox_fail, 0);
		assert_int_equal(c1.no_tunnel - c0.no_tunnel, 0);
		/* The reader stopped only at drained == 1: the mailbox had
		 * nothing more, and tunnel_drained agrees now. */
		assert_int_equal(bpf_engine_tunnel_drained(r->e, r->tunnel, r->mbox_read), 1);
		assert_int_equal(bpf_engine_tunnel_drained(r->e, r->tunnel, r->mbox_read + 1), 0);
	}
	for (int i = 0; i < sc->nsess; i++) {
		const struct sess_cfg *cf = &sc->s[i];

		if (cf->pol == POL_PORTAL || cf->pol == POL_AT_NEW || cf->pol == POL_MID)
			redir_slots++;
	}
	if (redir_slots && !sc->bench && c1.redir_bytes == c0.redir_bytes)
		fail_msg("%s: nothing was redirected", sc->name);
	if (r->held_max > (int64_t)((sc->bound ? sc->bound : REVSOCK_DEFAULT_SESSION_BOUND) + 65536))
		fail_msg("%s: a session held %lld bytes in the kernel (bound %llu)", sc->name,
			 (long long)r->held_max,
			 (unsigned long long)(sc->bound ? sc->bound : REVSOCK_DEFAULT_SESSION_BOUND));
	if (sc->global_bound && (r->held_sum_max > (int64_t)(sc->global_bound + 65536) ||
				 r->held_total_max > (int64_t)(sc->global_bound + 65536)))
		fail_msg("%s: the sessions held %lld bytes in the kernel together (program's sum %lld; "
			 "global bound %llu)", sc->name, (long long)r->held_sum_max, (long long)r->held_total_max,
			 (unsigned long long)sc->global_bound);
	if (sc->global_bound)
		print_message("%s: together at most %lld bytes held (program's sum at most %lld), global bound %llu\n",
			      sc->name, (long long)r->held_sum_max, (long long)r->held_total_max,
			      (unsigned long long)sc->global_bound);
	for (int i = 0; i < sc->nsess; i++) {
		if (r->ss[i].cfg->slow && (c1.pauses == c0.pauses))
			fail_msg("%s: slow target never paused the session", sc->name);
	}

	if (!sc->plain_tunnel)
		OK(bpf_engine_tunnel_remove(r->e, r->tunnel)); /* closes r->mbox */
	bpf_engine_close(r->e);
	close(r->tun_w);
	close(r->tun_r);
	for (int i = 0; i < sc->nsess; i++) {
		if (r->ss[i].src >= 0)
			close(r->ss[i].src);
		if (r->ss[i].dst >= 0)
			close(r->ss[i].dst);
	}
	free(r);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_bpf_probe_reports_features(void **state)
{
	char why[256];
	int ret = bpf_engine_probe(why, sizeof(why));

	if (ret) {
		print_message("skip: %s\n", why);
		skip();
	}
	assert_string_equal(why, "ok");
}

#define MB (1024ull * 1024)

/* The matrix: policies x frame sizes; every case byte-exact. */
static const struct scenario deframe_cases[] = {
	{ .name = "all-policies-random-64k", .nsess = 6, .minlen = 1, .maxlen = 65535,
	  .ctl_every = 7, .ka_every = 11, .empty_every = 13, .mid = 5,
	  .s = { { POL_PORTAL, 24 * MB }, { POL_AT_NEW, 16 * MB }, { POL_MID, 16 * MB },
		 { POL_USER, 6 * MB }, { POL_UTARGET, 6 * MB }, { POL_MID, 12 * MB } } },
	{ .name = "small-frames-1..1500", .nsess = 4, .minlen = 1, .maxlen = 1500,
	  .ctl_every = 5, .ka_every = 9, .empty_every = 17, .mid = 40,
	  .s = { { POL_PORTAL, 3 * MB }, { POL_MID, 3 * MB }, { POL_AT_NEW, 2 * MB },
		 { POL_USER, 1 * MB } } },
	{ .name = "v2ray-8192-frames", .nsess = 3, .minlen = 8192, .maxlen = 8192,
	  .ctl_every = 50, .ka_every = 0, .mid = 20,
	  .s = { { POL_PORTAL, 32 * MB }, { POL_MID, 32 * MB }, { POL_USER, 4 * MB } } },
};

static void test_bpf_deframe_matrix_byte_exact(void **state)
{
	NEED_BPF();
	for (size_t i = 0; i < sizeof(deframe_cases) / sizeof(deframe_cases[0]); i++)
		run_scenario(&deframe_cases[i], 0x1234567 + i);
}

/* A target whose reader is slow: the session pauses at the bound, userspace
 * takes over (drain, write, re-arm); End with data in flight waits the drain. */
static void test_bpf_slow_target_stays_under_bound(void **state)
{
	static const struct scenario sc = {
		.name = "slow-target-bound-4MiB", .nsess = 2, .minlen = 1, .maxlen = 65535,
		.ctl_every = 9, .ka_every = 0, .mid = 3, .slow_sockbuf = 64 * 1024, .slow_start_ms = 500,
		.s = { { POL_PORTAL, 16 * MB, true }, { POL_PORTAL, 4 * MB } },
	};
	static const struct scenario sc_small = {
		.name = "slow-target-bound-256KiB", .nsess = 2, .minlen = 1, .maxlen = 65535,
		.ctl_every = 9, .mid = 3, .bound = 256 * 1024,
		/* late and on small buffers: the backlog must reach the bound at any
		 * machine speed (in a 6.12 TCG VM the reader once kept up) */
		.slow_sockbuf = 64 * 1024, .slow_start_ms = 500,
		.s = { { POL_MID, 6 * MB, true }, { POL_PORTAL, 2 * MB } },
	};

	static const struct scenario sc_global = {
		.name = "slow-targets-global-1MiB", .nsess = 4, .minlen = 1, .maxlen = 65535,
		.ctl_every = 9, .mid = 3, .bound = 512 * 1024, .global_bound = 1 * MB,
		.slow_sockbuf = 64 * 1024, .slow_start_ms = 500,
		.s = { { POL_PORTAL, 4 * MB, true }, { POL_PORTAL, 4 * MB, true }, { POL_PORTAL, 4 * MB, true },
		       { POL_PORTAL, 2 * MB } },
	};

	NEED_BPF();
	run_scenario(&sc, 77);
	run_scenario(&sc_small, 78);
	run_scenario(&sc_global, 79);
}

/* What used to crash the kernel (BUG in tcp_collapse, docs/bpf.md): a reader
 * slower than the peer, with passed and redirected frames mixed, the tunnel's
 * receive buffer small.  Passed frames now wait in the mailbox (kernel memory,
 * reported as "mailbox backlog max"), the tunnel's own queue keeps moving. */
static void test_bpf_slow_mailbox_reader_pressure(void **state)
{
	const char *env = getenv("REVSOCK_BPF_PRESSURE_MB");
	uint64_t mb = env ? strtoull(env, NULL, 0) : 64;
	struct scenario sc = {
		.name = "slow-mailbox-reader", .nsess = 4, .minlen = 1, .maxlen = 65535,
		.ctl_every = 5, .ka_every = 7, .empty_every = 19, .mid = 4,
		.reader_chunk = 32 * 1024, .reader_sleep_us = 300, .netstat = true,
		.s = { { POL_PORTAL, mb * MB * 3 / 8 }, { POL_USER, mb * MB * 2 / 8 },
		       { POL_UTARGET, mb * MB * 2 / 8 }, { POL_MID, mb * MB / 8 } },
	};
	struct scenario small = sc;
	/* Small segments, big passed frames mixed with redirected ones: the
	 * tunnel's queue fills with small skbs while strparser waits for the rest
	 * of a frame, and TCP prunes it (tcp_collapse from copied_seq), i.e.
	 * exactly where a wrong copied_seq hits BUG_ON. */
	struct scenario seg = {
		.name = "small-segments-collapse", .nsess = 3, .minlen = 12000, .maxlen = 24000,
		.ctl_every = 3, .ka_every = 0, .mid = 2, .wchunk = 96, .tun_rcvbuf = 48 * 1024,
		.reader_chunk = 32 * 1024, .reader_sleep_us = 300, .netstat = true,
		.s = { { POL_PORTAL, mb * MB / 16 }, { POL_USER, mb * MB / 16 }, { POL_MID, mb * MB / 32 } },
	};
	struct scenario seg_env = seg;
	const char *rb = getenv("REVSOCK_BPF_SEG_RCVBUF"); /* experiment: lock the tunnel's SO_RCVBUF */

	if (rb) {
		seg_env.tun_rcvbuf = atoi(rb);
		seg_env.minlen = 30000, seg_env.maxlen = 65535;
		seg = seg_env;
	}

	NEED_BPF();
	if (!mb)
		skip();
	small.name = "slow-mailbox-reader-rcvbuf";
	small.tun_rcvbuf = 96 * 1024; /* the kernel doubles it: > one 66051-byte frame */
	small.s[0].bytes = small.s[1].bytes = small.s[2].bytes = small.s[3].bytes = mb * MB / 8;
	run_scenario(&sc, 91);
	run_scenario(&small, 92);
	run_scenario(&seg, 93);
}

static void test_bpf_deframer_throughput(void **state)
{
	const char *env = getenv("REVSOCK_BPF_BENCH_MB");
	uint64_t mb = env ? strtoull(env, NULL, 0) : 256;
	struct scenario k = { .name = "bench-bpf-8192", .nsess = 1, .minlen = 8192, .maxlen = 8192,
			      .bench = true, .s = { { POL_PORTAL, mb * MB } } };
	struct scenario u = k;
	struct scenario k64 = k;

	NEED_BPF();
	if (!mb)
		skip();
	u.name = "bench-userspace-8192";
	u.s[0].pol = POL_UTARGET;
	u.plain_tunnel = true; /* read + write, no sockmap at all */
	k64.name = "bench-bpf-65535";
	k64.minlen = k64.maxlen = 65535;
	const char *which = getenv("REVSOCK_BPF_BENCH_WHICH"); /* subset of "kuK" */

	if (!which || strchr(which, 'k'))
		run_scenario(&k, 1);
	if (!which || strchr(which, 'u'))
		run_scenario(&u, 2);
	if (!which || strchr(which, 'K'))
		run_scenario(&k64, 3);
}

static void test_bpf_attach_rejects_bad_sessions(void **state)
{
	struct bpf_engine *e;
	char why[256];
	int tw, tr, a, b, ux[2], mbox, mbox2 = -1, v = 0;
	socklen_t vl = sizeof(v);
	uint32_t tun, tun2 = 0, slot, slot2;
	char c;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, ux));
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	assert_int_equal(bpf_engine_tunnel_add(e, ux[0], &tun2, &mbox2), -EOPNOTSUPP);
	assert_int_equal(mbox2, -1);
	/* The mailbox: AF_UNIX stream, nonblocking, close-on-exec, a receive
	 * buffer for a whole passed frame, empty. */
	SYS(getsockopt(mbox, SOL_SOCKET, SO_DOMAIN, &v, &vl));
	assert_int_equal(v, AF_UNIX);
	assert_true(SYS(fcntl(mbox, F_GETFL)) & O_NONBLOCK);
	assert_true(SYS(fcntl(mbox, F_GETFD)) & FD_CLOEXEC);
	vl = sizeof(v);
	SYS(getsockopt(mbox, SOL_SOCKET, SO_RCVBUF, &v, &vl));
	assert_true(v >= 256 * 1024);
	assert_int_equal(read(mbox, &c, 1), -1);
	assert_int_equal(errno, EAGAIN);
	/* Nothing received, nothing read: drained. */
	assert_int_equal(bpf_engine_tunnel_drained(e, tun, 0), 1);
	assert_int_equal(bpf_engine_tunnel_drained(e, tun + 1000, 0), -ENOENT);
	assert_int_equal(bpf_engine_session_attach(e, tun, 1, a, 0, &slot), -EINVAL);
	assert_int_equal(bpf_engine_session_attach(e, tun, 0, a, 0, &slot), -EINVAL);
	assert_int_equal(bpf_engine_session_attach(e, tun + 1000, 5, a, 0, &slot), -ENOENT);
	assert_int_equal(bpf_engine_session_attach(e, tun, 5, ux[0], 0, &slot), -EOPNOTSUPP);
	OK(bpf_engine_session_attach(e, tun, 5, a, 0, &slot));
	assert_int_equal(bpf_engine_session_attach(e, tun, 5, a, 0, &slot2), -EEXIST);
	assert_int_equal(bpf_engine_session_mode(e, slot), REVSOCK_SLOT_ARMED);
	assert_int_equal(bpf_engine_session_drained(e, slot), 1);
	OK(bpf_engine_session_stop(e, slot));
	assert_int_equal(bpf_engine_session_mode(e, slot), REVSOCK_SLOT_PASS);
	OK(bpf_engine_session_arm(e, slot, 3));
	assert_int_equal(bpf_engine_session_mode(e, slot), REVSOCK_SLOT_ARMED);
	OK(bpf_engine_session_detach(e, slot, false));
	assert_int_equal(bpf_engine_session_mode(e, slot), -ENOENT);
	/* A target that already got FIN (CLOSE_WAIT) cannot be inserted. */
	shutdown(b, SHUT_WR);
	usleep(20000);
	assert_int_not_equal(bpf_engine_session_attach(e, tun, 6, a, 0, &slot), 0);
	/* remove closes the mailbox */
	OK(bpf_engine_tunnel_remove(e, tun));
	assert_int_equal(fcntl(mbox, F_GETFD), -1);
	assert_int_equal(bpf_engine_tunnel_remove(e, tun), -ENOENT);
	assert_int_equal(bpf_engine_tunnel_drained(e, tun, 0), -ENOENT);
	bpf_engine_close(e);
	close(tw), close(tr), close(a), close(b), close(ux[0]), close(ux[1]);
}

/* Read the mailbox until `want` bytes came or `secs` passed. */
static size_t mailbox_read_for(int mbox, uint8_t *buf, size_t want, double secs)
{
	double end = now_s() + secs;
	size_t got = 0;

	while (got < want && now_s() < end) {
		struct pollfd p = { .fd = mbox, .events = POLLIN };
		ssize_t r;

		poll(&p, 1, 50);
		r = read(mbox, buf + got, want - got);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0 || (errno != EAGAIN && errno != EINTR))
			break;
	}
	return got;
}

/* After a malformed header the tunnel is in error (tunnel_drained says -EIO)
 * and everything from there reaches the mailbox raw: userspace sees the same
 * bytes and its own decoder reports the error too. */
static void test_bpf_malformed_stream_is_passed_raw(void **state)
{
	struct revsock_counters c;
	struct bpf_engine *e;
	char why[256];
	uint8_t out[64], in[64], h[32];
	int tw, tr, a, b, mbox;
	uint32_t tun, slot;
	size_t n = 0, got = 0;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	OK(bpf_engine_session_attach(e, tun, 9, a, 0, &slot));
	n += hdr(out, 1, REVSOCK_MUX_KEEP, true, 3);
	memcpy(out + n, "abc", 3), n += 3;
	memcpy(out + n, "\x02\x58garbage-after", 15), n += 15; /* metaLen 600 */
	size_t k = hdr(h, 9, REVSOCK_MUX_KEEP, true, 2); /* would be redirected if parsed */
	memcpy(out + n, h, k), n += k;
	memcpy(out + n, "zz", 2), n += 2;
	write_all(tw, out, n);
	shutdown(tw, SHUT_WR);
	got = mailbox_read_for(mbox, in, sizeof(in), 10);
	assert_int_equal(got, n);
	assert_memory_equal(in, out, n);
	assert_int_equal(bpf_engine_tunnel_drained(e, tun, got), -EIO);
	OK(bpf_engine_counters(e, &c));
	assert_true(c.parse_errors >= 1);
	assert_int_equal(c.redir_bytes, 0);
	assert_int_equal(c.mailbox_fail, 0);
	assert_int_equal(c.mailbox_bytes, n);
	bpf_engine_close(e);
	close(tw), close(tr), close(a), close(b);
}

/* Bytes that reach the tunnel socket before it joins the engine, and nothing
 * after (a peer that sends its first frames and waits for an answer): the
 * parser must see them at once, not at the peer's next segment. */
static void test_bpf_bytes_queued_before_add_are_parsed(void **state)
{
	struct bpf_engine *e;
	char why[256];
	uint8_t out[64], in[64];
	int tw, tr, mbox, inq = 0;
	uint32_t tun;
	size_t n = 0, got;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	n += hdr(out, 5, REVSOCK_MUX_KEEP, true, 5);
	memcpy(out + n, "early", 5), n += 5;
	n += hdr(out + n, 6, REVSOCK_MUX_KEEPALIVE, false, 0);
	write_all(tw, out, n);
	for (int i = 0; i < 1000 && inq < (int)n; i++) { /* in tr's queue before the add */
		SYS(ioctl(tr, SIOCINQ, &inq));
		usleep(1000);
	}
	assert_int_equal(inq, n);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	got = mailbox_read_for(mbox, in, n, 2); /* the peer sends nothing more */
	assert_int_equal(got, n);
	assert_memory_equal(in, out, n);
	bpf_engine_close(e);
	close(tw), close(tr);
}

/* A target that leaves the sockmap (closed) while its session redirects: the
 * payloads that follow are lost, and the slot says how many bytes (userspace
 * ends the session with an error on it). */
static void test_bpf_redirect_to_closed_target_counts_drop(void **state)
{
	struct revsock_slot info;
	struct bpf_engine *e;
	char why[256];
	uint8_t h[32], in[16];
	int tw, tr, a, b, mbox;
	uint32_t tun, slot;
	size_t n;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	OK(bpf_engine_session_attach(e, tun, 5, a, 0, &slot));
	n = hdr(h, 5, REVSOCK_MUX_KEEP, true, 10);
	memcpy(h + n, "0123456789", 10);
	write_all(tw, h, n + 10);
	for (int i = 0; i < 2000 && recv(b, in, sizeof(in), MSG_DONTWAIT) <= 0; i++)
		usleep(1000);
	assert_int_equal(bpf_engine_session_mode(e, slot), REVSOCK_SLOT_REDIRECT);
	OK(bpf_engine_session_info(e, slot, &info));
	assert_int_equal(info.redir_bytes, 10);
	assert_int_equal(info.drop_bytes, 0);
	close(a); /* leaves the sockmap */
	n = hdr(h, 5, REVSOCK_MUX_KEEP, true, 7);
	memcpy(h + n, "abcdefg", 7);
	write_all(tw, h, n + 7);
	for (int i = 0; i < 2000; i++) {
		OK(bpf_engine_session_info(e, slot, &info));
		if (info.drop_bytes)
			break;
		usleep(1000);
	}
	assert_int_equal(info.drop_bytes, 7);
	assert_int_equal(info.redir_bytes, 10);
	OK(bpf_engine_session_detach(e, slot, true));
	bpf_engine_close(e);
	close(tw), close(tr), close(b);
}

/* The watchdog's view (bpf_engine_tunnel_progress): an incomplete frame shows
 * as received bytes the verdict has not handled, and they count as parsed
 * once the rest arrives; a kick changes nothing when nothing waits. */
static void test_bpf_tunnel_progress_counts(void **state)
{
	struct bpf_engine *e;
	struct bpf_engine_tunnel_progress p;
	char why[256];
	uint8_t out[64], in[64];
	int tw, tr, mbox;
	uint32_t tun;
	size_t n = 0, first;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	n += hdr(out, 5, REVSOCK_MUX_KEEP, true, 5);
	memcpy(out + n, "whole", 5), n += 5;
	first = n;
	n += hdr(out + n, 6, REVSOCK_MUX_KEEP, true, 4);
	memcpy(out + n, "rest", 4), n += 4;
	write_all(tw, out, first + 3); /* a whole frame and 3 bytes of the next header */
	assert_int_equal(mailbox_read_for(mbox, in, first, 2), first);
	for (int i = 0; i < 1000; i++) { /* the counts are updated before the bytes reach the mailbox */
		OK(bpf_engine_tunnel_progress(e, tun, &p));
		if (p.received == first + 3)
			break;
		usleep(1000);
	}
	assert_int_equal(p.received, first + 3);
	assert_int_equal(p.parsed, first);
	assert_int_equal(p.mailbox, first);
	assert_int_equal(p.fin, 0);
	assert_int_equal(p.error, 0);
	write_all(tw, out + first + 3, n - first - 3);
	assert_int_equal(mailbox_read_for(mbox, in + first, n - first, 2), n - first);
	assert_memory_equal(in, out, n);
	OK(bpf_engine_tunnel_kick(e, tun));
	OK(bpf_engine_tunnel_progress(e, tun, &p));
	assert_int_equal(p.received, n);
	assert_int_equal(p.parsed, n);
	assert_int_equal(p.mailbox, n);
	assert_int_equal(bpf_engine_tunnel_kick(e, tun + 1000), -ENOENT);
	bpf_engine_close(e);
	close(tw), close(tr);
}

/* EOF: the peer writes passed and redirected frames and closes; userspace
 * reads the mailbox until tunnel_drained says 1, and by then has every passed
 * byte, byte-exact, while the target has every redirected one.  A frame cut
 * short by the peer's FIN never drains. */
static void test_bpf_tunnel_drained_after_peer_close(void **state)
{
	struct bpf_engine *e;
	char why[256];
	uint8_t h[32], *want, *got, *tgt;
	size_t wn = 0, gn = 0, tn = 0, cap = 4 << 20, tcap = 1 << 20;
	uint64_t seed = 4242, redir = 0;
	int tw, tr, a, b, mbox, d = 0;
	uint32_t tun, slot;
	double end;

	NEED_BPF();
	ring_init();
	want = malloc(cap), got = malloc(cap), tgt = malloc(tcap);
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	OK(bpf_engine_session_attach(e, tun, 5, a, 0, &slot)); /* portal: before any frame */
	for (int i = 0; i < 400; i++) {
		uint8_t *f = want + wn;
		size_t k;
		/* small: the target is read only at the end (its socket
		 * buffers hold the ~40 KB redirected) */
		uint16_t l = (uint16_t)(1 + rnd(&seed) % 1000);

		switch (i % 5) {
		case 0: /* control session: passed */
			k = hdr(f, 1, REVSOCK_MUX_KEEP, true, 8);
			memcpy(f + k, content(1, (uint64_t)i * 8), 8);
			write_all(tw, f, k + 8);
			wn += k + 8;
			break;
		case 1: /* unattached session 7: passed */
		case 3:
			k = hdr(f, 7, i == 1 ? REVSOCK_MUX_NEW : REVSOCK_MUX_KEEP, true, l);
			memcpy(f + k, content(7, (uint64_t)i * 1000), l);
			write_all(tw, f, k + l);
			wn += k + l;
			break;
		case 2: /* attached session 5: redirected to the target */
			k = hdr(h, 5, REVSOCK_MUX_KEEP, true, l);
			write_all(tw, h, k);
			write_all(tw, content(5, redir), l);
			redir += l;
			break;
		default: /* KeepAlive: passed */
			k = hdr(f, 5, REVSOCK_MUX_KEEPALIVE, false, 0);
			write_all(tw, f, k);
			wn += k;
			break;
		}
	}
	close(tw);
	end = now_s() + 30;
	while (now_s() < end) {
		struct pollfd p = { .fd = mbox, .events = POLLIN };
		ssize_t r = read(mbox, got + gn, cap - gn);

		if (r > 0) {
			gn += (size_t)r;
			continue;
		}
		assert_true(r < 0 && errno == EAGAIN);
		d = bpf_engine_tunnel_drained(e, tun, gn);
		if (d)
			break;
		poll(&p, 1, 5);
	}
	assert_int_equal(d, 1);
	assert_int_equal(gn, wn);
	assert_memory_equal(got, want, wn);
	assert_int_equal(bpf_engine_tunnel_drained(e, tun, gn - 1), 0);
	assert_int_equal(bpf_engine_session_mode(e, slot), REVSOCK_SLOT_REDIRECT);
	OK(bpf_engine_session_stop(e, slot));
	OK(bpf_engine_session_wait_drained(e, slot, 10000));
	OK(bpf_engine_session_detach(e, slot, false));
	shutdown(a, SHUT_WR);
	for (;;) {
		ssize_t r = read(b, tgt + tn, tcap - tn);

		if (r <= 0)
			break;
		tn += (size_t)r;
	}
	assert_int_equal(tn, redir);
	assert_memory_equal(tgt, content(5, 0), redir);
	OK(bpf_engine_tunnel_remove(e, tun));
	close(tr);

	/* A frame cut short at EOF: never drained (the caller's deadline). */
	tcp_pair(&tw, &tr);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	wn = hdr(want, 1, REVSOCK_MUX_KEEP, true, 8);
	memcpy(want + wn, "12345678", 8), wn += 8;
	hdr(want + wn, 1, REVSOCK_MUX_KEEP, true, 8);
	write_all(tw, want, wn + 5); /* + 5 bytes of the next header */
	close(tw);
	gn = mailbox_read_for(mbox, got, wn, 10);
	assert_int_equal(gn, wn);
	end = now_s() + 0.5;
	while (now_s() < end) {
		assert_int_equal(bpf_engine_tunnel_drained(e, tun, gn), 0);
		usleep(20000);
	}
	OK(bpf_engine_tunnel_remove(e, tun));
	close(tr);
	bpf_engine_close(e);
	close(a), close(b);
	free(want), free(got), free(tgt);
}

/* Append a frame (sid, status, payload l bytes of content(sid, off)) to buf. */
static size_t put_frame(uint8_t *buf, uint32_t sid, uint8_t status, uint16_t l, uint64_t off)
{
	size_t k = hdr(buf, sid, status, l > 0 || status == REVSOCK_MUX_KEEP, l);

	memcpy(buf + k, content(sid, off), l);
	return k + l;
}

/* Poll release_poll until 1 (deadline), then read the mailbox up to its total. */
static size_t release_and_read_mailbox(struct bpf_engine *e, uint32_t tun, int mbox, uint8_t *got,
				       size_t cap)
{
	uint64_t total = 0;
	double end = now_s() + 20;
	int ret = 0;

	while (now_s() < end && (ret = bpf_engine_tunnel_release_poll(e, tun, &total)) == 0)
		usleep(2000);
	assert_int_equal(ret, 1);
	assert_true(total <= cap);
	assert_int_equal(mailbox_read_for(mbox, got, (size_t)total, 20), total);
	return (size_t)total;
}

/* Read a plain socket to EOF. */
static size_t read_to_eof(int fd, uint8_t *buf, size_t cap)
{
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	return n;
}

/* Leaving the kernel path (backpressure): after release, the mailbox up to its
 * total followed by the tunnel socket itself is the stream the kernel did not
 * redirect, byte-exact; a frame still incomplete delays the release. */
static void test_bpf_tunnel_release(void **state)
{
	struct bpf_engine *e;
	char why[256];
	size_t cap = 8 << 20, wn = 0, gn, sn, tn, k, half;
	uint8_t *want = malloc(cap), *got = malloc(cap), *tgt = malloc(1 << 20), one[70000];
	uint64_t redir = 0;
	int tw, tr, a, b, mbox;
	uint32_t tun, slot;
	double end;

	NEED_BPF();
	ring_init();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));

	/* 1. idle at a boundary: passed and redirected frames, stop + detach
	 *    the session, release, then more frames that stay in the socket. */
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	OK(bpf_engine_session_attach(e, tun, 5, a, 0, &slot));
	for (int i = 0; i < 200; i++) {
		if (i % 2) {
			k = put_frame(one, 5, REVSOCK_MUX_KEEP, (uint16_t)(100 + i), redir);
			redir += 100 + (uint64_t)i;
			write_all(tw, one, k);
		} else {
			k = put_frame(want + wn, 1, REVSOCK_MUX_KEEP, 8, (uint64_t)i * 8);
			write_all(tw, want + wn, k);
			wn += k;
		}
	}
	end = now_s() + 20;
	while (now_s() < end) { /* until the parser has seen all 200 frames */
		struct revsock_counters c;

		OK(bpf_engine_counters(e, &c));
		if (c.redir_frames + c.pass_frames >= 200)
			break;
		usleep(2000);
	}
	OK(bpf_engine_session_stop(e, slot));
	OK(bpf_engine_session_wait_drained(e, slot, 10000));
	OK(bpf_engine_session_detach(e, slot, false));
	OK(bpf_engine_tunnel_release_begin(e, tun));
	gn = release_and_read_mailbox(e, tun, mbox, got, cap);
	for (int i = 0; i < 50; i++) { /* after the release: everything stays in the socket */
		k = put_frame(want + wn, 5, REVSOCK_MUX_KEEP, (uint16_t)(1000 + i), redir);
		write_all(tw, want + wn, k);
		wn += k;
	}
	close(tw);
	sn = read_to_eof(tr, got + gn, cap - gn);
	assert_int_equal(gn + sn, wn);
	assert_memory_equal(got, want, wn);
	shutdown(a, SHUT_WR);
	tn = read_to_eof(b, tgt, 1 << 20);
	assert_int_equal(tn, redir);
	assert_memory_equal(tgt, content(5, 0), redir);
	OK(bpf_engine_tunnel_remove(e, tun));
	close(tr), close(a), close(b);

	/* 2. a frame still incomplete: no release until it is whole; a
	 *    writer keeps sending meanwhile (the parser goes raw mid-flow). */
	tcp_pair(&tw, &tr);
	OK(bpf_engine_tunnel_add(e, tr, &tun, &mbox));
	wn = 0;
	for (int i = 0; i < 20; i++)
		wn += put_frame(want + wn, 7, REVSOCK_MUX_KEEP, (uint16_t)(3000 + i), (uint64_t)i * 4000);
	k = put_frame(want + wn, 7, REVSOCK_MUX_KEEP, 60000, 0);
	half = wn + k / 2;
	write_all(tw, want, half);
	usleep(100000);
	OK(bpf_engine_tunnel_release_begin(e, tun));
	end = now_s() + 0.3;
	while (now_s() < end) {
		uint64_t total;

		assert_int_equal(bpf_engine_tunnel_release_poll(e, tun, &total), 0);
		usleep(20000);
	}
	wn += k;
	for (int i = 0; i < 400; i++)
		wn += put_frame(want + wn, 1 + (uint32_t)(i % 2) * 6, REVSOCK_MUX_KEEP,
				(uint16_t)(i % 2 ? 1 + i * 37 % 9000 : 8), (uint64_t)i * 9000);
	assert_true(wn <= cap);
	write_all(tw, want + half, wn - half);
	gn = release_and_read_mailbox(e, tun, mbox, got, cap);
	close(tw);
	sn = read_to_eof(tr, got + gn, cap - gn);
	print_message("release mid-flow: %zu bytes from the mailbox, %zu from the socket\n", gn, sn);
	assert_int_equal(gn + sn, wn);
	assert_memory_equal(got, want, wn);
	OK(bpf_engine_tunnel_remove(e, tun));
	close(tr);
	bpf_engine_close(e);
	free(want), free(got), free(tgt);
}

/* Pins: created with BTF, exclusive per instance, reclaimed after a crash,
 * removed on close. */
static void test_bpf_pins_reclaimed_and_removed(void **state)
{
	struct bpf_engine_opts o = { 0 };
	struct bpf_engine *e, *e2;
	char inst[64], dir[PATH_MAX], path[PATH_MAX + 32], why[256];
	struct stat stt;
	pid_t pid;
	int status;

	NEED_BPF();
	snprintf(inst, sizeof(inst), "unit-test-%d", (int)getpid());
	o.instance = inst;
	snprintf(dir, sizeof(dir), "%s/%s", BPF_ENGINE_PIN_ROOT, inst);

	OK(bpf_engine_open(&o, &e, why, sizeof(why)));
	assert_string_equal(bpf_engine_pin_dir(e), dir);
	snprintf(path, sizeof(path), "%s/counters", dir);
	SYS(stat(path, &stt));
	assert_int_equal(bpf_engine_open(&o, &e2, why, sizeof(why)), -EBUSY);
	bpf_engine_close(e);
	assert_int_equal(stat(dir, &stt), -1);

	/* A run that dies without closing leaves its pins behind. */
	pid = SYS(fork());
	if (pid == 0) {
		struct bpf_engine *c;

		_exit(bpf_engine_open(&o, &c, NULL, 0) ? 1 : 0);
	}
	SYS(waitpid(pid, &status, 0));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	SYS(stat(path, &stt)); /* stale pin */
	OK(bpf_engine_open(&o, &e, why, sizeof(why)));
	SYS(stat(path, &stt));
	bpf_engine_close(e);
	assert_int_equal(stat(dir, &stt), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bpf_probe_reports_features),
		cmocka_unit_test(test_bpf_attach_rejects_bad_sessions),
		cmocka_unit_test(test_bpf_malformed_stream_is_passed_raw),
		cmocka_unit_test(test_bpf_bytes_queued_before_add_are_parsed),
		cmocka_unit_test(test_bpf_tunnel_progress_counts),
		cmocka_unit_test(test_bpf_redirect_to_closed_target_counts_drop),
		cmocka_unit_test(test_bpf_tunnel_drained_after_peer_close),
		cmocka_unit_test(test_bpf_tunnel_release),
		cmocka_unit_test(test_bpf_pins_reclaimed_and_removed),
		cmocka_unit_test(test_bpf_deframe_matrix_byte_exact),
		cmocka_unit_test(test_bpf_slow_target_stays_under_bound),
		cmocka_unit_test(test_bpf_slow_mailbox_reader_pressure),
		cmocka_unit_test(test_bpf_deframer_throughput),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("REVSOCK_BPF_TEST"))
		cmocka_set_test_filter(getenv("REVSOCK_BPF_TEST"));
	if (geteuid() != 0)
		fprintf(stderr, "test_bpf_engine: not root, BPF cases will be skipped\n");
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
