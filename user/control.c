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

/* protobuf-c packs without a bound: size it first. */
static ssize_t pack(const V2ray__Core__App__Reverse__Control *msg, uint8_t *buf, size_t cap)
{
	size_t size = v2ray__core__app__reverse__control__get_packed_size(msg);

	if (size > cap)
		return -ENOSPC;
	return (ssize_t)v2ray__core__app__reverse__control__pack(msg, buf);
}

ssize_t control_encode(uint8_t *buf, size_t cap, enum control_state state,
		       const uint8_t *random, size_t random_len)
{
	V2ray__Core__App__Reverse__Control msg = V2RAY__CORE__APP__REVERSE__CONTROL__INIT;

	if (random_len > CONTROL_RANDOM_MAX || (random_len && !random))
		return -EINVAL;
	if (state != CONTROL_ACTIVE && state != CONTROL_DRAIN)
		return -EINVAL;

	msg.state = (V2ray__Core__App__Reverse__Control__State)state;
	msg.random.len = random_len;
	msg.random.data = (uint8_t *)random; /* pack only reads it */
	return pack(&msg, buf, cap);
}

ssize_t control_encode_flow(uint8_t *buf, size_t cap, enum control_state state, const uint16_t *pause,
			    size_t npause, const uint16_t *resume, size_t nresume)
{
	V2ray__Core__App__Reverse__Control msg = V2RAY__CORE__APP__REVERSE__CONTROL__INIT;
	uint32_t p[CONTROL_FLOW_MAX], r[CONTROL_FLOW_MAX];

	if (state != CONTROL_ACTIVE && state != CONTROL_DRAIN)
		return -EINVAL;
	if (npause > CONTROL_FLOW_MAX || nresume > CONTROL_FLOW_MAX || (!npause && !nresume))
		return -EINVAL;
	for (size_t i = 0; i < npause; i++)
		p[i] = pause[i];
	for (size_t i = 0; i < nresume; i++)
		r[i] = resume[i];
	msg.state = (V2ray__Core__App__Reverse__Control__State)state;
	msg.n_flow_pause = npause;
	msg.flow_pause = p;
	msg.n_flow_resume = nresume;
	msg.flow_resume = r;
	return pack(&msg, buf, cap);
}

ssize_t control_encode_revsock_hello(uint8_t *buf, size_t cap)
{
	V2ray__Core__App__Reverse__Control msg = V2RAY__CORE__APP__REVERSE__CONTROL__INIT;

	msg.revsock = 1;
	return pack(&msg, buf, cap);
}

static size_t copy_ids(uint16_t *dst, const uint32_t *src, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < CONTROL_FLOW_MAX; i++)
		if (src[i] && src[i] <= UINT16_MAX)
			dst[k++] = (uint16_t)src[i];
	return k;
}

int control_decode_msg(const uint8_t *buf, size_t len, struct control_msg *out)
{
	V2ray__Core__App__Reverse__Control *msg;

	/* An empty block is a valid, all-default message (ACTIVE). */
	msg = v2ray__core__app__reverse__control__unpack(NULL, len, buf);
	if (!msg)
		return -EBADMSG;
	out->state = (enum control_state)msg->state;
	out->revsock = msg->revsock;
	out->npause = copy_ids(out->pause, msg->flow_pause, msg->n_flow_pause);
	out->nresume = copy_ids(out->resume, msg->flow_resume, msg->n_flow_resume);
	v2ray__core__app__reverse__control__free_unpacked(msg, NULL);
	return 0;
}

int control_decode(const uint8_t *buf, size_t len, enum control_state *state)
{
	struct control_msg m;
	int ret = control_decode_msg(buf, len, &m);

	if (!ret)
		*state = m.state;
	return ret;
}
