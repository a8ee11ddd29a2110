/* SPDX-License-Identifier: MIT */
/*
 * Everything the sk_skb programs (bpf/splice.bpf.c) and userspace
 * (user/engine_bpf.c, tests) share: map keys and values, slot modes, limits.
 * Defined once, here.  Included by BPF code after vmlinux.h and by userspace
 * after <linux/types.h>; uses only __u8.. __u64.
 *
 * Data path (tunnel -> target direction, see docs/bpf.md):
 *
 *   tunnel TCP socket --(SOCKHASH "tunnels", stream parser + verdict)--+
 *      parser:  reads each Mux.Cool header and decides, in stream order:
 *               Keep+Data of a session in REVSOCK_SLOT_REDIRECT -> two
 *               messages, header (dropped by the verdict) and payload
 *               (redirected to the target's egress, SOCKMAP "targets",
 *               index = slot); every other frame -> one message, "passed":
 *               redirected whole and in order to the INGRESS of the
 *               tunnel's mailbox (an AF_UNIX socket, SOCKMAP "mailboxes",
 *               index = tunnel id), which userspace reads.
 *
 * The verdict never returns SK_PASS for a tunnel socket: mixing SK_PASS with
 * redirects on a stream-parser socket corrupts tp->copied_seq on kernels with
 * tcp_bpf_strp_read_sock() (6.14+, 6.12.17+, 6.6.80+, 6.1.130+) and
 * tcp_collapse() then hits BUG_ON (docs/bpf.md).
 *
 * Ordering: the parser numbers every frame it passes ("pass sequence", per
 * tunnel, 1, 2, 3, ...) and remembers, per bucket of session ids, the last
 * sequence passed.  Userspace counts the frames it has read from the mailbox
 * (the same numbers: it reads exactly the passed frames).  A slot armed with
 * "consumed = N" switches to REDIRECT, in stream order, at the first frame of
 * its session that the verdict sees while every earlier passed frame of that
 * session (bucket) has sequence <= N, i.e. userspace has read it (and, by
 * contract, written it to the target).  Otherwise the frame is passed and
 * userspace re-arms after handling it.
 */
#ifndef REVSOCK_BPF_H
#define REVSOCK_BPF_H

/* Defaults for the maps' sizes and the const volatile knobs. */
#define REVSOCK_DEFAULT_MAX_TUNNELS 256
#define REVSOCK_DEFAULT_MAX_SESSIONS 4096
#define REVSOCK_DEFAULT_SESSION_BOUND (4ull << 20) /* psock backlog: redirected, not yet in the send queue */
#define REVSOCK_DEFAULT_GLOBAL_BOUND (256ull << 20) /* the same, summed over every session */

/* Buckets of session ids remembering the last passed frame (power of 2). */
#define REVSOCK_PASS_BUCKETS 256

/* Mux.Cool constants the parser needs (same values as user/mux.h). */
#define REVSOCK_MUX_NEW 1
#define REVSOCK_MUX_KEEP 2
#define REVSOCK_MUX_END 3
#define REVSOCK_MUX_KEEPALIVE 4
#define REVSOCK_MUX_OPT_DATA 0x01
#define REVSOCK_MUX_META_MIN 4
#define REVSOCK_MUX_META_MAX 512
#define REVSOCK_MUX_NEW_META_MIN 8

/*
 * Session slot modes.  Who may write which transition:
 *   userspace: FREE -> ARMED (attach), PASS|PAUSED|ENDED -> ARMED (re-arm),
 *              ARMED|REDIRECT|PAUSED|ENDED -> PASS (stop), * -> FREE (detach,
 *              after the session map entry is gone)
 *   verdict:   ARMED -> REDIRECT (switch, stream order), REDIRECT -> PAUSED
 *              (byte bound), ARMED|REDIRECT -> ENDED (New/End of the session
 *              seen, in stream order; the frame itself is passed)
 * Every mode change is a compare-and-swap on both sides.
 */
enum revsock_slot_mode {
	REVSOCK_SLOT_FREE = 0,
	REVSOCK_SLOT_PASS = 1,     /* attached, frames go to userspace */
	REVSOCK_SLOT_ARMED = 2,    /* waiting for userspace to catch up */
	REVSOCK_SLOT_REDIRECT = 3, /* Keep payloads go to the target */
	REVSOCK_SLOT_PAUSED = 4,   /* bound exceeded: frames go to userspace */
	REVSOCK_SLOT_ENDED = 5,    /* New/End for the id seen: frames go to userspace */
};

/*
 * One session slot: value of the BPF_F_MMAPABLE array "slots", shared with
 * userspace through mmap().  Fields say who writes them.
 */
