// SPDX-License-Identifier: MIT
/*
 * Unit tests for the reverse proxy's Control message (user/control.c).
 * Golden bytes: data blocks of session 1 in shared/reference/captures.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "control.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static size_t hex2bin(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*hex) {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		assert_true(hex_nibble(hex[0]) >= 0 && hex_nibble(hex[1]) >= 0);
		assert_true(n < cap);
		out[n++] = (uint8_t)(hex_nibble(hex[0]) << 4 | hex_nibble(hex[1]));
		hex += 2;
	}
	return n;
}

/* tunnel_decoded.txt t=0.0004: the data block of the control New (ACTIVE, 51 random bytes). */
static const char first_heartbeat[] =
	"9a 06 33 c3 65 98 db 8e 4b d4 12 80 f0 5a 94 4b 4a 56 b0 5d 3e 40 77 a7 c2 "
	"9a 8a 76 a8 d2 5c 33 22 ce 2b 44 4f 79 5d d6 08 f5 de 62 8f 71 3e b4 97 fc 6a 87 76 ce";

/* drain_decoded.txt t=4.0016: Control{state: DRAIN, random: 10 bytes}. */
static const char drain[] = "08 01 9a 06 0a 77 77 22 49 c4 f3 c0 a7 ab c9";

/* More heartbeats (ACTIVE) from the captures, shortest and longest random. */
static const char *const heartbeats[] = {
	"9a 06 34 d3 e8 24 e7 da 3b cd d8 13 6d 0a 31 2f 8d 45 4b d1 94 26 72 c7 "
	"f4 a7 fb 8b 04 ad 0b c9 93 2e 35 6b e4 1f cf 8f 5e 41 69 d6 00 73 6f 48 4b b9 d9 5b dd 47 92",
	"9a 06 05 08 3e bb fe 7d",
	"9a 06 02 fe ad",
	"9a 06 08 d1 1b 6d 38 71 fd bc 5c",
	"9a 06 3e b5 5f 6c 24 6c b8 48 14 fb c0 bb 00 9c bb 95 24 65 0e 4d 12 d5 "
	"59 d9 17 bf c0 dd 2a c5 5c 9d 90 7e 8f 48 63 47 60 33 6e f4 8e 6e c8 a7 86 82 b4 e7 a9 dd 38 cc "
	"3a b2 02 a8 7b da 4d e0 d6",
};

/* Encoding the captured random bytes with the captured state gives the captured message. */
static void assert_reencodes(const char *hex, enum control_state state, size_t prefix)
{
	uint8_t want[CONTROL_MAX_ENCODED], got[CONTROL_MAX_ENCODED];
	size_t n = hex2bin(hex, want, sizeof(want));

	assert_int_equal(want[prefix + 2], n - prefix - 3);
	assert_int_equal(control_encode(got, sizeof(got), state, want + prefix + 3, n - prefix - 3),
			 (ssize_t)n);
	assert_memory_equal(got, want, n);
}

static void test_control_encodes_active_heartbeat_like_v2ray(void **state)
{
	size_t i;

	assert_reencodes(first_heartbeat, CONTROL_ACTIVE, 0);
	for (i = 0; i < ARRAY_SIZE(heartbeats); i++)
		assert_reencodes(heartbeats[i], CONTROL_ACTIVE, 0);
}

static void test_control_encodes_drain_like_v2ray(void **state)
{
	assert_reencodes(drain, CONTROL_DRAIN, 2);
}

static void test_control_encodes_active_without_random_as_nothing(void **state)
{
	uint8_t buf[CONTROL_MAX_ENCODED];

	assert_int_equal(control_encode(buf, sizeof(buf), CONTROL_ACTIVE, NULL, 0), 0);
	assert_int_equal(control_encode(NULL, 0, CONTROL_ACTIVE, NULL, 0), 0);
}

static void test_control_encodes_drain_without_random_as_state_only(void **state)
{
	uint8_t buf[CONTROL_MAX_ENCODED];

	assert_int_equal(control_encode(buf, sizeof(buf), CONTROL_DRAIN, NULL, 0), 2);
	assert_memory_equal(buf, "\x08\x01", 2);
}

