/* SPDX-License-Identifier: MIT */
/*
 * sockmap engine tests (root + BPF; skipped with the reason when the kernel
 * lacks a feature).  A TCP loopback "tunnel" pair carries a generated Mux.Cool
 * stream; the engine deframes it in the kernel; checker threads verify, byte
 * by byte, what every target received, and the reader verifies every frame it
 * was passed.
 *
 *   REVSOCK_BPF_BENCH_MB=N         size of the throughput cases (default 256, 0 = skip)
 *   REVSOCK_BPF_BENCH_WHICH=kuK    which of them: k bpf 8192-byte frames, u userspace
 *                                  read+write (no sockmap), K bpf 65535-byte frames
 *   REVSOCK_BPF_PRESSURE=1         run the slow-target (byte bound) cases, which put
 *                                  the tunnel under receive pressure (docs/bpf.md)
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
	bool bench;
	bool plain_tunnel; /* the tunnel is not given to the engine (userspace reference) */
};

struct sess {
	const struct sess_cfg *cfg;
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
	int tun_w, tun_r;
	struct sess ss[8];
	uint64_t seed;
	/* writer totals */
	uint64_t wire_bytes, ctl_frames, ka_frames, new_frames, end_frames, empty_frames;
	/* reader totals */
	uint64_t r_ctl, r_ka, r_new, r_end, r_frames, r_unexpected_redirect, eagain, late;
	char rerr[400], werr[100];
	volatile int sampling;
	int64_t held_max;
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
		for (int i = 0; i < r->sc->nsess; i++) {
			struct sess *s = &r->ss[i];

			if (s->cfg->slow && s->attached && !s->r_end) {
				int64_t h = bpf_engine_session_held(r->e, s->slot);

				if (h > r->held_max)
					r->held_max = h;
			}
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
		RFAIL(r, "sid %u: drain timed out (mode %d): busy %u redir %llu base %llu acked_seen %llu; "
		      "target acked %llu outq %d", sid, m, si.busy, (unsigned long long)si.redir_bytes,
		      (unsigned long long)si.base, (unsigned long long)si.acked_seen,
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

			if (m != REVSOCK_SLOT_ENDED && m != REVSOCK_SLOT_PAUSED)
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

	for (;;) {
		ssize_t n = read(r->tun_r, buf, cap);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* A blocking read on a sockmap socket with a verdict can
			 * return EAGAIN (tcp_bpf_recvmsg_parser): wait and retry. */
			struct pollfd p = { .fd = r->tun_r, .events = POLLIN };

			poll(&p, 1, 100);
			r->eagain++;
			continue;
		}
		if (n < 0) {
			snprintf(r->rerr, sizeof(r->rerr), "tunnel read: %s", strerror(errno));
			ret = -1;
			break;
		}
		if (n == 0) {
			/* tcp_bpf_recvmsg_parser reports EOF once RCV_SHUTDOWN is
			 * set even if strparser work is still pending: confirm. */
			if (r->late < 50) {
				r->late++;
				usleep(1000);
				continue;
			}
			break;
		}
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
	struct bpf_engine_opts o = { .session_bound = sc->bound };
	struct revsock_counters c0, c1;
	struct run *r = calloc(1, sizeof(*r));
	pthread_t wt, st;
	char why[256] = "";
	uint64_t payload = 0, redir_slots = 0;
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
	if (!sc->plain_tunnel)
		OK(bpf_engine_tunnel_add(r->e, r->tun_r, &r->tunnel));
	for (int i = 0; i < sc->nsess; i++) {
		struct sess *s = &r->ss[i];

		s->cfg = &sc->s[i];
		s->sid = 2 + (uint32_t)i * 37; /* spread over buckets, one collision-free set */
		s->src = s->dst = -1;
		payload += s->cfg->bytes;
		if (uses_target(s)) {
			tcp_pair(&s->src, &s->dst);
			assert_int_equal(pthread_create(&s->checker, NULL, checker, s), 0);
		}
		if (s->cfg->pol == POL_PORTAL)
			assert_int_equal(attach(r, s), 0);
	}
	OK(bpf_engine_counters(r->e, &c0));
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

	print_message("%-26s %7.1f MB in %.2fs = %.2f GB/s; redirected %llu B/%llu frames, passed "
		      "%llu B/%llu frames, switches %llu, arm waits %llu, pauses %llu, held max %lld, eagain %llu\n",
		      sc->name, r->wire_bytes / 1e6, dt, r->wire_bytes / dt / 1e9,
		      (unsigned long long)(c1.redir_bytes - c0.redir_bytes),
		      (unsigned long long)(c1.redir_frames - c0.redir_frames),
		      (unsigned long long)(c1.pass_bytes - c0.pass_bytes),
		      (unsigned long long)(c1.pass_frames - c0.pass_frames),
		      (unsigned long long)(c1.switches - c0.switches),
		      (unsigned long long)(c1.arm_waits - c0.arm_waits),
		      (unsigned long long)(c1.pauses - c0.pauses), (long long)r->held_max,
		      (unsigned long long)r->eagain);
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
	for (int i = 0; i < sc->nsess; i++) {
		if (r->ss[i].cfg->slow && (c1.pauses == c0.pauses))
			fail_msg("%s: slow target never paused the session", sc->name);
	}

	if (!sc->plain_tunnel)
		OK(bpf_engine_tunnel_remove(r->e, r->tunnel));
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
		.ctl_every = 9, .ka_every = 0, .mid = 3,
		.s = { { POL_PORTAL, 16 * MB, true }, { POL_PORTAL, 4 * MB } },
	};
	static const struct scenario sc_small = {
		.name = "slow-target-bound-256KiB", .nsess = 2, .minlen = 1, .maxlen = 65535,
		.ctl_every = 9, .mid = 3, .bound = 256 * 1024,
		.s = { { POL_MID, 6 * MB, true }, { POL_PORTAL, 2 * MB } },
	};

	NEED_BPF();
	if (!getenv("REVSOCK_BPF_PRESSURE")) {
		/* 6.18.44: receive pressure on a strparser socket hit
		 * BUG() in tcp_collapse (kstrp worker) and wedged the
		 * machine's strparser workqueue; see docs/bpf.md. */
		print_message("skip: set REVSOCK_BPF_PRESSURE=1 (tunnel receive pressure can hit a "
			      "kernel BUG in tcp_collapse on 6.18, docs/bpf.md)\n");
		skip();
	}
	run_scenario(&sc, 77);
	run_scenario(&sc_small, 78);
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
	int tw, tr, a, b, ux[2];
	uint32_t tun, slot, slot2;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, ux));
	OK(bpf_engine_tunnel_add(e, tr, &tun));
	assert_int_equal(bpf_engine_tunnel_add(e, ux[0], &tun), -EOPNOTSUPP);
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
	bpf_engine_close(e);
	close(tw), close(tr), close(a), close(b), close(ux[0]), close(ux[1]);
}

