/* SPDX-License-Identifier: MIT */
/*
 * loadgen: the benchmark's load generator and its services (loopback only).
 *
 *   loadgen serve  [--max-seconds S]
 *       Listens on 127.0.0.1 ephemeral ports and prints one JSON line
 *       {"echo":P,"bulk":P,"banner":P}; runs until SIGTERM, stdin EOF or S.
 *         echo   echoes everything.
 *         banner writes the 16-byte banner BANNER at accept, then echoes.
 *         bulk   16-byte header {"RSB1", u32 dir, u64 seed} (big endian):
 *                dir 0 (upload): frames {u32 len, len bytes of the pattern
 *                  stream}, len 0 ends; the service checks every byte and
 *                  answers {"RSOK"|"RSER", u32 0, u64 bytes checked}.
 *                dir 1 (download): the service sends such frames until the
 *                  client sends any byte, then the end frame.
 *   loadgen bulk     --port P --dir up|down [--streams N] [--seconds S]
 *   loadgen pingpong --port P [--size B] [--count N] [--warmup W] [--max-seconds S]
 *   loadgen churn    --port P [--conns C] [--seconds S]         (echo service;
 *       source addresses 127.<10+thread>.x.y so TIME_WAIT never exhausts ports)
 *   loadgen ttfb     --port P [--count N] [--max-seconds S]     (banner service)
 *   loadgen idle     --port P [--sessions N] [--open-seconds S] [--hold-max S]
 *       opens N sessions, one checked echo each, prints a JSON line, waits
 *       for a line on stdin, checks every session again, prints, closes.
 *
 * Each client prints one JSON object per line on stdout; exit 0 if every
 * byte checked was right and the run completed, 1 otherwise, 2 on usage.
 * The pattern stream for seed s: byte i = pat[(s + i) % PATLEN], pat filled
 * by a fixed xorshift generator; PATLEN is prime so chunks never line up.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PATLEN 1048573u            /* prime */
#define PATEXT (256u * 1024u)      /* contiguous tail so any window <= PATEXT is flat */
#define CHUNK 65536u               /* bulk frame payload */
#define RBUF (256u * 1024u)
#define BANNER "REVSOCK-BANNER!\n" /* 16 bytes */
#define MSGLEN 16

static unsigned char *pat;

static void pat_init(void)
{
	pat = malloc(PATLEN + PATEXT);
	if (!pat) {
		perror("malloc");
		exit(1);
	}
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < PATLEN + PATEXT; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t v = x * 0x2545F4914F6CDD1Dull;
		size_t n = PATLEN + PATEXT - i < 8 ? PATLEN + PATEXT - i : 8;
		memcpy(pat + i, &v, n);
	}
	memcpy(pat + PATLEN, pat, PATEXT); /* wrap-around tail */
}

static inline const unsigned char *pat_at(uint64_t seed, uint64_t off)
{
	return pat + (size_t)((seed + off) % PATLEN);
}