struct revsock_slot {
	__u32 mode;        /* enum revsock_slot_mode, CAS by both sides */
	__u32 arm_seq;     /* user: tunnel frames consumed when (re-)armed */
	__u32 tunnel_id;   /* user, at attach */
	__u32 sid;         /* user, at attach */
	__u32 busy;        /* bpf: 1 while a redirect decision's payload is pending */
	__u32 pauses;      /* bpf: times the byte bound paused the session */
	__u64 redir_bytes; /* bpf: payload bytes redirected to the target, ever */
	__u64 redir_frames;/* bpf */
	__u64 base;        /* bpf: target bytes written (bytes_acked + outq) minus
			    * redir_bytes, at the last switch to REDIRECT.  Drained
			    * when acked + outq == base + redir_bytes; the psock
			    * backlog (redirected, not yet in the target's send
			    * queue) is base + redir_bytes - written, bounded by
			    * session_bound. */
	__u64 written_seen;/* bpf: target bytes written at the last bound check */
	__u64 held_est;    /* bpf (user at detach): base + redir_bytes - written_seen, this
			    * slot's share of the global held_total (>= its real backlog) */
	__u64 switches;    /* bpf: ARMED -> REDIRECT transitions */
	__u64 arm_waits;   /* bpf: frames passed while ARMED (userspace behind) */
	__u64 drop_bytes;  /* bpf: payload bytes whose redirect failed (target gone):
			    * lost, so userspace ends the session with an error */
};

/* Key of the "sessions" hash: (tunnel, Mux.Cool session id) -> slot index. */
struct revsock_session_key {
	__u32 tunnel_id;
	__u32 sid;
};

/* What the verdict does with the payload message that follows a header. */
enum revsock_pay_action {
	REVSOCK_PAY_PASS = 0,
	REVSOCK_PAY_REDIRECT = 1,
};

enum revsock_msg_kind {
	REVSOCK_MSG_HDR = 0,   /* header of a redirected frame: dropped */
	REVSOCK_MSG_PAY = 1,   /* its payload: redirected */
	REVSOCK_MSG_RAW = 2,   /* after a parse error: everything goes raw to the mailbox */
	REVSOCK_MSG_FRAME = 3, /* a whole frame (header + payload): passed to the mailbox */
};

/* Why a tunnel is in error (revsock_tunnel_state.error). */
enum revsock_tunnel_error {
	REVSOCK_TUNNEL_OK = 0,
	REVSOCK_TUNNEL_MALFORMED = 1, /* parser: malformed header; the rest goes raw to the mailbox */
	REVSOCK_TUNNEL_MAILBOX = 2,   /* verdict: redirect to the mailbox failed; bytes dropped */
};

/* Per tunnel socket state, "tunnel_state" hash keyed by the socket cookie. */
struct revsock_tunnel_state {
	__u32 tunnel_id;  /* user */
	__u32 error;      /* enum revsock_tunnel_error, set by bpf; userspace closes the tunnel */
	/* parser */
	__u32 p_expect_pay; /* next message is a payload of p_pay_len bytes */
	__u32 p_pay_len;
	/* parser -> verdict: the message just cut */
	__u32 m_kind;     /* enum revsock_msg_kind */
	__u32 m_len;
	__u32 m_sid;
	__u32 m_status;
	__u32 m_option;
	__u32 m_data_len;
	/* verdict */
	__u32 v_action;   /* enum revsock_pay_action for the pending payload */
	__u32 v_slot;
	__u32 pass_seq;   /* frames passed so far */
	__u32 pad;
	__u32 last_pass[REVSOCK_PASS_BUCKETS]; /* pass_seq of the last frame passed per sid bucket */
	__u32 ctl_index;  /* user, at creation: this tunnel's entry in "tunnel_ctl" */
	__u32 released;   /* parser: 1 once it went raw at a frame boundary because
			   * userspace asked to release the tunnel (tunnel_ctl) */
	/* verdict, atomic adds, in this order (userspace reads them in the
	 * reverse order, see bpf_engine_tunnel_drained()): */
	__u64 mailbox_bytes; /* bytes redirected into the tunnel's mailbox, ever */
	__u64 in_bytes;      /* bytes of every message the verdict handled, ever:
			      * header drops + payload redirects + mailbox */
};

/* "tunnel_ctl" ARRAY value, indexed by revsock_tunnel_state.ctl_index:
 * userspace -> parser requests (userspace writes it; the parser only reads). */
struct revsock_tunnel_ctl {
	__u32 release; /* 1: at the next frame boundary, go raw for good (the
			* engine then takes the socket out of the sockhash) */
};

/* Per-CPU counters: "counters" (one entry), `bpftool map dump pinned .../counters`. */
struct revsock_counters {
	__u64 redir_bytes;   /* payload bytes redirected to targets */
	__u64 redir_frames;
	__u64 hdr_bytes;     /* Keep headers dropped because their payload was redirected */
	__u64 pass_bytes;    /* frames passed to the mailboxes, counted by the parser (not raw bytes) */
	__u64 pass_frames;
	__u64 drop_bytes;    /* payload bytes lost: redirect failed (target gone) */
	__u64 drop_frames;
	__u64 switches;      /* ARMED -> REDIRECT */
	__u64 arm_waits;     /* frames passed while ARMED: userspace behind, or target over the bound */
	__u64 pauses;        /* REDIRECT -> PAUSED (byte bound) */
	__u64 ends;          /* ARMED/REDIRECT -> ENDED */
	__u64 parse_errors;
	__u64 no_tunnel;     /* messages on a socket without tunnel_state (dropped) */
	__u64 mailbox_fail;  /* messages the verdict could not redirect to the tunnel's
			      * mailbox (dropped, tunnel marked REVSOCK_TUNNEL_MAILBOX) */
	__u64 mailbox_bytes; /* bytes redirected to mailboxes (pass_bytes + raw) */
};

#endif
