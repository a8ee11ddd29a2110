/* SPDX-License-Identifier: MIT */
/*
 * The running proxy: one process, one event loop, the objects that own
 * sockets.  Decisions are taken in policy.c / router.c; this layer carries
 * them out.
 *
 *   inbound (dokodemo-door)  --user-->  portal --picks--> tunnel (mux client)
 *   tunnel (mux server) --New--> bridge --routes--> outbound (freedom) --> service
 */
#ifndef REVSOCK_PROXY_H
#define REVSOCK_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <uthash.h>

#include "config.h"
#include "kwatch.h"
#include "loop.h"
#include "mux.h"

struct proxy;
struct tunnel;
struct session;
struct bpf_engine;

#define GATHER_MAX 64 /* payload pieces per sendmsg toward a local socket */

/* A byte queue of heap chunks; frames are never split across owners. */
struct chunk {
	struct chunk *next;
	uint32_t off, len;
	uint8_t data[];
};

struct chunkq {
	struct chunk *head, *tail;
	size_t bytes;
};

enum tunnel_role {
	TUNNEL_PORTAL, /* we are the mux client: we open sessions */
	TUNNEL_BRIDGE, /* we are the mux server: the portal opens sessions */
};

/* A portal's or a bridge's tunnels, in order of arrival (the picker's tie-break). */
struct tunnel_list {
	struct tunnel **v;
	size_t n, cap;
};

struct portal {
	struct proxy *px;
	const struct config_reverse_entry *cfg;
	struct tunnel_list tunnels;
};

struct bridge {
	struct proxy *px;
	const struct config_reverse_entry *cfg;
	struct tunnel_list tunnels;
	struct loop_timer monitor;
	uint64_t last_dial_ms;
};

enum session_kind {
	SESSION_TCP,         /* a stream socket of our own */
	SESSION_UDP,         /* bridge: a connected UDP socket of our own */
	SESSION_UDP_INBOUND, /* portal: a peer address on a shared inbound UDP socket */
};

struct udp_inbound;

struct session {
	UT_hash_handle hh; /* tunnel->sessions, by id */
	uint16_t id;
	struct tunnel *t;
	enum session_kind kind;
	struct loop_io io;     /* fd < 0 for SESSION_UDP_INBOUND */
	uint64_t serial;       /* for logs */

	/* SESSION_UDP_INBOUND */
	struct udp_inbound *uin;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	UT_hash_handle hh_peer; /* uin->sessions, by peer address */
	struct loop_timer udp_idle;

	bool connecting;       /* bridge: dial in progress */
	bool local_readable;   /* an edge said readable and we have not hit EAGAIN */
	bool local_eof;        /* no more reads from the local socket */
	bool in_waitq;
	struct session *wait_next;
	bool close_after_flush;/* graceful End: deliver what is buffered, then close */
	bool dead;             /* removed from everything, free pending */

	struct chunkq to_local;/* bytes from the tunnel not yet written locally */
	bool blocking_tunnel;  /* to_local over the bound: the tunnel's reads wait */
	bool flow_paused;      /* we asked the peer to stop reading this session's socket (Control flow_pause) */
	bool peer_paused;      /* the peer asked us to stop reading this session's socket */
	struct loop_timer stall;
	uint64_t delivered;    /* bytes written to the local socket */
	uint64_t sent;         /* bytes framed toward the tunnel */

	/* kernel path (kpath.c) */
	bool kattached;        /* has a slot in the engine */
	bool kwait;            /* the kernel may hold bytes for the socket: do not write */
	uint32_t kslot;
	struct loop_timer kdrain; /* polls "drained" while kwait */
	uint64_t kwait_deadline;
	int64_t kheld_last;
	struct kwatch_session kwatch; /* bytes held in the kernel must move (kwatch.h) */
};

struct tunnel {
	struct loop_io io;
	struct proxy *px;
	enum tunnel_role role;
	uint64_t id;
	char peer[80];
	struct portal *portal; /* TUNNEL_PORTAL */
	struct bridge *bridge; /* TUNNEL_BRIDGE */
	struct tunnel *all_next, *all_prev;

	bool connecting;       /* bridge: dial in progress */
	bool closed;
	bool closing;          /* flush the output, then close */
	bool failed;           /* error: close at the end of this batch */
	bool close_scheduled;
	char close_reason[96];
	bool draining;         /* portal: DRAIN sent; bridge: DRAIN received */
	bool suspended;        /* link trouble: no new sessions (netlink) */
	bool control_open;     /* the control session (id 1) is live */
	bool peer_revsock;     /* the peer said it is revsock (Control revsock): it reads and honours flow messages */