/* 0 if p[0..n) is the stream of seed at offset off */
static int pat_check(uint64_t seed, uint64_t off, const unsigned char *p, size_t n)
{
	while (n) {
		size_t k = n < PATEXT ? n : PATEXT;
		if (memcmp(p, pat_at(seed, off), k))
			return -1;
		p += k;
		off += k;
		n -= k;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	struct rlimit want = {200000, 200000};
	if (setrlimit(RLIMIT_NOFILE, &want)) { /* not root: take the hard limit */
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void set_timeouts(int fd, double secs)
{
	struct timeval tv = {(time_t)secs, (suseconds_t)((secs - (time_t)secs) * 1e6)};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static struct sockaddr_in lo_addr(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* src: 0, or a 127/8 source address (host order).  Churn spreads its
 * connections over many source addresses: all from 127.0.0.1 they would run
 * out of ephemeral ports (TIME_WAIT) and measure the kernel's port search. */
static int connect_lo_from(int port, uint32_t src, double timeout)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_timeouts(fd, timeout);
	if (src) {
		int one = 1;
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		struct sockaddr_in b = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
		if (bind(fd, (struct sockaddr *)&b, sizeof b)) {
			close(fd);
			return -1;
		}
	}
	struct sockaddr_in a = lo_addr(port);
	if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int connect_lo(int port, double timeout) { return connect_lo_from(port, 0, timeout); }

static int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= w;
	}
	return 0;
}

static int read_full(int fd, void *p, size_t n)
{
	char *c = p;
	while (n) {
		ssize_t r = recv(fd, c, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= r;
	}
	return 0;
}

/* ---- frame parser: {u32 len, payload} ... {0} over the pattern stream ---- */
struct fparse {
	uint64_t seed, off; /* payload bytes checked so far */
	uint32_t frem;      /* payload left in the current frame */
	unsigned char fl[4];
	int fllen;
	bool in_payload, ended, bad;
};

/* consumes bytes up to and including the end frame (or the first wrong
 * byte: then bad and ended); returns bytes consumed */
static size_t fparse_feed(struct fparse *f, const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n && !f->ended) {
		if (!f->in_payload) {
			while (i < n && f->fllen < 4)
				f->fl[f->fllen++] = p[i++];
			if (f->fllen < 4)
				break;
			uint32_t len;
			memcpy(&len, f->fl, 4);
			f->frem = ntohl(len);
			f->fllen = 0;
			if (f->frem > 16 * CHUNK) /* framing lost: bytes were dropped or altered */
				f->bad = f->ended = true;
			else if (f->frem == 0)
				f->ended = true;
			else
				f->in_payload = true;
		} else {
			size_t k = n - i < f->frem ? n - i : f->frem;
			if (pat_check(f->seed, f->off, p + i, k)) {
				f->bad = f->ended = true; /* stop at the first wrong byte */
				return n;
			}
			f->off += k;
			f->frem -= k;
			i += k;
			if (!f->frem)
				f->in_payload = false;
		}
	}
	return i;
}

/* ================================ services ================================ */
enum { SVC_ECHO, SVC_BULK, SVC_BANNER, NSVC };
static const char *svc_name[NSVC] = {"echo", "bulk", "banner"};

enum { B_HDR, B_UP, B_DOWN, B_DONE };

struct ent { /* epoll tag */
	int kind; /* 0 listener, 1 conn */
	int fd;
};

struct listener {
	struct ent e;
	int svc;
};

struct sconn {
	struct ent e;
	int svc;
	int bst;
	unsigned char hdr[16];
	int hdrlen;
	struct fparse fp;
	/* download */
	uint64_t seed, doff;
	uint32_t dpos, dlen; /* bytes of current frame sent; payload length */
	bool dframe, stop;
	/* pending output */
	unsigned char *out;
	size_t outlen, outoff;
	uint32_t events;
};

static struct listener listeners[NSVC];
static volatile sig_atomic_t stop_flag;
static unsigned long long srv_bad_streams;

static void on_term(int s) { stop_flag = 1; }

static void sc_close(int ep, struct sconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->e.fd, NULL);
	close(c->e.fd);
	free(c->out);
	free(c);
}

static void sc_events(int ep, struct sconn *c, uint32_t ev)
{
	if (c->events == ev)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_MOD, c->e.fd, &e);
	c->events = ev;
}

/* queue bytes after what is pending; tries to send at once. -1 on error */
static int sc_send(int ep, struct sconn *c, const void *p, size_t n)
{
	if (c->outoff == c->outlen) {
		ssize_t w = send(c->e.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -1;
			w = 0;
		}
		p = (const char *)p + w;
		n -= w;
		if (!n)
			return 0;
		free(c->out);
		c->out = NULL;
		c->outlen = c->outoff = 0;
	}
	unsigned char *o = malloc(c->outlen - c->outoff + n);
	if (!o)
		return -1;
	memcpy(o, c->out + c->outoff, c->outlen - c->outoff);
	memcpy(o + c->outlen - c->outoff, p, n);
	c->outlen = c->outlen - c->outoff + n;
	c->outoff = 0;
	free(c->out);
	c->out = o;
	return 0;
}

static int sc_flush(struct sconn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t w = send(c->e.fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->outoff += w;
	}
	free(c->out);
	c->out = NULL;
	c->outlen = c->outoff = 0;
	return 0;
}

static void sc_update(int ep, struct sconn *c)
{
	bool pending = c->outoff < c->outlen;
	/* echo back-pressure: stop reading until the pending output drained */
	uint32_t ev = pending ? EPOLLOUT : EPOLLIN;
	if (c->svc == SVC_BULK && (c->bst == B_DOWN || pending))
		ev = EPOLLIN | EPOLLOUT;
	sc_events(ep, c, ev);
}

/* download: send frames until stopped; returns -1 on error */
static int sc_download(struct sconn *c)
{
	for (int iter = 0; iter < 64; iter++) {
		if (!c->dframe) {
			c->dframe = true;
			c->dpos = 0;
			c->dlen = c->stop ? 0 : CHUNK;
		}
		uint32_t be = htonl(c->dlen);
		struct iovec iov[2];
		int n = 0;
		if (c->dpos < 4) {
			iov[n].iov_base = (char *)&be + c->dpos;
			iov[n++].iov_len = 4 - c->dpos;
		}
		uint32_t sent = c->dpos > 4 ? c->dpos - 4 : 0;
		if (c->dlen > sent) {
			iov[n].iov_base = (void *)pat_at(c->seed, c->doff + sent);
			iov[n++].iov_len = c->dlen - sent;
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
		ssize_t w = sendmsg(c->e.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->dpos += w;
		if (c->dpos == 4 + c->dlen) {
			c->dframe = false;
			if (c->dlen == 0) {
				c->bst = B_DONE;
				return 0;
			}
			c->doff += c->dlen;
		}
	}
	return 0;
}

static int sc_bulk_in(int ep, struct sconn *c, const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		switch (c->bst) {
		case B_HDR:
			while (i < n && c->hdrlen < 16)
				c->hdr[c->hdrlen++] = p[i++];
			if (c->hdrlen < 16)
				return 0;
			if (memcmp(c->hdr, "RSB1", 4))
				return -1;
			uint32_t dir;
			uint64_t seed;
			memcpy(&dir, c->hdr + 4, 4);
			memcpy(&seed, c->hdr + 8, 8);
			seed = be64toh(seed);
			if (ntohl(dir) == 0) {
				c->bst = B_UP;
				c->fp.seed = seed;
			} else {
				c->bst = B_DOWN;
				c->seed = seed;
			}
			break;
		case B_UP:
			i += fparse_feed(&c->fp, p + i, n - i);
			if (c->fp.ended) {
				unsigned char res[16];
				memcpy(res, c->fp.bad ? "RSER" : "RSOK", 4);
				memset(res + 4, 0, 4);
				uint64_t b = htobe64(c->fp.off);
				memcpy(res + 8, &b, 8);
				if (c->fp.bad) {
					__atomic_add_fetch(&srv_bad_streams, 1, __ATOMIC_RELAXED);
					fprintf(stderr, "loadgen serve: upload stream seed %" PRIu64 " had wrong bytes\n", c->fp.seed);
				}
				c->bst = B_DONE;
				if (sc_send(ep, c, res, 16))
					return -1;
			}
			break;
		case B_DOWN:
			c->stop = true;
			i = n;
			break;
		default:
			i = n; /* ignore */
		}
	}
	return 0;
}

static void sc_accept(int ep, struct listener *l)
{
	for (int k = 0; k < 256; k++) {
		int fd = accept4(l->e.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		set_nodelay(fd);
		struct sconn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			return;
		}
		c->e.kind = 1;
		c->e.fd = fd;
		c->svc = l->svc;
		c->events = EPOLLIN;
		struct epoll_event e = {.events = c->events, .data.ptr = c};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e)) {
			close(fd);
			free(c);
			continue;
		}
		if (c->svc == SVC_BANNER) {
			if (sc_send(ep, c, BANNER, MSGLEN)) {
				sc_close(ep, c);
				continue;
			}
			sc_update(ep, c);
		}
	}
}

