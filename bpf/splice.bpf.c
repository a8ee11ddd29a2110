// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * revsock kernel data path: Mux.Cool deframer for tunnel sockets.
 *
 *   revsock_parser   (sk_skb/stream_parser)  reads each frame header and decides,
 *                    in stream order, what happens to the frame:
 *                      redirect (Keep+Data of a session in REDIRECT): two
 *                        messages, header (2 + metaLen + 2) and payload
 *                        (dataLen)
 *                      pass (everything else): one message, the whole frame
 *   revsock_verdict  (sk_skb/stream_verdict) drops redirected headers, redirects
 *                    their payloads to the session's target socket (egress),
 *                    and redirects whole passed frames (and raw bytes after a
 *                    malformed header) to the INGRESS of the tunnel's mailbox,
 *                    an AF_UNIX socket in "mailboxes" that userspace reads.
 *
 * The verdict never returns SK_PASS for a tunnel socket.  On kernels with
 * tcp_bpf_strp_read_sock() (6.14+, 6.12.17+, 6.6.80+, 6.1.130+), a verdict
 * that mixes SK_PASS (data to the socket's own queue) with redirects leaves
 * tp->copied_seq = psock->copied_seq - psock->ingress_bytes, out of step with
 * the receive queue, and tcp_collapse() (start = copied_seq, under receive
 * memory pressure) hits BUG_ON.  With redirects only, ingress_bytes stays 0
 * and copied_seq is right.  A failed mailbox redirect drops the message and
 * marks the tunnel in error: userspace closes it (never a silent gap).
 *
 * strparser calls parse(k), verdict(k), parse(k+1), ... per socket, serialized,
 * and calls the parser again for the same message only while it returns 0
 * (need more bytes); the decision and its side effects happen only once the
 * header is complete.  State travels through the per-socket tunnel_state.
 * Message offsets come from the strparser control block (struct sk_skb_cb)
 * read through bpf_cast_to_kern_ctx(): on 6.x the program's skb->data is the
 * start of the TCP skb, not of the message.
 *
 * See include/revsock_bpf.h for the ordering (arm) protocol and docs/bpf.md.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "revsock_bpf.h"

#define SK_DROP 0
#define SK_PASS 1

#ifndef READ_ONCE
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Knobs, set by userspace before load. */
const volatile __u64 session_bound = REVSOCK_DEFAULT_SESSION_BOUND;
const volatile __u64 global_bound = REVSOCK_DEFAULT_GLOBAL_BOUND;

/* Sum of every slot's held_est (an upper bound of the psock backlogs of all
 * sessions); userspace subtracts a slot's share when it detaches it. */
__u64 held_total = 0;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_TUNNELS);
	__type(key, __u32);   /* tunnel id */
	__type(value, __u64); /* socket fd on update, cookie on lookup */
} tunnels SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);   /* slot */
	__type(value, __u64);
} targets SEC(".maps");

/* Per tunnel: the AF_UNIX socket userspace reads passed frames from
 * (a hash: tunnel ids are not dense). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_TUNNELS);
	__type(key, __u32);   /* tunnel id */
	__type(value, __u64);
} mailboxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct revsock_slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_SESSIONS);
	__type(key, struct revsock_session_key);
	__type(value, __u32); /* slot */
} sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_TUNNELS);
	__type(key, __u64); /* socket cookie */
	__type(value, struct revsock_tunnel_state);
} tunnel_state SEC(".maps");

/* Per tunnel (engine table index): userspace's requests to the parser. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REVSOCK_DEFAULT_MAX_TUNNELS);
	__type(key, __u32);
	__type(value, struct revsock_tunnel_ctl);
} tunnel_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct revsock_counters);
} counters SEC(".maps");

static __always_inline struct revsock_counters *ctrs(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

/* Offset of the current message inside skb, from the strparser cb. */
static __always_inline int strp_offset(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sk_skb_cb *cb = (struct sk_skb_cb *)kskb->cb;

	return BPF_CORE_READ(cb, strp.strp.offset);
}

/* Length of the current message (in the verdict), from the strparser cb. */
static __always_inline __u32 strp_len(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sk_skb_cb *cb = (struct sk_skb_cb *)kskb->cb;

	return BPF_CORE_READ(cb, strp.strp.full_len);
}

/*
 * Target socket state for the ordering and bound logic: bytes_acked and the
 * bytes queued but not acked (write_seq - snd_una).  0 on success.
 */
static __always_inline int target_tcp(__u32 slot, __u64 *acked, __u64 *outq)
{
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	int ret = -1;

	sk = bpf_map_lookup_elem(&targets, &slot);
	if (!sk)
		return -1;
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp) {
		*acked = BPF_CORE_READ(tp, bytes_acked);
		*outq = (__u32)(BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_una));
		ret = 0;
	}
	bpf_sk_release(sk);
	return ret;
}

