/* SPDX-License-Identifier: MIT */
/*
 * sockmap engine: loads bpf/splice.bpf.c (skeleton linked into the binary),
 * pins its maps under /sys/fs/bpf/revsock/<instance>/, and moves Keep payloads
 * tunnel -> target in the kernel.  The target -> tunnel direction stays in
 * userspace (read + writev framing): the kernel cannot add headers to bulk skbs.
 *
 * All functions return 0 (or a documented positive value) or a negative errno.
 * Single-threaded use (the daemon's loop thread); the tests use one thread per
 * engine object too.  docs/bpf.md has the full protocol.
 *
 * Life of a tunnel:
 *   bpf_engine_tunnel_add(fd) at a frame boundary, before userspace reads any
 *   byte of it (bytes already queued go through the parser on insertion).
 *   It returns the tunnel's mailbox: an AF_UNIX socket into which the kernel
 *   redirects every frame it does not send to a target ("passed" frames),
 *   whole and in order.  Userspace reads only the mailbox, never the tunnel
 *   fd (watch the tunnel for EPOLLRDHUP/EPOLLERR only); it counts every
 *   complete frame it reads: that count ("consumed") is what arm/attach take.
 *   The verdict never passes data to the tunnel socket itself (SK_PASS): that
 *   path corrupts TCP state on current kernels (docs/bpf.md).
 *   EOF: after the peer's FIN, keep reading the mailbox until
 *   bpf_engine_tunnel_drained() == 1 (poll it: the last bytes may be header
 *   drops or redirects that wake nothing), with a deadline (an incomplete
 *   frame at EOF never drains); -EIO: close the tunnel.
 *
 * Life of a session (tunnel -> target direction):
 *   attach(tunnel, sid, target, consumed) -> slot, mode ARMED.
 *     Portal: attach before sending New (consumed = current count).
 *     Bridge: attach once the target is connected and everything userspace
 *     received for the session is written to it.
 *   The verdict switches ARMED -> REDIRECT at the first Keep of the session
 *   once userspace has consumed every earlier passed frame of it.  Until then
 *   it passes: userspace handles such a frame like an unattached one (writes
 *   the payload to the target) and calls arm(slot, consumed) again.
 *   A frame of an attached session that userspace reads means "mode is not
 *   REDIRECT": look at bpf_engine_session_mode():
 *     ARMED   not switched yet: write it, re-arm.
 *     PAUSED  the byte bound was hit (slow target): wait until
 *             bpf_engine_session_drained() == 1 (poll, e.g. every 1-10 ms),
 *             then write it; re-arm when the userspace buffer is empty.
 *     ENDED   New/End for the id: wait drained, then act on the frame
 *             (shutdown(SHUT_WR) the target on End), then detach.
 *   End can also be read in ARMED or PAUSED (the parser, which may run far
 *   ahead of the mailbox reader, saw End while the slot was PAUSED and
 *   userspace re-armed it since): handle it like ENDED.  Never in REDIRECT.
 *   detach(slot): stop (no more redirects), then drained, then remove.
 *
 * Never write to a target while its slot may redirect or is not drained:
 * user and kernel bytes would interleave.
 */
#ifndef REVSOCK_ENGINE_BPF_H
#define REVSOCK_ENGINE_BPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>
#include "revsock_bpf.h"

#define BPF_ENGINE_PIN_ROOT "/sys/fs/bpf/revsock"

struct bpf_engine;

struct bpf_engine_opts {
	const char *instance;   /* pin directory name; NULL or "" = do not pin */
	const char *pin_root;   /* NULL = BPF_ENGINE_PIN_ROOT */
	uint64_t session_bound; /* 0 = REVSOCK_DEFAULT_SESSION_BOUND (4 MiB) */
	uint64_t global_bound;  /* 0 = REVSOCK_DEFAULT_GLOBAL_BOUND (256 MiB); at least session_bound */
	uint32_t max_tunnels;   /* 0 = REVSOCK_DEFAULT_MAX_TUNNELS */
	uint32_t max_sessions;  /* 0 = REVSOCK_DEFAULT_MAX_SESSIONS (slots) */
};

