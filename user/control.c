// SPDX-License-Identifier: MIT
/*
 * Control message of V2Ray's reverse proxy, via protobuf-c.  protobuf-c (>= 1.3)
 * omits proto3 fields holding their default value and packs fields in
 * field-number order, which is what Go's proto.Marshal does for this message:
 * ACTIVE with random -> 9a 06 <len> <random>, DRAIN -> 08 01 9a 06 <len> ...,
 * ACTIVE without random -> nothing.
 */
#include "control.h"

#include <errno.h>

#include "reverse.pb-c.h"

ssize_t control_encode(uint8_t *buf, size_t cap, enum control_state state,
		       const uint8_t *random, size_t random_len)
{
	V2ray__Core__App__Reverse__Control msg = V2RAY__CORE__APP__REVERSE__CONTROL__INIT;
	size_t size;

	if (random_len > CONTROL_RANDOM_MAX || (random_len && !random))
		return -EINVAL;
	if (state != CONTROL_ACTIVE && state != CONTROL_DRAIN)
		return -EINVAL;

	msg.state = (V2ray__Core__App__Reverse__Control__State)state;
	msg.random.len = random_len;
	msg.random.data = (uint8_t *)random; /* pack only reads it */

	/* protobuf-c packs without a bound: size it first. */
	size = v2ray__core__app__reverse__control__get_packed_size(&msg);
	if (size > cap)
		return -ENOSPC;
	return (ssize_t)v2ray__core__app__reverse__control__pack(&msg, buf);
}

int control_decode(const uint8_t *buf, size_t len, enum control_state *state)
{
	V2ray__Core__App__Reverse__Control *msg;

	/* An empty block is a valid, all-default message (ACTIVE). */
	msg = v2ray__core__app__reverse__control__unpack(NULL, len, buf);
	if (!msg)
		return -EBADMSG;
	*state = (enum control_state)msg->state;
	v2ray__core__app__reverse__control__free_unpacked(msg, NULL);
	return 0;
}
