/* SPDX-License-Identifier: MIT */
/*
 * The reverse proxy's Control message (proto3, package v2ray.core.app.reverse),
 * encoded and decoded with protobuf-c from proto/reverse.proto.  Pure: the
 * caller supplies the random bytes.
 */
#ifndef REVSOCK_CONTROL_H
#define REVSOCK_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum control_state {
	CONTROL_ACTIVE = 0,
	CONTROL_DRAIN = 1,
};

#define CONTROL_RANDOM_MAX 63 /* V2Ray: random length uniform in 0..63 */
/* Largest heartbeat encoding: 08 01 9a 06 <len> + 63 bytes. */
#define CONTROL_MAX_ENCODED 72

/*
 * Encode Control{state, random[0..random_len)} into buf.  Returns the encoded
 * length (0 is possible: an ACTIVE message with no random bytes is empty),
 * -EINVAL when random_len > CONTROL_RANDOM_MAX, -ENOSPC when cap is too small.
 */
ssize_t control_encode(uint8_t *buf, size_t cap, enum control_state state,
		       const uint8_t *random, size_t random_len);

/*
 * Decode one Control message.  Unknown fields are ignored (proto3); an unknown
 * state value is reported as is.  Returns 0 and sets *state, or -EBADMSG.
 */
int control_decode(const uint8_t *buf, size_t len, enum control_state *state);

/*
 * revsock's flow-control extension (proto/reverse.proto, fields 1001/1002):
 * session ids whose bridge -> portal direction should stop / read again.
 */
#define CONTROL_FLOW_MAX 64 /* ids per list in one message (keeps it < 2048 B: one V2Ray buffer) */

struct control_msg {
	enum control_state state;
	uint32_t revsock; /* field 1003: the sender is a revsock portal that reads flow messages (1) */
	uint16_t pause[CONTROL_FLOW_MAX], resume[CONTROL_FLOW_MAX];
	size_t npause, nresume;
};

/* Encode Control{state, flow_pause, flow_resume} (no random bytes).  Returns the
 * length, -EINVAL (bad state, a list over CONTROL_FLOW_MAX, both lists empty),
 * -ENOSPC. */
ssize_t control_encode_flow(uint8_t *buf, size_t cap, enum control_state state, const uint16_t *pause,
			    size_t npause, const uint16_t *resume, size_t nresume);

/* Encode Control{revsock: 1}: a revsock portal's hello on its new control session. */
ssize_t control_encode_revsock_hello(uint8_t *buf, size_t cap);

/* Decode with the extension: ids that are 0 or over 65535 are ignored, lists
 * longer than CONTROL_FLOW_MAX are cut there.  0 or -EBADMSG. */
int control_decode_msg(const uint8_t *buf, size_t len, struct control_msg *out);

#endif