static void sc_io(int ep, struct sconn *c, uint32_t ev, unsigned char *buf)
{
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (!(c->outoff < c->outlen) || c->svc == SVC_BULK) {
			ssize_t r = recv(c->e.fd, buf, RBUF, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				sc_close(ep, c);
				return;
			}
			if (r > 0) {
				int rc = c->svc == SVC_BULK ? sc_bulk_in(ep, c, buf, r) : sc_send(ep, c, buf, r);
				if (rc) {
					sc_close(ep, c);
					return;
				}
			}
		} else if (ev & (EPOLLHUP | EPOLLERR)) {
			sc_close(ep, c);
			return;
		}
	}
	if (sc_flush(c)) {
		sc_close(ep, c);
		return;
	}
	if (c->svc == SVC_BULK && c->bst == B_DOWN && sc_download(c)) {
		sc_close(ep, c);
		return;
	}
	sc_update(ep, c);
}

static void *serve_worker(void *arg)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (int s = 0; s < NSVC; s++) {
		struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listeners[s]};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, listeners[s].e.fd, &e)) {
			perror("epoll_ctl listener");
			exit(1);
		}
	}
	unsigned char *buf = malloc(RBUF);
	struct epoll_event evs[128];
	while (!stop_flag) {
		int n = epoll_wait(ep, evs, 128, 200);
		for (int i = 0; i < n; i++) {
			struct ent *t = evs[i].data.ptr;
			if (t->kind == 0)
				sc_accept(ep, (struct listener *)t);
			else
				sc_io(ep, (struct sconn *)t, evs[i].events, buf);
		}
	}
	return NULL;
}

