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
/* Largest encoding: 08 01 9a 06 <len> + 63 bytes. */
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

#endif