static __always_inline int pass_frame(struct revsock_tunnel_state *ts,
				      struct revsock_counters *c, __u32 sid)
{
	ts->pass_seq++;
	ts->last_pass[sid & (REVSOCK_PASS_BUCKETS - 1)] = ts->pass_seq;
	ts->v_action = REVSOCK_PAY_PASS;
	ts->m_kind = REVSOCK_MSG_FRAME;
	if (c) {
		c->pass_frames++;
		c->pass_bytes += ts->m_len + ts->m_data_len;
	}
	return SK_PASS;
}

/* The sum over every session would pass global_bound.  A sum gone "negative"
 * (a count raced by a forced detach, given back twice) must not pause every
 * session forever: the global bound then stands aside until userspace resets
 * the sum (it does whenever no slot is attached); per-session bounds still hold. */
static __always_inline bool over_global(__u32 dl)
{
	__u64 t = READ_ONCE(held_total);

	return (__s64)t >= 0 && t + dl > global_bound;
}

/* The next payload of dl bytes would take the slot or all slots over their bound. */
static __always_inline bool over_bounds(const struct revsock_slot *s, __u32 dl)
{
	return s->held_est + dl > session_bound || over_global(dl);
}

static __always_inline int decide(struct revsock_tunnel_state *ts, struct revsock_counters *c)
{
	struct revsock_session_key key = { .tunnel_id = ts->tunnel_id, .sid = ts->m_sid };
	struct revsock_slot *s;
	__u32 *slotp, slot, mode, dl = ts->m_data_len;
	__u64 acked, outq;

	slotp = bpf_map_lookup_elem(&sessions, &key);
	if (!slotp)
		return pass_frame(ts, c, key.sid);
	slot = *slotp;
	s = bpf_map_lookup_elem(&slots, &slot);
	if (!s || s->tunnel_id != key.tunnel_id || s->sid != key.sid)
		return pass_frame(ts, c, key.sid);

	mode = READ_ONCE(s->mode);
	if (ts->m_status == REVSOCK_MUX_NEW || ts->m_status == REVSOCK_MUX_END) {
		/* The session (this id) ends here in stream order. */
		if ((mode == REVSOCK_SLOT_ARMED &&
		     __sync_val_compare_and_swap(&s->mode, REVSOCK_SLOT_ARMED, REVSOCK_SLOT_ENDED) ==
			     REVSOCK_SLOT_ARMED) ||
		    (mode == REVSOCK_SLOT_REDIRECT &&
		     __sync_val_compare_and_swap(&s->mode, REVSOCK_SLOT_REDIRECT, REVSOCK_SLOT_ENDED) ==
			     REVSOCK_SLOT_REDIRECT)) {
			if (c)
				c->ends++;
		}
		return pass_frame(ts, c, key.sid);
	}
	if (ts->m_status != REVSOCK_MUX_KEEP || !(ts->m_option & REVSOCK_MUX_OPT_DATA))
		return pass_frame(ts, c, key.sid);

	if (mode == REVSOCK_SLOT_ARMED) {
		__u32 last = ts->last_pass[key.sid & (REVSOCK_PASS_BUCKETS - 1)];

		if ((__s32)(last - READ_ONCE(s->arm_seq)) > 0) {
			/* Userspace has not read every frame of this session
			 * we passed: keep passing, it re-arms. */
			s->arm_waits++;
			if (c)
				c->arm_waits++;
			return pass_frame(ts, c, key.sid);
		}
		if (target_tcp(slot, &acked, &outq)) {
			/* Target gone (closed): stay in userspace. */
			s->arm_waits++;
			if (c)
				c->arm_waits++;
			return pass_frame(ts, c, key.sid);
		}
		/* What userspace wrote is in the target's send queue (bounded
		 * by its sndbuf, as in the userspace engine): redirects queue
		 * behind it, counted from here. */
		s->base = acked + outq - s->redir_bytes;
		s->written_seen = acked + outq;
		/* drained since the last switch: what this slot counted is gone */
		if (s->held_est) {
			__sync_fetch_and_sub(&held_total, s->held_est);
			s->held_est = 0;
		}
		if (__sync_val_compare_and_swap(&s->mode, REVSOCK_SLOT_ARMED, REVSOCK_SLOT_REDIRECT) !=
		    REVSOCK_SLOT_ARMED)
			return pass_frame(ts, c, key.sid); /* userspace stopped it */
		s->switches++;
		if (c)
			c->switches++;
		mode = REVSOCK_SLOT_REDIRECT;
	}
	if (mode != REVSOCK_SLOT_REDIRECT)
		return pass_frame(ts, c, key.sid);

	/* Byte bound on the psock backlog: bytes redirected that the target's
	 * TCP has not taken into its send queue yet = base + redir_bytes -
	 * written.  The send queue itself is bounded by the socket's sndbuf,
	 * as with userspace writes; the backlog has no bound but this one. */
	if (over_bounds(s, dl)) {
		/* the cached figure may be stale: what the target took since */
		if (!target_tcp(slot, &acked, &outq) && acked + outq > s->written_seen) {
			__u64 written = acked + outq, moved = written - s->written_seen;

			if (moved > s->held_est)
				moved = s->held_est;
			s->written_seen = written;
			s->held_est -= moved;
			__sync_fetch_and_sub(&held_total, moved);
		}
		if (over_bounds(s, dl)) {
			if (__sync_val_compare_and_swap(&s->mode, REVSOCK_SLOT_REDIRECT,
							REVSOCK_SLOT_PAUSED) == REVSOCK_SLOT_REDIRECT) {
				s->pauses++;
				if (c)
					c->pauses++;
			}
			return pass_frame(ts, c, key.sid);
		}
	}

	/* Announce the pending redirect, then re-check the mode (pairs with
	 * userspace's store of the mode followed by its load of busy). */
	__sync_fetch_and_add(&s->busy, 1);
	if (READ_ONCE(s->mode) != REVSOCK_SLOT_REDIRECT) {
		__sync_fetch_and_sub(&s->busy, 1);
		return pass_frame(ts, c, key.sid);
	}
	if (c)
		c->hdr_bytes += ts->m_len;
	if (!dl) {
		__sync_fetch_and_sub(&s->busy, 1);
		return SK_DROP; /* empty Keep: nothing to deliver */
	}
	ts->v_action = REVSOCK_PAY_REDIRECT;
	ts->v_slot = slot;
	ts->p_expect_pay = 1;
	ts->p_pay_len = dl;
	return SK_DROP;
}