static int cmd_serve(double max_seconds)
{
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	for (int s = 0; s < NSVC; s++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = lo_addr(0);
		socklen_t al = sizeof a;
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096) ||
		    getsockname(fd, (struct sockaddr *)&a, &al)) {
			perror("loadgen serve: listen");
			return 1;
		}
		listeners[s] = (struct listener){.e = {.kind = 0, .fd = fd}, .svc = s};
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nthr = ncpu < 2 ? 2 : ncpu > 8 ? 8 : (int)ncpu;
	pthread_t th[8];
	for (int i = 0; i < nthr; i++)
		pthread_create(&th[i], NULL, serve_worker, NULL);
	printf("{");
	for (int s = 0; s < NSVC; s++) {
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		getsockname(listeners[s].e.fd, (struct sockaddr *)&a, &al);
		printf("%s\"%s\":%d", s ? "," : "", svc_name[s], ntohs(a.sin_port));
	}
	printf("}\n");
	fflush(stdout);
	/* until signal, stdin EOF or the time bound */
	double end = now_s() + max_seconds;
	struct stat st;
	bool watch_stdin = !fstat(0, &st) && S_ISFIFO(st.st_mode);
	while (!stop_flag && now_s() < end) {
		if (!watch_stdin) {
			usleep(200000);
			continue;
		}
		struct pollfd pf = {.fd = 0, .events = POLLIN};
		int r = poll(&pf, 1, 500);
		if (r > 0) {
			char b[256];
			ssize_t n = read(0, b, sizeof b);
			if (n == 0)
				break;
			if (n < 0 && errno != EINTR && errno != EAGAIN)
				break;
		}
	}
	stop_flag = 1;
	for (int i = 0; i < nthr; i++)
		pthread_join(th[i], NULL);
	if (srv_bad_streams)
		fprintf(stderr, "loadgen serve: %llu upload streams had wrong bytes\n", srv_bad_streams);
	return srv_bad_streams ? 1 : 0;
}

/* ================================ clients ================================= */
struct opts {
	int port, streams, size, count, warmup, conns, sessions;
	bool down;
	double seconds, max_seconds, open_seconds, hold_max;
};

/* ---- bulk ---- */
struct bulk_thr {
	const struct opts *o;
	pthread_barrier_t *bar;
	uint64_t seed, bytes;
	double t0, t1;
	const char *err;
};

static void *bulk_up(struct bulk_thr *b, int fd)
{
	uint32_t be = htonl(CHUNK);
	double deadline = b->t0 + b->o->seconds;
	uint64_t off = 0;
	while (now_s() < deadline) {
		size_t pos = 0, flen = 4 + CHUNK;
		while (pos < flen) {
			struct iovec iov[2];
			int n = 0;
			if (pos < 4) {
				iov[n].iov_base = (char *)&be + pos;
				iov[n++].iov_len = 4 - pos;
			}
			size_t sent = pos > 4 ? pos - 4 : 0;
			iov[n].iov_base = (void *)pat_at(b->seed, off + sent);
			iov[n++].iov_len = CHUNK - sent;
			struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
			ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				b->err = "send failed";
				return NULL;
			}
			pos += w;
		}
		off += CHUNK;
	}
	uint32_t z = 0;
	unsigned char res[16];
	if (write_full(fd, &z, 4)) {
		b->err = "send end failed";
		return NULL;
	}
	set_timeouts(fd, 30);
	if (read_full(fd, res, 16)) {
		b->err = "no result from the service";
		return NULL;
	}
	b->t1 = now_s();
	uint64_t got;
	memcpy(&got, res + 8, 8);
	got = be64toh(got);
	if (memcmp(res, "RSOK", 4))
		b->err = "service found wrong bytes";
	else if (got != off)
		b->err = "service counted a different byte total";
	b->bytes = got;
	return NULL;
}