	/* receive side */
	struct mux_decoder dec;
	/* Bytes read but not yet decoded: px->rbuf while a read is handled;
	 * copied to the heap (rbuf_own) only when the tunnel pauses with bytes
	 * left, so an idle tunnel holds no read buffer. */
	uint8_t *rbuf;
	size_t rbuf_off, rbuf_len;
	bool rbuf_own;
	bool rx_more;          /* the socket may hold unread bytes (edge already consumed) */
	bool rx_scheduled;
	struct session *rx_blocked_by;
	struct session *cur;   /* session of the frame being decoded, or NULL */
	uint8_t cur_kind;      /* CUR_* in tunnel.c */
	uint8_t pkt[MUX_UDP_DATA_MAX]; /* a datagram or Control message being gathered */
	size_t pkt_len;
	uint64_t last_rx_ms;
	uint64_t rx_bytes, tx_bytes;

	/* send side */
	struct chunkq out;
	struct session *wait_head, *wait_tail; /* sessions with data, waiting for room */
	bool wait_scheduled;

	/* sessions */
	struct session *sessions; /* uthash by id */
	unsigned live_sessions;   /* user sessions, control excluded */
	uint32_t total_sessions;  /* portal: ids ever allocated, control included */
	uint16_t next_id;

	struct loop_timer heartbeat; /* portal */
	struct loop_timer idle;      /* bridge */

	/* kernel path (kpath.c): frames come from the mailbox, not the socket */
	bool kpath;
	bool kpeer_closed;
	uint32_t kid;
	struct loop_io mbox;
	uint64_t mbox_read;          /* bytes read from the mailbox */
	uint32_t kframes;            /* complete frames read from it ("consumed") */
	struct loop_timer keof;      /* polls "drained" after the peer closed */
	uint64_t keof_deadline;
	/* leaving the kernel path (backpressure needs a tunnel we can stop reading) */
	bool kdemote;                /* asked the parser to stop at a frame boundary */
	bool kdetached;              /* parser gone: read the mailbox up to kmbox_total, then the socket */
	bool kmbox_open;             /* the mailbox is registered in the loop */
	uint64_t kmbox_total;
	struct loop_timer kdemote_timer;
	struct loop_timer khold;     /* paused on the kernel path: watches the mailbox backlog */
	uint64_t kafter_until;       /* after the hand-back: watch the mailbox until then */
	bool klost_wakeup;           /* the socket held bytes epoll did not report (logged once) */
	unsigned kunread_polls;      /* consecutive polls that found the socket's bytes still unread */
	uint64_t kafter_rx_seen;     /* rx_bytes at the last of those polls */
	/* watchdog on the kernel path: the parser and the mailbox must keep moving (kwatch.h) */
	struct loop_timer kwatch;
	struct kwatch_parser kw_parser;
	struct kwatch_mailbox kw_mbox;
};

/* A portal-side UDP dokodemo-door socket: one session per client address. */
struct udp_inbound {
	struct loop_io io;
	struct proxy *px;
	const struct config_inbound *cfg;
	struct session *sessions; /* by peer address (hh_peer) */
};

struct tcp_inbound {
	struct loop_io io;
	struct proxy *px;
	const struct config_inbound *cfg;
};

struct proxy {
	struct loop *loop;
	const struct config *cfg;
	struct portal *portals;
	size_t n_portals;
	struct bridge *bridges;
	size_t n_bridges;
	struct tcp_inbound *tcp_in;
	size_t n_tcp_in;
	struct udp_inbound *udp_in;
	size_t n_udp_in;
	struct tunnel *all_tunnels;
	uint64_t next_tunnel_id;
	uint64_t next_session_serial;
	uint8_t *scratch;       /* UP_FRAMES frames: (header + MUX_STREAM_DATA_MAX) each */
	uint8_t *rbuf;          /* TUNNEL_RBUF_SIZE: every tunnel reads into it */
	/* Payloads of consecutive Keep frames of one session, pointing into
	 * rbuf, written with one sendmsg (flushed before tunnel_process returns). */
	struct session *gather_s;
	struct iovec gather_iov[GATHER_MAX];
	int gather_n;
	size_t gather_len;
	struct loop_io sig_io;
	struct loop_timer stop_timer;
	bool stopping;
	struct linkwatch *linkwatch; /* NULL: netlink unavailable */
	struct bpf_engine *engine;   /* NULL: userspace data path */
};

/* Framing toward the tunnel: frames read from a local socket per readv. */
#define UP_FRAMES 4
#define UP_FRAME_SPAN (MUX_KEEP_HDR_LEN + MUX_STREAM_DATA_MAX)