SEC("sk_skb/stream_parser")
int revsock_parser(struct __sk_buff *skb)
{
	struct revsock_tunnel_state *ts;
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u8 h[6];
	__u16 dl;
	int off, avail;
	__u32 meta, hlen;

	off = strp_offset(skb);
	if (off < 0 || off > (int)skb->len)
		return -1;
	avail = skb->len - off;

	ts = bpf_map_lookup_elem(&tunnel_state, &cookie);
	if (!ts) {
		/* Not a tunnel we know: one message per skb, all passed. */
		return avail > 0 ? avail : 0;
	}
	if (ts->error || ts->released) {
		/* Raw: the rest of this skb is one message, complete at once
		 * (strparser never holds a part of it). */
		ts->m_kind = REVSOCK_MSG_RAW;
		ts->m_len = avail;
		return avail > 0 ? avail : 0;
	}
	if (ts->p_expect_pay) {
		ts->p_expect_pay = 0;
		ts->m_kind = REVSOCK_MSG_PAY;
		ts->m_len = ts->p_pay_len;
		return ts->p_pay_len;
	}
	{
		/* A frame boundary: leave for good if userspace asked to
		 * (bpf_engine_tunnel_release_begin). */
		__u32 ci = ts->ctl_index;
		struct revsock_tunnel_ctl *ctl = bpf_map_lookup_elem(&tunnel_ctl, &ci);

		if (ctl && READ_ONCE(ctl->release)) {
			ts->released = 1;
			ts->m_kind = REVSOCK_MSG_RAW;
			ts->m_len = avail;
			return avail > 0 ? avail : 0;
		}
	}
	if (avail < 2)
		return 0; /* need more */
	if (bpf_skb_load_bytes(skb, off, h, 2))
		return 0;
	meta = ((__u32)h[0] << 8) | h[1];
	/* A bad length is known from two bytes: do not wait for more (a peer
	 * that sends only this would hold the tunnel open; userspace's decoder
	 * refuses it at once too). */
	if (meta < REVSOCK_MUX_META_MIN || meta > REVSOCK_MUX_META_MAX)
		goto malformed;
	if (avail < 6)
		return 0; /* need more */
	if (bpf_skb_load_bytes(skb, off, h, 6))
		return 0;
	if (h[4] < REVSOCK_MUX_NEW || h[4] > REVSOCK_MUX_KEEPALIVE ||
	    (h[4] == REVSOCK_MUX_NEW && meta < REVSOCK_MUX_NEW_META_MIN)) {
malformed:;
		/* Malformed: everything from here goes raw to the mailbox;
		 * the tunnel is in error (userspace closes it; its decoder
		 * finds the same error in the raw bytes). */
		struct revsock_counters *c = ctrs();

		if (c)
			c->parse_errors++;
		ts->error = REVSOCK_TUNNEL_MALFORMED;
		ts->m_kind = REVSOCK_MSG_RAW;
		ts->m_len = avail;
		return avail;
	}
	hlen = 2 + meta;
	dl = 0;
	if (h[5] & REVSOCK_MUX_OPT_DATA) {
		if (avail < (int)(hlen + 2))
			return 0;
		if (bpf_skb_load_bytes(skb, off + (hlen & 0x3ff), &dl, 2))
			return 0;
		dl = bpf_ntohs(dl);
		hlen += 2;
	}
	ts->m_kind = REVSOCK_MSG_HDR;
	ts->m_len = hlen;
	ts->m_sid = ((__u32)h[2] << 8) | h[3];
	ts->m_status = h[4];
	ts->m_option = h[5];
	ts->m_data_len = dl;
	/* Decide here, in stream order, with every side effect, since the
	 * length depends on it: a passed frame is one message (header and
	 * payload together: half the skbs on the tunnel's receive path), a
	 * redirected one is a header message (dropped) and a payload message. */
	if (decide(ts, ctrs()) == SK_PASS)
		return hlen + dl;
	return hlen;
}