static void *bulk_down(struct bulk_thr *b, int fd, unsigned char *buf)
{
	struct fparse f = {.seed = b->seed};
	double deadline = b->t0 + b->o->seconds, hard = deadline + 30;
	bool stopped = false;
	while (!f.ended) {
		double t = now_s();
		if (!stopped && t >= deadline) {
			if (write_full(fd, "S", 1)) {
				b->err = "send stop failed";
				return NULL;
			}
			stopped = true;
		}
		if (t > hard) {
			b->err = "download did not end";
			return NULL;
		}
		ssize_t r = recv(fd, buf, RBUF, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			continue; /* SO_RCVTIMEO: recheck the clock */
		if (r <= 0) {
			b->err = "download stream closed early";
			return NULL;
		}
		fparse_feed(&f, buf, r);
		if (f.bad) {
			b->err = "wrong bytes received";
			return NULL;
		}
	}
	b->t1 = now_s();
	b->bytes = f.off;
	return NULL;
}

static void *bulk_thread(void *arg)
{
	struct bulk_thr *b = arg;
	unsigned char *buf = malloc(RBUF);
	int fd = connect_lo(b->o->port, 5);
	pthread_barrier_wait(b->bar);
	b->t0 = now_s();
	if (fd < 0) {
		b->err = "connect failed";
		free(buf);
		return NULL;
	}
	unsigned char hdr[16];
	memcpy(hdr, "RSB1", 4);
	uint32_t dir = htonl(b->o->down ? 1 : 0);
	uint64_t seed = htobe64(b->seed);
	memcpy(hdr + 4, &dir, 4);
	memcpy(hdr + 8, &seed, 8);
	set_timeouts(fd, 10);
	struct timeval tv = {1, 0}; /* short receive timeout: the download loop rechecks the clock */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (write_full(fd, hdr, 16))
		b->err = "send header failed";
	else if (b->o->down)
		bulk_down(b, fd, buf);
	else
		bulk_up(b, fd);
	close(fd);
	free(buf);
	return NULL;
}

static int cmd_bulk(const struct opts *o)
{
	int n = o->streams;
	struct bulk_thr *b = calloc(n, sizeof *b);
	pthread_t *th = calloc(n, sizeof *th);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, n);
	uint64_t base = (uint64_t)now_ns();
	for (int i = 0; i < n; i++) {
		b[i] = (struct bulk_thr){.o = o, .bar = &bar, .seed = (base + i * 7919ull) % PATLEN};
		pthread_create(&th[i], NULL, bulk_thread, &b[i]);
	}
	uint64_t total = 0;
	double t0 = 1e300, t1 = 0;
	const char *err = NULL;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (b[i].err && !err)
			err = b[i].err;
		total += b[i].bytes;
		if (b[i].t0 < t0)
			t0 = b[i].t0;
		if (b[i].t1 > t1)
			t1 = b[i].t1;
	}
	double el = t1 > t0 ? t1 - t0 : 0;
	printf("{\"ok\":%s,\"dir\":\"%s\",\"streams\":%d,\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"bytes_per_s\":%.1f%s%s%s}\n",
	       err ? "false" : "true", o->down ? "down" : "up", n, total, el, el > 0 ? total / el : 0.0,
	       err ? ",\"error\":\"" : "", err ? err : "", err ? "\"" : "");
	return err ? 1 : 0;
}

/* ---- latency helpers ---- */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* nearest rank */
static double pct(const uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t k = (size_t)(p / 100.0 * n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1] / 1000.0; /* microseconds */
}

static void print_lat(const char *pfx, uint64_t *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_u64);
	printf("\"%sp50_us\":%.2f,\"%sp99_us\":%.2f,\"%sp999_us\":%.2f,\"%smax_us\":%.2f", pfx, pct(v, n, 50), pfx,
	       pct(v, n, 99), pfx, pct(v, n, 99.9), pfx, n ? v[n - 1] / 1000.0 : 0.0);
}

/* ---- ping-pong ---- */
static int cmd_pingpong(const struct opts *o)
{
	int fd = connect_lo(o->port, 5);
	if (fd < 0) {
		printf("{\"ok\":false,\"error\":\"connect failed\"}\n");
		return 1;
	}
	set_nodelay(fd);
	size_t sz = o->size;
	unsigned char *in = malloc(sz);
	uint64_t *lat = calloc(o->count, sizeof *lat);
	size_t n = 0;
	uint64_t seed = now_ns() % PATLEN, off = 0;
	double end = now_s() + o->max_seconds;
	const char *err = NULL;
	for (int i = 0; i < o->warmup + o->count; i++) {
		if (i > o->warmup && now_s() > end)
			break;
		const unsigned char *out = pat_at(seed, off);
		uint64_t t0 = now_ns();
		if (write_full(fd, out, sz)) {
			err = "send failed";
			break;
		}
		if (read_full(fd, in, sz)) {
			err = "echo missing";
			break;
		}
		uint64_t t1 = now_ns();
		if (memcmp(in, out, sz)) {
			err = "echo had wrong bytes";
			break;
		}
		off = (off + sz) % PATLEN;
		if (i >= o->warmup)
			lat[n++] = t1 - t0;
	}
	close(fd);
	if (!n && !err)
		err = "no samples";
	printf("{\"ok\":%s,\"size\":%zu,\"n\":%zu,", err ? "false" : "true", sz, n);
	print_lat("", lat, n);
	if (err)
		printf(",\"error\":\"%s\"", err);
	printf("}\n");
	return err ? 1 : 0;
}