static void test_control_encodes_every_random_length(void **state)
{
	uint8_t random[CONTROL_RANDOM_MAX], buf[CONTROL_MAX_ENCODED];
	size_t len;

	for (len = 0; len < sizeof(random); len++)
		random[len] = (uint8_t)(0xa0 + len);
	for (len = 1; len <= CONTROL_RANDOM_MAX; len++) {
		assert_int_equal(control_encode(buf, sizeof(buf), CONTROL_ACTIVE, random, len), 3 + len);
		assert_memory_equal(buf, "\x9a\x06", 2);
		assert_int_equal(buf[2], len);
		assert_memory_equal(buf + 3, random, len);

		assert_int_equal(control_encode(buf, sizeof(buf), CONTROL_DRAIN, random, len), 5 + len);
		assert_memory_equal(buf, "\x08\x01\x9a\x06", 4);
		assert_int_equal(buf[4], len);
		assert_memory_equal(buf + 5, random, len);
	}
	/* The largest encoding fits CONTROL_MAX_ENCODED. */
	assert_true(5 + CONTROL_RANDOM_MAX <= CONTROL_MAX_ENCODED);
}

static void test_control_rejects_random_over_63_and_unknown_state(void **state)
{
	uint8_t random[64] = { 0 }, buf[128];

	assert_int_equal(control_encode(buf, sizeof(buf), CONTROL_ACTIVE, random, 64), -EINVAL);
	assert_int_equal(control_encode(buf, sizeof(buf), CONTROL_ACTIVE, NULL, 3), -EINVAL);
	assert_int_equal(control_encode(buf, sizeof(buf), (enum control_state)2, random, 3), -EINVAL);
}