/* Whole frame or raw bytes -> the tunnel's mailbox (ingress). */
static __always_inline int to_mailbox(struct __sk_buff *skb, struct revsock_tunnel_state *ts,
				 struct revsock_counters *c, __u32 len)
{
	__u32 key = ts->tunnel_id;
	long ret;

	if (ts->error == REVSOCK_TUNNEL_MAILBOX)
		goto fail; /* after a gap nothing more may reach userspace */
	ret = bpf_sk_redirect_hash(skb, &mailboxes, &key, BPF_F_INGRESS);
	if (ret != SK_PASS)
		goto fail;
	/* Before in_bytes (bpf_engine_tunnel_drained reads them the other
	 * way round), and before the program returns: the message reaches
	 * the mailbox only after that. */
	__sync_fetch_and_add(&ts->mailbox_bytes, len);
	__sync_fetch_and_add(&ts->in_bytes, len);
	if (c)
		c->mailbox_bytes += len;
	return SK_PASS; /* = redirect */
fail:
	ts->error = REVSOCK_TUNNEL_MAILBOX;
	__sync_fetch_and_add(&ts->in_bytes, len);
	if (c)
		c->mailbox_fail++;
	return SK_DROP;
}

SEC("sk_skb/stream_verdict")
int revsock_verdict(struct __sk_buff *skb)
{
	struct revsock_tunnel_state *ts;
	struct revsock_counters *c = ctrs();
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct revsock_slot *s;
	__u32 slot, len;
	long ret;

	ts = bpf_map_lookup_elem(&tunnel_state, &cookie);
	if (!ts) {
		/* Never SK_PASS on a tunnel socket (docs/bpf.md). */
		if (c)
			c->no_tunnel++;
		return SK_DROP;
	}
	len = strp_len(skb);
	if (ts->m_kind == REVSOCK_MSG_HDR) {
		/* header of a redirected frame (counted by the parser) */
		__sync_fetch_and_add(&ts->in_bytes, len);
		return SK_DROP;
	}
	if (ts->m_kind != REVSOCK_MSG_PAY)
		return to_mailbox(skb, ts, c, len); /* a whole passed frame, or raw bytes */
	if (ts->v_action != REVSOCK_PAY_REDIRECT) {
		/* A payload without its redirect decision: cannot happen;
		 * never hand userspace a payload without its header. */
		ts->error = REVSOCK_TUNNEL_MAILBOX;
		__sync_fetch_and_add(&ts->in_bytes, len);
		if (c)
			c->mailbox_fail++;
		return SK_DROP;
	}

	ts->v_action = REVSOCK_PAY_PASS;
	slot = ts->v_slot;
	s = bpf_map_lookup_elem(&slots, &slot);
	ret = bpf_sk_redirect_map(skb, &targets, slot, 0);
	if (s) {
		if (ret == SK_PASS) {
			s->redir_bytes += ts->m_len;
			s->redir_frames++;
			s->held_est += ts->m_len;
			__sync_fetch_and_add(&held_total, ts->m_len);
		} else {
			s->drop_bytes += ts->m_len;
		}
		__sync_fetch_and_sub(&s->busy, 1);
	}
	if (c) {
		if (ret == SK_PASS) {
			c->redir_bytes += ts->m_len;
			c->redir_frames++;
		} else {
			c->drop_bytes += ts->m_len;
			c->drop_frames++;
		}
	}
	__sync_fetch_and_add(&ts->in_bytes, len);
	return ret;
}