/* ---- churn ---- */
struct churn_thr {
	const struct opts *o;
	double end;
	int idx;
	uint64_t ok, fail, corrupt, seed;
	uint64_t *lat;
	size_t nlat, caplat;
};

static void *churn_thread(void *arg)
{
	struct churn_thr *c = arg;
	unsigned char in[MSGLEN];
	for (uint64_t i = 0; now_s() < c->end && i < 10000000; i++) {
		uint64_t t0 = now_ns();
		/* 127.<10+thread>.<hi>.<lo>: 65,535 source addresses per thread */
		uint32_t src = 0x7f000000u | (uint32_t)(10 + c->idx % 200) << 16 | (uint32_t)(i % 65535 + 1);
		int fd = connect_lo_from(c->o->port, src, 5);
		if (fd < 0) {
			c->fail++;
			continue;
		}
		set_nodelay(fd);
		const unsigned char *out = pat_at(c->seed, i * 131);
		if (write_full(fd, out, MSGLEN) || read_full(fd, in, MSGLEN)) {
			c->fail++;
		} else if (memcmp(in, out, MSGLEN)) {
			c->corrupt++;
		} else {
			c->ok++;
			if (c->nlat < c->caplat)
				c->lat[c->nlat++] = now_ns() - t0;
		}
		close(fd);
	}
	return NULL;
}

static int cmd_churn(const struct opts *o)
{
	int n = o->conns;
	struct churn_thr *c = calloc(n, sizeof *c);
	pthread_t *th = calloc(n, sizeof *th);
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		c[i] = (struct churn_thr){.o = o, .end = t0 + o->seconds, .seed = (now_ns() + i * 104729ull) % PATLEN, .idx = i,
					  .caplat = 1000000};
		c[i].lat = malloc(c[i].caplat * sizeof(uint64_t));
		pthread_create(&th[i], NULL, churn_thread, &c[i]);
	}
	uint64_t ok = 0, fail = 0, corrupt = 0;
	size_t nl = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		ok += c[i].ok;
		fail += c[i].fail;
		corrupt += c[i].corrupt;
		nl += c[i].nlat;
	}
	double el = now_s() - t0;
	uint64_t *lat = malloc((nl + 1) * sizeof *lat);
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		memcpy(lat + k, c[i].lat, c[i].nlat * sizeof *lat);
		k += c[i].nlat;
	}
	bool good = corrupt == 0 && ok > 0;
	printf("{\"ok\":%s,\"conns\":%d,\"sessions\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"corrupt\":%" PRIu64
	       ",\"seconds\":%.6f,\"sessions_per_s\":%.1f,",
	       good ? "true" : "false", n, ok, fail, corrupt, el, el > 0 ? ok / el : 0.0);
	print_lat("", lat, nl);
	if (!good)
		printf(",\"error\":\"%s\"", corrupt ? "echo had wrong bytes" : "no session completed");
	printf("}\n");
	return good ? 0 : 1;
}

/* ---- time to first byte (server speaks first) ---- */
static int cmd_ttfb(const struct opts *o)
{
	uint64_t *lat = calloc(o->count, sizeof *lat);
	size_t n = 0;
	uint64_t fail = 0, corrupt = 0;
	double end = now_s() + o->max_seconds;
	for (int i = 0; i < o->count && now_s() < end; i++) {
		uint64_t t0 = now_ns();
		int fd = connect_lo(o->port, 3);
		if (fd < 0) {
			fail++;
			continue;
		}
		unsigned char in[MSGLEN];
		ssize_t r;
		do
			r = recv(fd, in, MSGLEN, 0);
		while (r < 0 && errno == EINTR);
		uint64_t t1 = now_ns();
		if (r <= 0 || (r < MSGLEN && read_full(fd, in + r, MSGLEN - r)))
			fail++;
		else if (memcmp(in, BANNER, MSGLEN))
			corrupt++;
		else
			lat[n++] = t1 - t0;
		close(fd);
	}
	bool good = corrupt == 0 && n > 0;
	printf("{\"ok\":%s,\"n\":%zu,\"failed\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",", good ? "true" : "false", n, fail,
	       corrupt);
	print_lat("", lat, n);
	if (!good)
		printf(",\"error\":\"%s\"", corrupt ? "wrong banner" : "no banner received");
	printf("}\n");
	return good ? 0 : 1;
}