/*
 * Probe by loading: SOCKMAP/SOCKHASH, sk_skb stream parser + verdict attach,
 * the bpf_cast_to_kern_ctx kfunc, AF_UNIX sockets in a sockmap, by use a
 * verdict redirecting a loopback TCP socket's bytes to the ingress of an
 * AF_UNIX socket (the mailbox path), and finally the engine's own programs.
 * 0, or -errno with the missing feature in why.
 */
int bpf_engine_probe(char *why, size_t cap);

/* Open, set knobs, load, attach the programs to the tunnels map, pin. */
int bpf_engine_open(const struct bpf_engine_opts *opts, struct bpf_engine **out,
		    char *why, size_t cap);
/* Remove the pins (clean close), detach everything, free. NULL is a no-op. */
void bpf_engine_close(struct bpf_engine *e);
/* Pin directory, "" when not pinned. */
const char *bpf_engine_pin_dir(const struct bpf_engine *e);

/* Add a connected TCP tunnel socket (frame boundary, nothing read yet).
 * *mailbox_fd: AF_UNIX socket owned by the engine (closed by tunnel_remove) from which
 * userspace reads every frame the kernel does not redirect, intact and in order
 * (nonblocking; epoll EPOLLIN works on it). Never read the tunnel fd itself. */
int bpf_engine_tunnel_add(struct bpf_engine *e, int fd, uint32_t *tunnel_id, int *mailbox_fd);
/* Remove a tunnel: its sessions are detached by force, its mailbox is closed
 * (remove it from epoll first).  Call before close(fd). */
int bpf_engine_tunnel_remove(struct bpf_engine *e, uint32_t tunnel_id);
/* For EOF on the tunnel (EPOLLRDHUP/ERR on the tunnel fd): 1 when every byte the tunnel
 * received has been through the parser and mailbox_read (bytes userspace read from the
 * mailbox so far) equals the bytes the kernel put in the mailbox; 0 not yet; -EIO if the
 * tunnel is marked in error (malformed stream or mailbox failure); -ENOENT unknown id.
 * "Through the parser": tcpi_bytes_received == bytes the verdict handled (nothing left in
 * the TCP queue, i.e. SIOCINQ == 0, nor held by strparser in an incomplete frame). */
int bpf_engine_tunnel_drained(const struct bpf_engine *e, uint32_t tunnel_id, uint64_t mailbox_read);
/* Bytes the kernel has put into the tunnel's mailbox so far (monotonic); -errno. */
int64_t bpf_engine_tunnel_mailbox_bytes(const struct bpf_engine *e, uint32_t tunnel_id);
/*
 * Watchdog view of a tunnel on the kernel path (kpath.c checks that bytes keep
 * moving): TCP payload received since the add, how much of it the verdict has
 * handled, what it put into the mailbox, the peer's FIN (1) and the tunnel's
 * error (enum revsock_tunnel_error).  received - parsed is what waits in the
 * socket or in an incomplete frame.
 */
struct bpf_engine_tunnel_progress {
	uint64_t received;
	uint64_t parsed;
	uint64_t mailbox;
	int fin;
	uint32_t error;
};
int bpf_engine_tunnel_progress(const struct bpf_engine *e, uint32_t tunnel_id,
			       struct bpf_engine_tunnel_progress *p);
/* Run the tunnel socket's sk_data_ready (the stream parser) now, as if data had
 * just arrived: for a parser that sits on received bytes (watchdog). */
int bpf_engine_tunnel_kick(const struct bpf_engine *e, uint32_t tunnel_id);
/* Leaving the kernel path for good (a tunnel that needs TCP backpressure: the pass path
 * has none, docs/bpf.md).  Stop every session of the tunnel first.  begin: the parser
 * goes raw at the next frame boundary (every later byte goes whole to the mailbox).
 * poll: 0 not yet (no boundary yet, e.g. a frame still incomplete; or the parser's last
 * messages in flight): poll again; 1 the socket is out of the sockhash (no program
 * touches it any more, its own protocol is back) and *mailbox_total is every byte the
 * kernel put in the mailbox: read the mailbox up to that many bytes, then the tunnel fd
 * itself (one byte stream, in order); -EIO the tunnel is in error (mailbox failure).
 * tunnel_remove still closes the mailbox and frees the tunnel later. */
