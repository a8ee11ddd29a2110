/* SPDX-License-Identifier: MIT */
/*
 * The kernel path: glue between the daemon's tunnels/sessions (tunnel.c) and
 * the sockmap engine (engine_bpf.c).  With it, Keep payloads tunnel -> local
 * socket are moved by the kernel; everything else still reaches tunnel.c as
 * frames, read from the tunnel's mailbox instead of the tunnel socket.
 *
 * The rules it enforces (docs/bpf.md has the why):
 *  - a session is attached (or re-armed) only when everything userspace read
 *    for it has been written to its socket;
 *  - userspace never writes to a session's socket while the kernel may hold
 *    bytes for it (PAUSED, End): it buffers and polls "drained" first;
 *  - End, EOF and close happen only after drained, or the session is ended
 *    with an error;
 *  - a tunnel on the kernel path cannot really be paused (strparser keeps
 *    reading it into the mailbox): a paused tunnel is held while its mailbox
 *    backlog stays under sessionBufferBytes, then leaves the kernel path and
 *    the userspace engine's flow control (pause the tunnel, stall timer)
 *    applies.
 */
#ifndef REVSOCK_KPATH_H
#define REVSOCK_KPATH_H

#include <stdbool.h>
#include <stddef.h>

struct proxy;
struct tunnel;
struct session;

/* Open the engine for a run (datapath sockmap, or auto when it prefers the kernel). */
int kpath_open(struct proxy *px, char *why, size_t cap);
void kpath_close(struct proxy *px);

/* Tunnel connected, nothing read yet: put it on the kernel path (or leave it in userspace). */
void kpath_tunnel_start(struct tunnel *t);
/* Before close(t->io.fd). */
void kpath_tunnel_stop(struct tunnel *t);
/* The tunnel's peer closed (or errored): close once the kernel handed us every frame. */
void kpath_tunnel_peer_closed(struct tunnel *t);
/* The tunnel needs backpressure: take it off the kernel path (kpath.c says how). */
void kpath_tunnel_demote(struct tunnel *t);
/* A session over its bound paused the tunnel's reads: while the kernel keeps the
 * mailbox backlog under the bound (a session draining its in-flight bytes), stay on
 * the kernel path; beyond it, demote.  _unhold when the tunnel resumes. */
void kpath_tunnel_hold(struct tunnel *t);
void kpath_tunnel_unhold(struct tunnel *t);
/* Mailbox read to EAGAIN: 1 when the tunnel has left the kernel path and every
 * byte of the mailbox is read (read the socket from now on), else 0. */
int kpath_mailbox_empty(struct tunnel *t);

/* Everything read for the session is written to its socket: attach or re-arm. */
void kpath_session_settled(struct session *s);
/* A Keep frame of s reached userspace: false = its payload must wait (kernel bytes in flight). */
bool kpath_session_may_write(struct session *s);
/* The peer ended s gracefully: deliver after the kernel's bytes, then close. */
void kpath_session_peer_end(struct session *s);
/* Session going away: release its slot (force: bytes the kernel still holds are dropped). */
void kpath_session_release(struct session *s, bool force);

#endif
