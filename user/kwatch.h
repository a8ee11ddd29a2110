/* SPDX-License-Identifier: MIT */
/*
 * Watchdog decisions for the kernel data path.  Bytes on the kernel path move
 * without userspace, so nothing in userspace notices when they stop; kpath.c
 * reads the counters every tick and these functions decide.  Pure: no I/O,
 * the caller passes what it read and the clock (milliseconds), so the tests
 * (tests/unit/test_kwatch.c) need no sleeps and no kernel.
 *
 * Three places where bytes can stop:
 *  - the tunnel's stream parser: received bytes the verdict has not handled;
 *  - the tunnel's mailbox: bytes the kernel put there that userspace has not
 *    read although nothing paused its reads (a lost epoll edge);
 *  - a session in REDIRECT: bytes the kernel holds for the target (psock
 *    backlog) while the target's send queue is empty.
 */
#ifndef REVSOCK_KWATCH_H
#define REVSOCK_KWATCH_H

#include <stdbool.h>
#include <stdint.h>

#define KWATCH_IDLE_MS 1000 /* nothing moved for this long: act (kick, read, warn) */

/* ---- parser: received vs parsed (handled by the verdict) ---- */
struct kwatch_parser {
	uint64_t received, parsed; /* at the last step */
	bool idle;                 /* bytes waiting and nothing moved since idle_since (ms) */
	uint64_t idle_since;
	uint64_t next_kick;        /* ms */
	unsigned kicks;            /* kicks since the parser last moved */
	uint64_t waited_ms;        /* out, with KWATCH_PARSER_KICK_HELPED: how long it sat */
};

enum kwatch_parser_action {
	KWATCH_PARSER_OK = 0,
	/* bytes received and not parsed, nothing moved for KWATCH_IDLE_MS (again):
	 * run the socket's data_ready.  A frame waiting for its last segment
	 * (a lossy network) is harmless to kick; a parser that missed its
	 * wakeup moves only then. */
	KWATCH_PARSER_KICK,
	/* the parser moved after a kick while no new byte arrived: the kick was
	 * what moved it (a kernel wakeup was lost): worth a warning */
	KWATCH_PARSER_KICK_HELPED,
	/* still nothing after kicks for stuck_ms: neither the peer nor the parser
	 * moves the stream; end the tunnel with an error (its sessions end, the
	 * bridge dials again) instead of holding every session on it forever */
	KWATCH_PARSER_STUCK,
};

enum kwatch_parser_action kwatch_parser_step(struct kwatch_parser *w, uint64_t now_ms, uint64_t received,
					     uint64_t parsed, uint64_t stuck_ms);

/* ---- mailbox: put by the kernel vs read by userspace ---- */
struct kwatch_mailbox {
	uint64_t read;       /* at the last step */
	bool idle;           /* bytes waiting, none read since idle_since (ms) */
	uint64_t idle_since;
};

/* true: bytes have waited KWATCH_IDLE_MS in the mailbox while userspace's
 * reads were not paused (paused: a session over its bound holds the tunnel, or
 * bytes already read wait to be processed): read the mailbox now. */
bool kwatch_mailbox_step(struct kwatch_mailbox *w, uint64_t now_ms, uint64_t in_mailbox, uint64_t read,
			 bool reads_paused);

/* ---- session in REDIRECT: what the kernel holds for the target ---- */
struct kwatch_session {
	uint64_t redir;      /* redirected bytes at the last step */
	int64_t held;
	bool idle;           /* held bytes, empty send queue, nothing moved since idle_since (ms) */
	uint64_t idle_since;
	bool clean;          /* drained since `redir`: nothing to measure until it moves */
	bool warned;
};

/* Cheap first step from the slot's counter (no syscall): true when the
 * caller should measure the backlog and call kwatch_session_step(). */
bool kwatch_session_need_measure(struct kwatch_session *w, uint64_t redir);

enum kwatch_session_action {
	KWATCH_SESSION_OK = 0,
	KWATCH_SESSION_WARN,  /* held bytes, empty send queue, nothing moved for KWATCH_IDLE_MS */
	KWATCH_SESSION_ABORT, /* ... for stall_ms: end the session with an error */
};

/* held: bytes redirected and not yet in the target's send queue; outq: the
 * send queue.  A slow consumer keeps its send queue full (outq > 0): not a
 * stall (the byte bound deals with it). */
enum kwatch_session_action kwatch_session_step(struct kwatch_session *w, uint64_t now_ms, int64_t held,
					       uint32_t outq, uint64_t stall_ms);

/* The session left REDIRECT (or is watched otherwise): forget the idle time. */
void kwatch_session_reset(struct kwatch_session *w);

#endif