/* ---- idle sessions ---- */
enum { I_NEW, I_CONNECTING, I_SENT, I_OPEN, I_SENT2, I_DONE, I_FAILED };

struct isess {
	int fd, st, got;
	unsigned char in[MSGLEN];
};

static void isess_fail(struct isess *x)
{
	if (x->fd >= 0)
		close(x->fd); /* also leaves the epoll set */
	x->fd = -1;
	x->st = I_FAILED;
}

/* drive sessions in state `from` (I_NEW or I_OPEN) through one checked echo;
 * at most `window` in flight; returns number that completed */
static size_t idle_round(struct isess *s, int n, int ep, int port, bool first, double deadline, int window,
			 uint64_t seed, uint64_t *corrupt)
{
	int next = 0, inflight = 0;
	size_t done = 0;
	int from = first ? I_NEW : I_OPEN, busy = first ? I_SENT : I_SENT2, to = first ? I_OPEN : I_DONE;
	struct epoll_event evs[256];
	while (now_s() < deadline) {
		while (inflight < window && next < n) {
			struct isess *x = &s[next];
			if (x->st != from) {
				next++;
				continue;
			}
			x->got = 0;
			if (first) {
				x->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
				if (x->fd < 0) {
					isess_fail(x);
					next++;
					continue;
				}
				struct sockaddr_in a = lo_addr(port);
				int r = connect(x->fd, (struct sockaddr *)&a, sizeof a);
				if (r && errno != EINPROGRESS) {
					isess_fail(x);
					next++;
					continue;
				}
				x->st = I_CONNECTING;
				struct epoll_event e = {.events = EPOLLOUT, .data.u32 = next};
				epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &e);
			} else {
				if (send(x->fd, pat_at(seed, (uint64_t)next * MSGLEN + 977), MSGLEN, MSG_NOSIGNAL) !=
				    MSGLEN) {
					isess_fail(x);
					next++;
					continue;
				}
				x->st = busy;
				struct epoll_event e = {.events = EPOLLIN, .data.u32 = next};
				epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &e);
			}
			inflight++;
			next++;
		}
		if (!inflight && next >= n)
			break;
		int k = epoll_wait(ep, evs, 256, 100);
		for (int j = 0; j < k; j++) {
			int i = evs[j].data.u32;
			struct isess *x = &s[i];
			if (x->st == I_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof err;
				getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err ||
				    send(x->fd, pat_at(seed, (uint64_t)i * MSGLEN), MSGLEN, MSG_NOSIGNAL) != MSGLEN) {
					isess_fail(x);
					inflight--;
					continue;
				}
				x->st = busy;
				struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
				epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &e);
			} else if (x->st == busy) {
				ssize_t r = recv(x->fd, x->in + x->got, MSGLEN - x->got, MSG_DONTWAIT);
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (r <= 0) {
					isess_fail(x);
					inflight--;
					continue;
				}
				x->got += r;
				if (x->got < MSGLEN)
					continue;
				inflight--;
				uint64_t off = (uint64_t)i * MSGLEN + (first ? 0 : 977);
				if (memcmp(x->in, pat_at(seed, off), MSGLEN)) {
					(*corrupt)++;
					isess_fail(x);
					continue;
				}
				x->st = to;
				done++;
				struct epoll_event e = {.events = 0, .data.u32 = i}; /* park */
				epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &e);
			} else if (x->st == I_OPEN || x->st == I_DONE) {
				isess_fail(x); /* parked sessions only report HUP/ERR */
			}
		}
	}
	for (int i = 0; i < n; i++) /* whatever is still in flight at the deadline failed */
		if (s[i].st == I_CONNECTING || s[i].st == busy)
			isess_fail(&s[i]);
	return done;
}