/* Bounds of the send side of a tunnel. */
#define TUNNEL_RBUF_SIZE (256 * 1024)
#define TUNNEL_OUT_HIGH (1024 * 1024)      /* stop reading local sockets above */
#define TUNNEL_OUT_LOW (256 * 1024)        /* resume below */
#define TUNNEL_OUT_HARD (64 * 1024 * 1024) /* a peer that never reads: close */

/* proxy.c */
int proxy_start(struct proxy *px, struct loop *l, const struct config *cfg);
void proxy_stop(struct proxy *px); /* stop accepting, end sessions, exit the loop soon */
void proxy_free(struct proxy *px);

/* tunnel.c: the data path of one tunnel connection */
struct tunnel *tunnel_new(struct proxy *px, int fd, enum tunnel_role role, bool connecting, const char *peer);
void tunnel_close(struct tunnel *t, const char *reason);
void tunnel_finish(struct tunnel *t, const char *reason); /* flush, then close */
int tunnel_list_add(struct tunnel_list *l, struct tunnel *t);
void tunnel_list_remove(struct tunnel_list *l, const struct tunnel *t);
int tunnel_send_frame(struct tunnel *t, const struct mux_frame *f, const uint8_t *data, size_t len);
struct session *tunnel_open_session(struct tunnel *t, enum session_kind kind, int fd,
				    const struct mux_target *target, const uint8_t *first, size_t first_len);
struct session *session_find(struct tunnel *t, uint16_t id);
void session_send_datagram(struct session *s, const uint8_t *data, size_t len);
void session_end(struct session *s, bool error, const char *why);
void session_local_connected(struct session *s);
void session_touch_udp(struct session *s);
int session_attach_fd(struct session *s, int fd, bool connecting);
struct session *session_new_bridge(struct tunnel *t, uint16_t id, enum session_kind kind);
void chunkq_clear(struct chunkq *q);
void session_abort(struct session *s);  /* End+Error to the peer, RST the local socket */
void session_note_progress(struct session *s); /* bytes reached the local socket (kernel path): the stall timer restarts */
void session_peer_flow(struct session *s, bool pause); /* the peer's flow_pause / flow_resume */
void session_flush(struct session *s);  /* write what is buffered toward the local socket */
void tunnel_rx_ready(struct tunnel *t); /* the tunnel (or its mailbox) may have bytes */

/* portal.c */
void portal_tunnel_accepted(struct portal *p, int fd, const char *peer);
void portal_user_accepted(struct portal *p, int fd, const struct mux_target *target);
struct session *portal_udp_session(struct portal *p, struct udp_inbound *uin,
				   const struct sockaddr_storage *peer, socklen_t peer_len,
				   const struct mux_target *target, const uint8_t *first, size_t len);
void portal_tunnel_start(struct tunnel *t);
void portal_tunnel_gone(struct tunnel *t);
void portal_session_gone(struct tunnel *t);
void portal_control_block(struct tunnel *t, const uint8_t *data, size_t len);
/* Per-session flow control (revsock's Control extension, tunnel.c):
 * send flow_pause / flow_resume for one session: 0, or -errno (no control session, or a peer
 * that would not read it); apply a Control message from the peer (its hello, its lists);
 * end it all (control session closing). */
struct control_msg;
int tunnel_send_flow(struct tunnel *t, uint16_t sid, bool pause);
void tunnel_peer_flow(struct tunnel *t, const struct control_msg *m);
void tunnel_flow_end(struct tunnel *t);
void tunnel_send_revsock_hello(struct tunnel *t); /* Control{revsock: 1} on the control session */

/* bridge.c */
int bridge_start(struct bridge *b);
void bridge_tunnel_connected(struct tunnel *t);
void bridge_tunnel_gone(struct tunnel *t);
void bridge_new_session(struct tunnel *t, const struct mux_frame *f);
void bridge_control_block(struct tunnel *t, const uint8_t *data, size_t len);
void bridge_monitor_now(struct bridge *b); /* soon: at most one dial per 0.5 s */
void bridge_dial_now(struct bridge *b);    /* now: a route to the portal appeared */

/* inbound.c */
int inbounds_start(struct proxy *px);
void inbounds_stop(struct proxy *px);

/* outbound.c: freedom / blackhole.  The callback gets a connected (or
 * connecting, *connecting set) fd or a negative errno. */
typedef void (*dial_fn)(struct proxy *px, void *ctx, int fd, bool connecting, int err);
int outbound_dial(struct proxy *px, const struct config_outbound *ob, const struct mux_target *target,
		  dial_fn cb, void *ctx);
void outbound_cancel(struct proxy *px, void *ctx);

/* sockets */
int sock_set_common(int fd, bool tcp);
void sock_reset_close(int fd);
const char *sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap);

#endif