int bpf_engine_tunnel_release_begin(struct bpf_engine *e, uint32_t tunnel_id);
int bpf_engine_tunnel_release_poll(struct bpf_engine *e, uint32_t tunnel_id, uint64_t *mailbox_total);

/*
 * Attach a session: Keep payloads of (tunnel, sid) go to target_fd (a connected
 * TCP socket, not half-closed) once the verdict switches.  consumed = frames
 * userspace has read from the tunnel so far.  -EEXIST if the session is
 * attached, -ENOSPC without a free slot, -EOPNOTSUPP for a non-TCP or
 * half-closed target, -EINVAL for sid 0 or the control session (1).
 */
int bpf_engine_session_attach(struct bpf_engine *e, uint32_t tunnel_id, uint16_t sid,
			      int target_fd, uint32_t consumed, uint32_t *slot);
/* Re-arm after userspace handled passed frames: from PASS, PAUSED or ARMED
 * (updates consumed); a no-op in REDIRECT and ENDED. */
int bpf_engine_session_arm(struct bpf_engine *e, uint32_t slot, uint32_t consumed);
/* Current mode (enum revsock_slot_mode), or -errno. */
int bpf_engine_session_mode(const struct bpf_engine *e, uint32_t slot);
/* Stop redirecting (-> PASS).  Frames after this point are passed. */
int bpf_engine_session_stop(struct bpf_engine *e, uint32_t slot);
/*
 * 1 when every byte the kernel redirected for the slot is in the target's TCP
 * write queue or acked (userspace may write to it, or shutdown(SHUT_WR)),
 * 0 not yet, -EBUSY in REDIRECT (stop it first), -errno.  In ARMED the
 * answer holds only while userspace holds an unconsumed frame of the session
 * (the verdict cannot switch then): check it when handling such a frame.
 */
int bpf_engine_session_drained(const struct bpf_engine *e, uint32_t slot);
/* Wait for drained (polling every 200 us) up to timeout_ms; 0 or -ETIMEDOUT. */
int bpf_engine_session_wait_drained(const struct bpf_engine *e, uint32_t slot, int timeout_ms);
/*
 * Detach: stop, require drained (else -EBUSY and the slot stays, in PASS),
 * remove the target from the sockmap and free the slot.  force: do not wait
 * (target dead: bytes still queued in the kernel for it are discarded).
 */
int bpf_engine_session_detach(struct bpf_engine *e, uint32_t slot, bool force);
/* Snapshot of the slot (counters, mode, base). */
int bpf_engine_session_info(const struct bpf_engine *e, uint32_t slot, struct revsock_slot *out);
/* The slot's psock backlog right now: bytes redirected that the target's TCP has not
 * taken into its send queue (base + redirected - written), or -errno. */
int64_t bpf_engine_session_held(const struct bpf_engine *e, uint32_t slot);
/* The same, with the target's send queue (SIOCOUTQ): bytes held while the send
 * queue is empty are bytes the kernel is not sending (watchdog).  0 or -errno. */
int bpf_engine_session_backlog(const struct bpf_engine *e, uint32_t slot, int64_t *held, uint32_t *outq);

/*
 * Global bound: the program keeps held_total, an upper bound of the psock
 * backlogs of every session (each slot's share is held_est); a session whose
 * next payload would take it over global_bound pauses like one over its own
 * bound.  A drained slot's share is stale: give it back when the slot is known
 * drained (the program itself does at the next switch; detach does too).
 * Only while the slot is not in REDIRECT and nothing is in flight (drained).
 */
void bpf_engine_session_release_held(struct bpf_engine *e, uint32_t slot);
uint64_t bpf_engine_held_total(const struct bpf_engine *e);

/* Sum of the per-CPU counters. */
int bpf_engine_counters(const struct bpf_engine *e, struct revsock_counters *sum);

#endif