static int cmd_idle(const struct opts *o)
{
	int n = o->sessions;
	struct isess *s = calloc(n, sizeof *s);
	for (int i = 0; i < n; i++)
		s[i].fd = -1;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t seed = now_ns() % PATLEN, corrupt = 0;
	double t0 = now_s();
	size_t opened = idle_round(s, n, ep, o->port, true, t0 + o->open_seconds, 128, seed, &corrupt);
	printf("{\"phase\":\"open\",\"sessions\":%d,\"opened\":%zu,\"corrupt\":%" PRIu64 ",\"seconds\":%.3f}\n", n,
	       opened, corrupt, now_s() - t0);
	fflush(stdout);
	/* hold until a line on stdin (or EOF, or the bound) */
	double hold_end = now_s() + o->hold_max;
	while (now_s() < hold_end) {
		struct pollfd pf = {.fd = 0, .events = POLLIN};
		if (poll(&pf, 1, 200) > 0) {
			char b[64];
			(void)!read(0, b, sizeof b);
			break;
		}
	}
	/* sessions the far side closed while held */
	size_t dropped = 0;
	for (int i = 0; i < n; i++) {
		if (s[i].st != I_OPEN)
			continue;
		char c;
		ssize_t r = recv(s[i].fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
		if (r == 0 || (r < 0 && errno != EAGAIN)) {
			isess_fail(&s[i]);
			dropped++;
		}
	}
	double t1 = now_s();
	size_t alive = idle_round(s, n, ep, o->port, false, t1 + o->open_seconds, 128, seed, &corrupt);
	bool good = corrupt == 0 && opened == (size_t)n && alive == opened;
	printf("{\"phase\":\"check\",\"ok\":%s,\"sessions\":%d,\"opened\":%zu,\"alive\":%zu,\"dropped\":%zu,"
	       "\"corrupt\":%" PRIu64 ",\"seconds\":%.3f}\n",
	       good ? "true" : "false", n, opened, alive, dropped, corrupt, now_s() - t1);
	fflush(stdout);
	for (int i = 0; i < n; i++)
		if (s[i].fd >= 0)
			close(s[i].fd);
	return good ? 0 : 1;
}

/* ================================== main ================================== */
static void usage(void)
{
	fprintf(stderr, "usage: loadgen serve|bulk|pingpong|churn|ttfb|idle [options]  (see the source header)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_nofile();
	pat_init();
	struct opts o = {.streams = 1, .size = 64, .count = 10000, .warmup = 200, .conns = 4, .sessions = 10000,
			 .seconds = 5, .max_seconds = 10, .open_seconds = 60, .hold_max = 300};
	const char *cmd = argv[1];
	double serve_max = 3600;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--port"))
			o.port = atoi(v);
		else if (!strcmp(a, "--dir"))
			o.down = !strcmp(v, "down");
		else if (!strcmp(a, "--streams"))
			o.streams = atoi(v);
		else if (!strcmp(a, "--seconds"))
			o.seconds = atof(v);
		else if (!strcmp(a, "--size"))
			o.size = atoi(v);
		else if (!strcmp(a, "--count"))
			o.count = atoi(v);
		else if (!strcmp(a, "--warmup"))
			o.warmup = atoi(v);
		else if (!strcmp(a, "--max-seconds"))
			o.max_seconds = serve_max = atof(v);
		else if (!strcmp(a, "--conns"))
			o.conns = atoi(v);
		else if (!strcmp(a, "--sessions"))
			o.sessions = atoi(v);
		else if (!strcmp(a, "--open-seconds"))
			o.open_seconds = atof(v);
		else if (!strcmp(a, "--hold-max"))
			o.hold_max = atof(v);
		else
			usage();
	}
	if (!strcmp(cmd, "serve"))
		return cmd_serve(serve_max);
	if (o.port <= 0 || o.port > 65535 || o.streams < 1 || o.streams > 1024 || o.size < 1 || o.size > (int)PATEXT ||
	    o.count < 1 || o.count > 10000000 || o.warmup < 0 || o.conns < 1 || o.conns > 256 || o.sessions < 1 ||
	    o.sessions > 100000)
		usage();
	if (!strcmp(cmd, "bulk"))
		return cmd_bulk(&o);
	if (!strcmp(cmd, "pingpong"))
		return cmd_pingpong(&o);
	if (!strcmp(cmd, "churn"))
		return cmd_churn(&o);
	if (!strcmp(cmd, "ttfb"))
		return cmd_ttfb(&o);
	if (!strcmp(cmd, "idle"))
		return cmd_idle(&o);
	usage();
	return 2;
}