static void test_control_returns_enospc_when_buffer_small(void **state)
{
	uint8_t random[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, buf[CONTROL_MAX_ENCODED];
	size_t cap;

	memset(buf, 0x55, sizeof(buf));
	for (cap = 0; cap < 15; cap++)
		assert_int_equal(control_encode(buf, cap, CONTROL_DRAIN, random, 10), -ENOSPC);
	/* Nothing was written on failure. */
	assert_int_equal(buf[0], 0x55);
	assert_int_equal(control_encode(buf, 15, CONTROL_DRAIN, random, 10), 15);
	assert_int_equal(control_encode(buf, 1, CONTROL_DRAIN, NULL, 0), -ENOSPC);
}

static void test_control_decodes_captured_heartbeats_as_active(void **state)
{
	uint8_t buf[CONTROL_MAX_ENCODED];
	enum control_state st;
	size_t i, n;

	n = hex2bin(first_heartbeat, buf, sizeof(buf));
	st = (enum control_state)77;
	assert_int_equal(control_decode(buf, n, &st), 0);
	assert_int_equal(st, CONTROL_ACTIVE);
	for (i = 0; i < ARRAY_SIZE(heartbeats); i++) {
		n = hex2bin(heartbeats[i], buf, sizeof(buf));
		st = (enum control_state)77;
		assert_int_equal(control_decode(buf, n, &st), 0);
		assert_int_equal(st, CONTROL_ACTIVE);
	}
}

static void test_control_decodes_captured_drain(void **state)
{
	uint8_t buf[CONTROL_MAX_ENCODED];
	enum control_state st = CONTROL_ACTIVE;
	size_t n = hex2bin(drain, buf, sizeof(buf));

	assert_int_equal(control_decode(buf, n, &st), 0);
	assert_int_equal(st, CONTROL_DRAIN);
}

static void test_control_decodes_empty_message_as_active(void **state)
{
	enum control_state st = CONTROL_DRAIN;

	assert_int_equal(control_decode((const uint8_t *)"", 0, &st), 0);
	assert_int_equal(st, CONTROL_ACTIVE);
}

static void test_control_decode_ignores_unknown_fields(void **state)
{
	static const char *const msgs[] = {
		"10 05 08 01",                      /* field 2 varint */
		"08 01 a2 06 02 aa bb",             /* field 100 bytes */
		"1d 01 02 03 04 08 01",             /* field 3 fixed32 */
		"21 01 02 03 04 05 06 07 08 08 01", /* field 4 fixed64 */
		"08 01 9a 06 01 ff f8 ff ff ff 0f 00", /* field 0x1fffffff varint */
	};
	uint8_t buf[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(msgs); i++) {
		enum control_state st = CONTROL_ACTIVE;
		size_t n = hex2bin(msgs[i], buf, sizeof(buf));

		assert_int_equal(control_decode(buf, n, &st), 0);
		assert_int_equal(st, CONTROL_DRAIN);
	}
}

static void test_control_decode_reports_unknown_state_as_is(void **state)
{
	enum control_state st = CONTROL_ACTIVE;

	assert_int_equal(control_decode((const uint8_t *)"\x08\x05", 2, &st), 0);
	assert_int_equal((int)st, 5);
}

static void test_control_decode_last_state_wins(void **state)
{
	enum control_state st = CONTROL_DRAIN;

	assert_int_equal(control_decode((const uint8_t *)"\x08\x01\x08\x00", 4, &st), 0);
	assert_int_equal(st, CONTROL_ACTIVE);
	assert_int_equal(control_decode((const uint8_t *)"\x08\x00\x08\x01", 4, &st), 0);
	assert_int_equal(st, CONTROL_DRAIN);
}

/* revsock's flow-control extension: fields 1001/1002, packed (proto3), no
 * random bytes; what V2Ray's bridge sees is an ACTIVE message with unknown fields. */
static void test_control_flow_golden_bytes(void **state)
{
	uint8_t buf[64], want[64];
	const uint16_t five = 5, seven = 7, ids[3] = { 2, 300, 65535 };
	enum control_state st = CONTROL_DRAIN;
	ssize_t n;
	size_t wn;

	n = control_encode_flow(buf, sizeof(buf), CONTROL_ACTIVE, &five, 1, NULL, 0);
	wn = hex2bin("ca 3e 01 05", want, sizeof(want)); /* key (1001 << 3 | 2), len 1, 5 */
	assert_int_equal(n, wn);
	assert_memory_equal(buf, want, wn);
	n = control_encode_flow(buf, sizeof(buf), CONTROL_ACTIVE, NULL, 0, &seven, 1);
	wn = hex2bin("d2 3e 01 07", want, sizeof(want)); /* key (1002 << 3 | 2) */
	assert_int_equal(n, wn);
	assert_memory_equal(buf, want, wn);
	n = control_encode_flow(buf, sizeof(buf), CONTROL_ACTIVE, ids, 3, NULL, 0);
	wn = hex2bin("ca 3e 06 02 ac 02 ff ff 03", want, sizeof(want));
	assert_int_equal(n, wn);
	assert_memory_equal(buf, want, wn);
	/* the V2Ray-compatible decoder: an ACTIVE message */
	assert_int_equal(control_decode(buf, (size_t)n, &st), 0);
	assert_int_equal(st, CONTROL_ACTIVE);
	/* a revsock portal's hello: field 1003 varint 1 */
	n = control_encode_revsock_hello(buf, sizeof(buf));
	wn = hex2bin("d8 3e 01", want, sizeof(want));
	assert_int_equal(n, wn);
	assert_memory_equal(buf, want, wn);
	st = CONTROL_DRAIN;
	assert_int_equal(control_decode(buf, (size_t)n, &st), 0);
	assert_int_equal(st, CONTROL_ACTIVE);
	{
		struct control_msg m;

		assert_int_equal(control_decode_msg(buf, (size_t)n, &m), 0);
		assert_int_equal(m.revsock, 1);
		assert_int_equal(m.npause + m.nresume, 0);
	}
}

static void test_control_flow_round_trip_and_limits(void **state)
{
	uint16_t many[CONTROL_FLOW_MAX + 1];
	uint8_t buf[1024];
	struct control_msg m;
	ssize_t n;

	for (size_t i = 0; i <= CONTROL_FLOW_MAX; i++)
		many[i] = (uint16_t)(2 + i * 1000);
	n = control_encode_flow(buf, sizeof(buf), CONTROL_DRAIN, many, CONTROL_FLOW_MAX, many + 1, 2);
	assert_true(n > 0);
	assert_true(n < 2048); /* one V2Ray buffer */
	assert_int_equal(control_decode_msg(buf, (size_t)n, &m), 0);
	assert_int_equal(m.state, CONTROL_DRAIN);
	assert_int_equal(m.npause, CONTROL_FLOW_MAX);
	assert_memory_equal(m.pause, many, CONTROL_FLOW_MAX * sizeof(uint16_t));
	assert_int_equal(m.nresume, 2);
	assert_int_equal(m.resume[0], many[1]);
	assert_int_equal(m.resume[1], many[2]);
	assert_int_equal(control_encode_flow(buf, sizeof(buf), CONTROL_ACTIVE, many, CONTROL_FLOW_MAX + 1, NULL, 0),
			 -EINVAL);
	assert_int_equal(control_encode_flow(buf, sizeof(buf), CONTROL_ACTIVE, NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(control_encode_flow(buf, sizeof(buf), 7, many, 1, NULL, 0), -EINVAL);
	assert_int_equal(control_encode_flow(buf, 3, CONTROL_ACTIVE, many, 1, NULL, 0), -ENOSPC);
	/* a heartbeat as V2Ray sends it carries no flow ids */
	n = (ssize_t)hex2bin("9a 06 03 01 02 03", buf, sizeof(buf));
	assert_int_equal(control_decode_msg(buf, (size_t)n, &m), 0);
	assert_int_equal(m.state, CONTROL_ACTIVE);
	assert_int_equal(m.npause + m.nresume, 0);
	/* ids 0 and > 65535 are not sessions: ignored; unpacked encoding accepted too */
	n = (ssize_t)hex2bin("ca 3e 07 00 80 80 04 09 ac 02 c8 3e 0b", buf, sizeof(buf));
	assert_int_equal(control_decode_msg(buf, (size_t)n, &m), 0);
	assert_int_equal(m.npause, 3);
	assert_int_equal(m.pause[0], 9);
	assert_int_equal(m.pause[1], 300);
	assert_int_equal(m.pause[2], 11);
}

static void test_control_decode_rejects_malformed_message(void **state)
{
	static const char *const bad[] = {
		"08",                   /* key without value */
		"08 80",                /* truncated varint */
		"9a 06 05 01 02",       /* bytes longer than the message */
		"9a",                   /* truncated key */
		"0f",                   /* field 1, wire type 7 */
		"00 01",                /* field number 0 */
		"08 ff ff ff ff ff ff ff ff ff ff 01", /* varint over 10 bytes */
		/*
		 * A known field with the wrong wire type.  Deviation: Go's
		 * protobuf keeps it as an unknown field and accepts the message
		 * (state ACTIVE); protobuf-c refuses it.  A V2Ray portal never
		 * sends this, and the bridge just ignores a refused block.
		 */
		"0a 01 01",
		"98 06 01",
	};
	uint8_t buf[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		enum control_state st = (enum control_state)42;
		size_t n = hex2bin(bad[i], buf, sizeof(buf));

		assert_int_equal(control_decode(buf, n, &st), -EBADMSG);
		/* *state is untouched on error. */
		assert_int_equal((int)st, 42);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_encodes_active_heartbeat_like_v2ray),
		cmocka_unit_test(test_control_encodes_drain_like_v2ray),
		cmocka_unit_test(test_control_encodes_active_without_random_as_nothing),
		cmocka_unit_test(test_control_encodes_drain_without_random_as_state_only),
		cmocka_unit_test(test_control_encodes_every_random_length),
		cmocka_unit_test(test_control_rejects_random_over_63_and_unknown_state),
		cmocka_unit_test(test_control_returns_enospc_when_buffer_small),
		cmocka_unit_test(test_control_decodes_captured_heartbeats_as_active),
		cmocka_unit_test(test_control_decodes_captured_drain),
		cmocka_unit_test(test_control_decodes_empty_message_as_active),
		cmocka_unit_test(test_control_decode_ignores_unknown_fields),
		cmocka_unit_test(test_control_decode_reports_unknown_state_as_is),
		cmocka_unit_test(test_control_decode_last_state_wins),
		cmocka_unit_test(test_control_decode_rejects_malformed_message),
		cmocka_unit_test(test_control_flow_golden_bytes),
		cmocka_unit_test(test_control_flow_round_trip_and_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