/* After a malformed header the kernel passes everything: userspace sees the
 * same bytes and its own decoder reports the error. */
static void test_bpf_malformed_stream_is_passed_raw(void **state)
{
	struct revsock_counters c;
	struct bpf_engine *e;
	char why[256];
	uint8_t out[64], in[64], h[32];
	int tw, tr, a, b;
	uint32_t tun, slot;
	size_t n = 0, got = 0;

	NEED_BPF();
	OK(bpf_engine_open(NULL, &e, why, sizeof(why)));
	tcp_pair(&tw, &tr);
	tcp_pair(&a, &b);
	OK(bpf_engine_tunnel_add(e, tr, &tun));
	OK(bpf_engine_session_attach(e, tun, 9, a, 0, &slot));
	n += hdr(out, 1, REVSOCK_MUX_KEEP, true, 3);
	memcpy(out + n, "abc", 3), n += 3;
	memcpy(out + n, "\x02\x58garbage-after", 15), n += 15; /* metaLen 600 */
	size_t k = hdr(h, 9, REVSOCK_MUX_KEEP, true, 2); /* would be redirected if parsed */
	memcpy(out + n, h, k), n += k;
	memcpy(out + n, "zz", 2), n += 2;
	write_all(tw, out, n);
	shutdown(tw, SHUT_WR);
	for (;;) {
		ssize_t r = read(tr, in + got, sizeof(in) - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	assert_int_equal(got, n);
	assert_memory_equal(in, out, n);
	OK(bpf_engine_counters(e, &c));
	assert_true(c.parse_errors >= 1);
	assert_int_equal(c.redir_bytes, 0);
	bpf_engine_close(e);
	close(tw), close(tr), close(a), close(b);
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
		cmocka_unit_test(test_bpf_pins_reclaimed_and_removed),
		cmocka_unit_test(test_bpf_deframe_matrix_byte_exact),
		cmocka_unit_test(test_bpf_slow_target_stays_under_bound),
		cmocka_unit_test(test_bpf_deframer_throughput),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("REVSOCK_BPF_TEST"))
		cmocka_set_test_filter(getenv("REVSOCK_BPF_TEST"));
	if (geteuid() != 0)
		fprintf(stderr, "test_bpf_engine: not root, BPF cases will be skipped\n");
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
