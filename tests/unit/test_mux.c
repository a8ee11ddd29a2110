// SPDX-License-Identifier: MIT
/*
 * Unit tests for the Mux.Cool codec (user/mux.c).  Golden bytes come from real
 * V2Ray 4.34 captures (shared/reference/captures/<name>_decoded.txt), embedded here
 * as hex so the test does not depend on files outside the repository.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mux.h"

struct golden_seg {
	const char *when;
	int conn;
	bool p2b; /* portal -> bridge */
	const char *hex;
};

/* tunnel_segs (generated from shared/reference/captures/tunnel_decoded.txt) */
static const struct golden_seg tunnel_segs[] = {
	{ "0.0004", 42706, true,
	  "00 23 00 01 01 01 02 00 00 02 1a 72 65 76 65 72 73 65 2e 69 6e 74 65 72 "
	  "6e 61 6c 2e 76 32 72 61 79 2e 63 6f 6d 00 36 9a 06 33 c3 65 98 db 8e 4b "
	  "d4 12 80 f0 5a 94 4b 4a 56 b0 5d 3e 40 77 a7 c2 9a 8a 76 a8 d2 5c 33 22 "
	  "ce 2b 44 4f 79 5d d6 08 f5 de 62 8f 71 3e b4 97 fc 6a 87 76 ce" },
	{ "2.0006", 42706, true,
	  "00 04 00 01 02 01 00 37 9a 06 34 d3 e8 24 e7 da 3b cd d8 13 6d 0a 31 2f "
	  "8d 45 4b d1 94 26 72 c7 f4 a7 fb 8b 04 ad 0b c9 93 2e 35 6b e4 1f cf 8f "
	  "5e 41 69 d6 00 73 6f 48 4b b9 d9 5b dd 47 92" },
	{ "4.0008", 42706, true,
	  "00 04 00 01 02 01 00 31 9a 06 2e b3 12 ff 0a 63 29 6b 08 9d a2 7d d8 29 "
	  "f7 db 70 38 98 25 2f 32 c4 e2 56 26 bc 27 b9 c1 fb d4 b3 8a d4 41 b3 42 "
	  "b1 60 2c c2 e0 13 14 85 5a" },
	{ "5.1035", 42706, true,
	  "00 0c 00 02 01 01 01 69 7f 01 7f 00 00 01 00 0c 68 65 6c 6c 6f 2d 76 32 "
	  "72 61 79 0a" },
	{ "5.1043", 42706, false,
	  "00 04 00 02 02 01 00 0c 68 65 6c 6c 6f 2d 76 32 72 61 79 0a" },
	{ "5.1046", 42706, true,
	  "00 04 00 02 03 00" },
	{ "6.0014", 42706, true,
	  "00 04 00 01 02 01 00 26 9a 06 23 ae f6 7e c4 fa 74 70 6a 03 c2 50 eb cc "
	  "15 c9 7e fe 40 e1 49 bc ef 91 97 70 13 81 6f 08 c8 be 18 22 d7 85" },
	{ "6.1058", 42706, false,
	  "00 04 00 02 03 02" },
	{ "6.2062", 42706, true,
	  "00 0c 00 03 01 00 01 69 7f 01 7f 00 00 01" },
	{ "6.4052", 42706, true,
	  "00 04 00 03 02 01 00 04 70 69 6e 67" },
	{ "6.4055", 42706, false,
	  "00 04 00 03 02 01 00 04 70 69 6e 67" },
	{ "6.4082", 42706, true,
	  "00 04 00 03 03 00" },
	{ "7.4096", 42706, false,
	  "00 04 00 03 03 02" },
	{ "8.0025", 42706, true,
	  "00 04 00 01 02 01 00 3b 9a 06 38 de a2 87 11 22 9d 9b d4 21 f9 94 31 f4 "
	  "26 43 7c 27 24 85 4b b1 f1 76 f1 37 d7 f4 e6 d0 97 37 e8 fc ac c3 cd b9 "
	  "3a 65 7b 79 f0 86 5a 09 05 f7 7b 30 96 74 27 95 8b 72 3c" },
};

/* udp_err_segs (generated from shared/reference/captures/udp_err_decoded.txt) */
static const struct golden_seg udp_err_segs[] = {
	{ "0.0000", 36120, true,
	  "00 04 00 01 02 01 00 08 9a 06 05 08 3e bb fe 7d" },
	{ "0.5396", 36120, true,
	  "00 0c 00 02 01 01 02 69 80 01 7f 00 00 01 00 07 75 64 70 2d 6f 6e 65" },
	{ "0.5410", 36120, false,
	  "00 04 00 02 02 01 00 07 75 64 70 2d 6f 6e 65" },
	{ "0.5438", 36120, true,
	  "00 04 00 02 02 01 00 07 75 64 70 2d 74 77 6f" },
	{ "0.5440", 36120, false,
	  "00 04 00 02 02 01 00 07 75 64 70 2d 74 77 6f" },
	{ "1.0516", 36120, true,
	  "00 0c 00 03 01 01 01 6d 5f 01 7f 00 00 01 00 0c 74 6f 2d 64 65 61 64 2d "
	  "70 6f 72 74" },
	{ "2.0013", 36120, true,
	  "00 04 00 01 02 01 00 0b 9a 06 08 d1 1b 6d 38 71 fd bc 5c" },
	{ "2.0727", 36120, false,
	  "00 04 00 03 03 02" },
	{ "2.0763", 36120, true,
	  "00 04 00 03 03 02" },
	{ "4.0019", 36120, true,
	  "00 04 00 01 02 01 00 3c 9a 06 39 a5 91 b0 94 ac 39 5f 2f 6f 0c 28 13 6c "
	  "0d b0 24 9c 3b c9 62 4e 70 10 0c 23 29 90 f1 78 96 7c 01 b9 53 09 2b 8c "
	  "1d 1a 09 4e af b8 7a 77 49 b3 89 e4 f3 2b 06 8c 7c c3 ee 5f" },
	{ "6.0020", 36120, true,
	  "00 04 00 01 02 01 00 24 9a 06 21 7b a9 4e f5 7b 73 41 af 31 d1 ed b4 a7 "
	  "c1 c0 cc 2f 8b 4a b6 cf f7 81 1e a6 a0 69 4d 4c e9 d9 b9 33" },
	{ "8.0029", 36120, true,
	  "00 04 00 01 02 01 00 24 9a 06 21 76 03 5d f8 3a 1f 2b c7 f1 8a 2f 32 c9 "
	  "d5 ab ad a8 bf 9d 89 fa 26 26 de 54 55 b1 97 f3 f5 36 5e 65" },
	{ "10.0037", 36120, true,
	  "00 04 00 01 02 01 00 38 9a 06 35 74 4f b6 4f 16 95 ba ae 48 58 53 79 4a "
	  "5f ed 9c 00 54 35 42 36 0a bb ce 1d 37 4d b3 f8 ed 30 57 fc 12 44 e5 c4 "
	  "43 37 6d 30 9e 7b c1 d9 87 e6 c2 31 77 28 eb d4" },
	{ "12.0041", 36120, true,
	  "00 04 00 01 02 01 00 24 9a 06 21 46 0d 71 a0 c4 d0 f6 5f 04 8a 3b e1 f9 "
	  "65 42 12 28 75 04 22 ab 5f 8e 5f 2b 8f 63 09 c3 88 6d 74 c4" },
	{ "14.0062", 36120, true,
	  "00 04 00 01 02 01 00 19 9a 06 16 5c f4 c3 50 f1 4e f3 fb 52 62 fb 64 9f "
	  "ba 9e 15 dc 0b a8 e2 89 1e" },
	{ "16.0068", 36120, true,
	  "00 04 00 01 02 01 00 2d 9a 06 2a eb 71 6a 74 3f c9 85 7a 2e d1 39 b5 2f "
	  "83 b5 e0 8b 8c ad d3 12 70 97 35 4c fa e3 3c 11 12 b2 d9 4f e4 dc 83 8e "
	  "8f 45 ec 63 82" },
	{ "16.5412", 36120, true,
	  "00 04 00 02 03 00" },
	{ "17.5438", 36120, false,
	  "00 04 00 02 03 02" },
	{ "18.0071", 36120, true,
	  "00 04 00 01 02 01 00 05 9a 06 02 fe ad" },
};

/* drain_segs (generated from shared/reference/captures/drain_decoded.txt) */
static const struct golden_seg drain_segs[] = {
	{ "0.0009", 52706, true,
	  "00 23 00 01 01 01 02 00 00 02 1a 72 65 76 65 72 73 65 2e 69 6e 74 65 72 "
	  "6e 61 6c 2e 76 32 72 61 79 2e 63 6f 6d 00 14 9a 06 11 be 41 cd 01 75 97 "
	  "8b e9 ef 53 55 df c6 d3 f7 bc d4" },
	{ "2.0012", 52706, true,
	  "00 04 00 01 02 01 00 1d 9a 06 1a cd 6a 63 ed df 48 3a 9c a1 9a 2e 24 9a "
	  "9c 52 a8 fb cc 0e 84 b4 f7 d1 97 de 47" },
	{ "4.0016", 52706, true,
	  "00 04 00 01 02 01 00 0f 08 01 9a 06 0a 77 77 22 49 c4 f3 c0 a7 ab c9" },
	{ "4.0016", 52706, true,
	  "00 04 00 01 03 00" },
	{ "4.0032", 53606, true,
	  "00 23 00 01 01 01 02 00 00 02 1a 72 65 76 65 72 73 65 2e 69 6e 74 65 72 "
	  "6e 61 6c 2e 76 32 72 61 79 2e 63 6f 6d 00 1b 9a 06 18 e9 01 38 2f 47 4e "
	  "94 9c 9d 11 35 fb 11 22 9f 09 63 f1 24 b2 10 b9 a7 40" },
	{ "6.0040", 53606, true,
	  "00 04 00 01 02 01 00 41 9a 06 3e b5 5f 6c 24 6c b8 48 14 fb c0 bb 00 9c "
	  "bb 95 24 65 0e 4d 12 d5 59 d9 17 bf c0 dd 2a c5 5c 9d 90 7e 8f 48 63 47 "
	  "60 33 6e f4 8e 6e c8 a7 86 82 b4 e7 a9 dd 38 cc 3a b2 02 a8 7b da 4d e0 "
	  "d6" },
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "00 04 0a" -> bytes; white space is ignored, anything else is a test bug. */
static size_t hex2bin(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*hex) {
		int hi, lo;

		if (*hex == ' ' || *hex == '\n' || *hex == '|') {
			hex++;
			continue;
		}
		hi = hex_nibble(hex[0]);
		lo = hex_nibble(hex[1]);
		assert_true(hi >= 0 && lo >= 0);
		assert_true(n < cap);
		out[n++] = (uint8_t)(hi << 4 | lo);
		hex += 2;
	}
	return n;
}

/* Concatenate the segments of one direction (and one connection, if conn != 0). */
static size_t golden_stream(const struct golden_seg *segs, size_t nsegs, bool p2b, int conn,
			    uint8_t *out, size_t cap)
{
	size_t i, n = 0;

	for (i = 0; i < nsegs; i++) {
		if (segs[i].p2b != p2b || (conn && segs[i].conn != conn))
			continue;
		n += hex2bin(segs[i].hex, out + n, cap - n);
	}
	return n;
}

/*
 * What a decoder produced, normalised so that it does not depend on how the
 * input was split: consecutive DATA events are merged into one record.
 */
struct trace_rec {
	enum mux_event_type type;
	struct mux_frame frame;
	size_t data_off, data_len; /* DATA: into trace.data */
	enum mux_decode_error error;
};

#define TRACE_MAX_RECS 512
#define TRACE_MAX_DATA (1 << 18)

struct trace {
	struct trace_rec rec[TRACE_MAX_RECS];
	size_t nrec;
	uint8_t data[TRACE_MAX_DATA];
	size_t ndata;
};

static struct trace *trace_new(void)
{
	struct trace *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	return t;
}

static void trace_add(struct trace *t, const struct mux_event *ev)
{
	struct trace_rec *last = t->nrec ? &t->rec[t->nrec - 1] : NULL;
	struct trace_rec *r;

	if (ev->type == MUX_EV_DATA && last && last->type == MUX_EV_DATA) {
		assert_true(t->ndata + ev->len <= TRACE_MAX_DATA);
		memcpy(t->data + t->ndata, ev->data, ev->len);
		t->ndata += ev->len;
		last->data_len += ev->len;
		return;
	}
	assert_true(t->nrec < TRACE_MAX_RECS);
	r = &t->rec[t->nrec++];
	memset(r, 0, sizeof(*r));
	r->type = ev->type;
	r->frame = ev->frame;
	r->error = ev->error;
	if (ev->type == MUX_EV_DATA) {
		assert_true(t->ndata + ev->len <= TRACE_MAX_DATA);
		r->data_off = t->ndata;
		r->data_len = ev->len;
		memcpy(t->data + t->ndata, ev->data, ev->len);
		t->ndata += ev->len;
	}
}

/* Feed one chunk until the decoder asks for more (or has failed). */
static void trace_feed(struct mux_decoder *d, struct trace *t, const uint8_t *in, size_t len)
{
	size_t off = 0;

	for (;;) {
		struct mux_event ev;
		size_t n;

		memset(&ev, 0xa5, sizeof(ev));
		n = mux_decode(d, in + off, len - off, &ev);
		assert_true(n <= len - off);
		if (ev.type == MUX_EV_DATA) {
			/* Zero copy: the payload is the caller's input, where we are. */
			assert_ptr_equal(ev.data, in + off);
			assert_int_equal(n, ev.len);
			assert_true(ev.len > 0);
		}
		off += n;
		if (ev.type == MUX_EV_NEED_MORE) {
			assert_int_equal(off, len);
			return;
		}
		if (ev.type == MUX_EV_ERROR) {
			struct mux_event again;

			/* Sticky, and consumes nothing. */
			assert_int_equal(mux_decode(d, in + off, len - off, &again), 0);
			assert_int_equal(again.type, MUX_EV_ERROR);
			assert_int_equal(again.error, ev.error);
			if (!(t->nrec && t->rec[t->nrec - 1].type == MUX_EV_ERROR))
				trace_add(t, &ev);
			return;
		}
		trace_add(t, &ev);
	}
}

/* next_len(ctx, offset, remaining) -> size of the next chunk (>= 1). */
typedef size_t (*chunker_fn)(void *ctx, size_t off, size_t left);

static struct trace *decode_chunked(const uint8_t *in, size_t len, chunker_fn next, void *ctx)
{
	struct trace *t = trace_new();
	struct mux_decoder d;
	size_t off = 0;

	mux_decoder_init(&d);
	while (off < len) {
		size_t n = next(ctx, off, len - off);

		if (n > len - off)
			n = len - off;
		trace_feed(&d, t, in + off, n);
		off += n;
	}
	/* An empty final call must not change anything either. */
	trace_feed(&d, t, in + len, 0);
	return t;
}

static size_t chunk_whole(void *ctx, size_t off, size_t left)
{
	return left;
}

static size_t chunk_bytewise(void *ctx, size_t off, size_t left)
{
	return 1;
}

static size_t chunk_split_at(void *ctx, size_t off, size_t left)
{
	size_t at = *(size_t *)ctx;

	return off < at ? at - off : left;
}

static size_t chunk_random(void *ctx, size_t off, size_t left)
{
	uint32_t *seed = ctx;

	*seed = *seed * 1103515245u + 12345u;
	return 1 + (*seed >> 16) % 37;
}

static struct trace *decode_whole(const uint8_t *in, size_t len)
{
	return decode_chunked(in, len, chunk_whole, NULL);
}

static void assert_frame_equal(const struct mux_frame *a, const struct mux_frame *b)
{
	assert_int_equal(a->session_id, b->session_id);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->option, b->option);
	assert_int_equal(a->has_data, b->has_data);
	assert_int_equal(a->data_len, b->data_len);
	if (a->status != MUX_NEW)
		return;
	assert_int_equal(a->target.network, b->target.network);
	assert_int_equal(a->target.port, b->target.port);
	assert_int_equal(a->target.addr.type, b->target.addr.type);
	switch (a->target.addr.type) {
	case MUX_ADDR_IPV4:
		assert_memory_equal(a->target.addr.v4, b->target.addr.v4, 4);
		break;
	case MUX_ADDR_IPV6:
		assert_memory_equal(a->target.addr.v6, b->target.addr.v6, 16);
		break;
	case MUX_ADDR_DOMAIN:
		assert_int_equal(a->target.addr.domain.len, b->target.addr.domain.len);
		assert_string_equal(a->target.addr.domain.name, b->target.addr.domain.name);
		break;
	}
}

static void assert_trace_equal(const struct trace *a, const struct trace *b)
{
	size_t i;

	assert_int_equal(a->nrec, b->nrec);
	assert_int_equal(a->ndata, b->ndata);
	assert_memory_equal(a->data, b->data, a->ndata);
	for (i = 0; i < a->nrec; i++) {
		const struct trace_rec *x = &a->rec[i], *y = &b->rec[i];

		assert_int_equal(x->type, y->type);
		if (x->type == MUX_EV_ERROR) {
			assert_int_equal(x->error, y->error);
			continue;
		}
		assert_frame_equal(&x->frame, &y->frame);
		assert_int_equal(x->data_off, y->data_off);
		assert_int_equal(x->data_len, y->data_len);
	}
}

/*
 * Event grammar: (FRAME DATA? FRAME_END)* ERROR?, one merged DATA record of
 * exactly data_len bytes when the frame has a non-empty data block.
 * Returns the number of complete frames.
 */
static size_t assert_trace_well_formed(const struct trace *t)
{
	size_t i = 0, frames = 0;

	while (i < t->nrec) {
		const struct trace_rec *fr = &t->rec[i];

		if (fr->type == MUX_EV_ERROR) {
			assert_int_equal(i, t->nrec - 1);
			break;
		}
		assert_int_equal(fr->type, MUX_EV_FRAME);
		assert_int_equal(fr->frame.has_data, (fr->frame.option & MUX_OPT_DATA) != 0);
		if (!fr->frame.has_data)
			assert_int_equal(fr->frame.data_len, 0);
		i++;
		if (fr->frame.has_data && fr->frame.data_len > 0 && i < t->nrec) {
			assert_int_equal(t->rec[i].type, MUX_EV_DATA);
			assert_frame_equal(&t->rec[i].frame, &fr->frame);
			/* Only a stream cut inside the payload may carry less. */
			if (i + 1 < t->nrec)
				assert_int_equal(t->rec[i].data_len, fr->frame.data_len);
			else
				assert_true(t->rec[i].data_len <= fr->frame.data_len);
			i++;
		}
		if (i == t->nrec)
			break; /* stream ends inside a frame */
		assert_int_equal(t->rec[i].type, MUX_EV_FRAME_END);
		assert_frame_equal(&t->rec[i].frame, &fr->frame);
		i++;
		frames++;
	}
	return frames;
}

/* The same trace for the whole buffer, every 2-way split, bytes, random chunks. */
static void assert_split_invariant(const uint8_t *in, size_t len)
{
	struct trace *ref = decode_whole(in, len), *t;
	uint32_t seed;
	size_t at;

	assert_trace_well_formed(ref);
	for (at = 0; at <= len; at++) {
		t = decode_chunked(in, len, chunk_split_at, &at);
		assert_trace_equal(ref, t);
		free(t);
	}
	t = decode_chunked(in, len, chunk_bytewise, NULL);
	assert_trace_equal(ref, t);
	free(t);
	for (seed = 1; seed <= 16; seed++) {
		uint32_t s = seed;

		t = decode_chunked(in, len, chunk_random, &s);
		assert_trace_equal(ref, t);
		free(t);
	}
	free(ref);
}

/* Decode one complete frame from hex; returns its trace (FRAME [DATA] FRAME_END). */
static struct trace *decode_hex(const char *hex)
{
	static uint8_t buf[70000];
	size_t len = hex2bin(hex, buf, sizeof(buf));

	assert_split_invariant(buf, len);
	return decode_whole(buf, len);
}

static void assert_decode_error(const char *hex, enum mux_decode_error want)
{
	struct trace *t = decode_hex(hex);

	assert_true(t->nrec >= 1);
	assert_int_equal(t->rec[t->nrec - 1].type, MUX_EV_ERROR);
	assert_int_equal(t->rec[t->nrec - 1].error, want);
	free(t);
}

static const uint8_t localhost_v4[4] = { 127, 0, 0, 1 };

/* ------------------------------------------------------------------------ */
/* Golden frames: decode                                                    */

static void test_decoder_golden_control_new_with_first_heartbeat(void **state)
{
	uint8_t seg[93];
	struct trace *t = decode_hex(tunnel_segs[0].hex);
	const struct mux_frame *f = &t->rec[0].frame;

	assert_int_equal(hex2bin(tunnel_segs[0].hex, seg, sizeof(seg)), 93);
	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(t->nrec, 3);
	assert_int_equal(f->session_id, MUX_CONTROL_SESSION_ID);
	assert_int_equal(f->status, MUX_NEW);
	assert_int_equal(f->option, MUX_OPT_DATA);
	assert_true(f->has_data);
	assert_int_equal(f->data_len, 54);
	assert_int_equal(f->target.network, MUX_NET_UDP);
	assert_int_equal(f->target.port, 0);
	assert_int_equal(f->target.addr.type, MUX_ADDR_DOMAIN);
	assert_int_equal(f->target.addr.domain.len, 26);
	assert_string_equal(f->target.addr.domain.name, MUX_CONTROL_DOMAIN);
	/* The data block is the Control message: 9a 06 33 + 51 random bytes. */
	assert_int_equal(t->rec[1].data_len, 54);
	assert_memory_equal(t->data, seg + 39, 54);
	assert_memory_equal(t->data, "\x9a\x06\x33", 3);
	free(t);
}

static void test_decoder_golden_heartbeat_keep_on_session_1(void **state)
{
	struct trace *t = decode_hex(tunnel_segs[1].hex);
	const struct mux_frame *f = &t->rec[0].frame;

	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(f->session_id, 1);
	assert_int_equal(f->status, MUX_KEEP);
	assert_int_equal(f->option, MUX_OPT_DATA);
	assert_int_equal(f->data_len, 55);
	assert_memory_equal(t->data, "\x9a\x06\x34\xd3\xe8\x24", 6);
	assert_int_equal(t->data[54], 0x92);
	free(t);
}

static void test_decoder_golden_user_new_with_data(void **state)
{
	struct trace *t = decode_hex("00 0c 00 02 01 01 01 69 7f 01 7f 00 00 01 00 0c "
				     "68 65 6c 6c 6f 2d 76 32 72 61 79 0a");
	const struct mux_frame *f = &t->rec[0].frame;

	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(f->session_id, 2);
	assert_int_equal(f->status, MUX_NEW);
	assert_int_equal(f->option, MUX_OPT_DATA);
	assert_int_equal(f->target.network, MUX_NET_TCP);
	assert_int_equal(f->target.port, 27007);
	assert_int_equal(f->target.addr.type, MUX_ADDR_IPV4);
	assert_memory_equal(f->target.addr.v4, localhost_v4, 4);
	assert_int_equal(f->data_len, 12);
	assert_memory_equal(t->data, "hello-v2ray\n", 12);
	free(t);
}

static void test_decoder_golden_keep_response(void **state)
{
	struct trace *t = decode_hex("00 04 00 02 02 01 00 0c 68 65 6c 6c 6f 2d 76 32 72 61 79 0a");
	const struct mux_frame *f = &t->rec[0].frame;

	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(f->session_id, 2);
	assert_int_equal(f->status, MUX_KEEP);
	assert_int_equal(f->data_len, 12);
	assert_memory_equal(t->data, "hello-v2ray\n", 12);
	free(t);
}

static void test_decoder_golden_end_and_end_with_error(void **state)
{
	struct trace *t = decode_hex("00 04 00 02 03 00");

	assert_int_equal(t->nrec, 2);
	assert_int_equal(t->rec[0].type, MUX_EV_FRAME);
	assert_int_equal(t->rec[0].frame.session_id, 2);
	assert_int_equal(t->rec[0].frame.status, MUX_END);
	assert_int_equal(t->rec[0].frame.option, 0);
	assert_false(t->rec[0].frame.has_data);
	assert_int_equal(t->rec[1].type, MUX_EV_FRAME_END);
	free(t);

	t = decode_hex("00 04 00 02 03 02");
	assert_int_equal(t->nrec, 2);
	assert_int_equal(t->rec[0].frame.status, MUX_END);
	assert_int_equal(t->rec[0].frame.option, MUX_OPT_ERROR);
	assert_false(t->rec[0].frame.has_data);
	free(t);
}

static void test_decoder_golden_new_without_data(void **state)
{
	struct trace *t = decode_hex("00 0c 00 03 01 00 01 69 7f 01 7f 00 00 01");
	const struct mux_frame *f = &t->rec[0].frame;

	assert_int_equal(t->nrec, 2);
	assert_int_equal(f->session_id, 3);
	assert_int_equal(f->status, MUX_NEW);
	assert_int_equal(f->option, 0);
	assert_false(f->has_data);
	assert_int_equal(f->target.network, MUX_NET_TCP);
	assert_int_equal(f->target.port, 27007);
	assert_memory_equal(f->target.addr.v4, localhost_v4, 4);
	free(t);
}

static void test_decoder_golden_drain_then_end_on_session_1(void **state)
{
	/* drain_decoded.txt t=4.0016: Keep sid 1 with Control{DRAIN}, then End sid 1. */
	struct trace *t = decode_hex("00 04 00 01 02 01 00 0f 08 01 9a 06 0a 77 77 22 49 c4 f3 c0 a7 ab c9 "
				     "00 04 00 01 03 00");

	assert_int_equal(assert_trace_well_formed(t), 2);
	assert_int_equal(t->rec[0].frame.status, MUX_KEEP);
	assert_int_equal(t->rec[0].frame.data_len, 15);
	assert_memory_equal(t->data, "\x08\x01\x9a\x06\x0a", 5);
	assert_int_equal(t->rec[3].frame.session_id, 1);
	assert_int_equal(t->rec[3].frame.status, MUX_END);
	assert_int_equal(t->rec[3].frame.option, 0);
	free(t);
}

static void test_decoder_golden_udp_new_with_datagram(void **state)
{
	struct trace *t = decode_hex("00 0c 00 02 01 01 02 69 80 01 7f 00 00 01 00 07 75 64 70 2d 6f 6e 65");
	const struct mux_frame *f = &t->rec[0].frame;

	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(f->status, MUX_NEW);
	assert_int_equal(f->target.network, MUX_NET_UDP);
	assert_int_equal(f->target.port, 27008);
	assert_int_equal(f->target.addr.type, MUX_ADDR_IPV4);
	assert_memory_equal(f->target.addr.v4, localhost_v4, 4);
	assert_int_equal(f->data_len, 7);
	assert_memory_equal(t->data, "udp-one", 7);
	free(t);
}

/* ------------------------------------------------------------------------ */
/* Golden frames: encode                                                    */

/* Encode f, append payload, compare with the captured frame byte for byte. */
static void assert_encodes_to(const struct mux_frame *f, const uint8_t *payload, const char *hex)
{
	uint8_t want[MUX_HDR_MAX + 65536], got[MUX_HDR_MAX + 65536];
	size_t want_len = hex2bin(hex, want, sizeof(want));
	ssize_t n = mux_encode_header(got, MUX_HDR_MAX, f);

	assert_true(n > 0);
	if (f->option & MUX_OPT_DATA)
		memcpy(got + n, payload, f->data_len);
	assert_int_equal((size_t)n + ((f->option & MUX_OPT_DATA) ? f->data_len : 0), want_len);
	assert_memory_equal(got, want, want_len);
}

static void test_encoder_golden_control_new_with_first_heartbeat(void **state)
{
	uint8_t seg[93];
	struct mux_frame f = { .session_id = 1, .status = MUX_NEW, .option = MUX_OPT_DATA,
			       .has_data = true, .data_len = 54 };

	hex2bin(tunnel_segs[0].hex, seg, sizeof(seg));
	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_UDP, MUX_CONTROL_DOMAIN, 0), 0);
	assert_encodes_to(&f, seg + 39, tunnel_segs[0].hex);
}

static void test_encoder_golden_user_new_with_data(void **state)
{
	struct mux_frame f = { .session_id = 2, .status = MUX_NEW, .option = MUX_OPT_DATA,
			       .has_data = true, .data_len = 12 };

	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_TCP, "127.0.0.1", 27007), 0);
	assert_encodes_to(&f, (const uint8_t *)"hello-v2ray\n",
			  "00 0c 00 02 01 01 01 69 7f 01 7f 00 00 01 00 0c 68 65 6c 6c 6f 2d 76 32 72 61 79 0a");
}

static void test_encoder_golden_keep_end_and_new_without_data(void **state)
{
	struct mux_frame keep = { .session_id = 2, .status = MUX_KEEP, .option = MUX_OPT_DATA,
				  .has_data = true, .data_len = 12 };
	struct mux_frame end = { .session_id = 2, .status = MUX_END };
	struct mux_frame end_err = { .session_id = 2, .status = MUX_END, .option = MUX_OPT_ERROR };
	struct mux_frame new3 = { .session_id = 3, .status = MUX_NEW };
	struct mux_frame keep_ping = { .session_id = 3, .status = MUX_KEEP, .option = MUX_OPT_DATA,
				       .has_data = true, .data_len = 4 };

	assert_encodes_to(&keep, (const uint8_t *)"hello-v2ray\n",
			  "00 04 00 02 02 01 00 0c 68 65 6c 6c 6f 2d 76 32 72 61 79 0a");
	assert_encodes_to(&end, NULL, "00 04 00 02 03 00");
	assert_encodes_to(&end_err, NULL, "00 04 00 02 03 02");
	assert_int_equal(mux_target_from_host(&new3.target, MUX_NET_TCP, "127.0.0.1", 27007), 0);
	assert_encodes_to(&new3, NULL, "00 0c 00 03 01 00 01 69 7f 01 7f 00 00 01");
	assert_encodes_to(&keep_ping, (const uint8_t *)"ping", "00 04 00 03 02 01 00 04 70 69 6e 67");
}

static void test_encoder_golden_drain_and_udp_new(void **state)
{
	static const uint8_t drain[15] = { 0x08, 0x01, 0x9a, 0x06, 0x0a, 0x77, 0x77, 0x22,
					   0x49, 0xc4, 0xf3, 0xc0, 0xa7, 0xab, 0xc9 };
	struct mux_frame keep = { .session_id = 1, .status = MUX_KEEP, .option = MUX_OPT_DATA,
				  .has_data = true, .data_len = 15 };
	struct mux_frame end = { .session_id = 1, .status = MUX_END };
	struct mux_frame udp = { .session_id = 2, .status = MUX_NEW, .option = MUX_OPT_DATA,
				 .has_data = true, .data_len = 7 };

	assert_encodes_to(&keep, drain,
			  "00 04 00 01 02 01 00 0f 08 01 9a 06 0a 77 77 22 49 c4 f3 c0 a7 ab c9");
	assert_encodes_to(&end, NULL, "00 04 00 01 03 00");
	assert_int_equal(mux_target_from_host(&udp.target, MUX_NET_UDP, "127.0.0.1", 27008), 0);
	assert_encodes_to(&udp, (const uint8_t *)"udp-one",
			  "00 0c 00 02 01 01 02 69 80 01 7f 00 00 01 00 07 75 64 70 2d 6f 6e 65");
}

/* Every captured frame: decode, re-encode the header, append the payload: same bytes. */
static void assert_segments_reencode(const struct golden_seg *segs, size_t nsegs)
{
	size_t i;

	for (i = 0; i < nsegs; i++) {
		uint8_t in[4096], out[MUX_HDR_MAX + 4096];
		size_t len = hex2bin(segs[i].hex, in, sizeof(in));
		struct trace *t = decode_whole(in, len);
		ssize_t n;

		assert_int_equal(assert_trace_well_formed(t), 1);
		n = mux_encode_header(out, sizeof(out), &t->rec[0].frame);
		assert_true(n > 0);
		memcpy(out + n, t->data, t->ndata);
		assert_int_equal((size_t)n + t->ndata, len);
		assert_memory_equal(out, in, len);
		free(t);
	}
}

static void test_encoder_reproduces_every_captured_frame(void **state)
{
	assert_segments_reencode(tunnel_segs, ARRAY_SIZE(tunnel_segs));
	assert_segments_reencode(udp_err_segs, ARRAY_SIZE(udp_err_segs));
	assert_segments_reencode(drain_segs, ARRAY_SIZE(drain_segs));
}

/* ------------------------------------------------------------------------ */
/* Whole streams and splits                                                 */

static void test_decoder_whole_tunnel_stream_portal_to_bridge(void **state)
{
	static const struct {
		uint16_t sid;
		uint8_t status, option;
		uint16_t data_len;
	} want[] = {
		{ 1, MUX_NEW, 1, 54 }, { 1, MUX_KEEP, 1, 55 }, { 1, MUX_KEEP, 1, 49 },
		{ 2, MUX_NEW, 1, 12 }, { 2, MUX_END, 0, 0 }, { 1, MUX_KEEP, 1, 38 },
		{ 3, MUX_NEW, 0, 0 },  { 3, MUX_KEEP, 1, 4 }, { 3, MUX_END, 0, 0 },
		{ 1, MUX_KEEP, 1, 59 },
	};
	uint8_t stream[4096];
	size_t len = golden_stream(tunnel_segs, ARRAY_SIZE(tunnel_segs), true, 0, stream, sizeof(stream));
	struct trace *t = decode_whole(stream, len);
	size_t i, frame = 0;

	assert_int_equal(len, 93 + 63 + 57 + 28 + 6 + 46 + 14 + 12 + 6 + 67);
	assert_int_equal(assert_trace_well_formed(t), ARRAY_SIZE(want));
	for (i = 0; i < t->nrec; i++) {
		const struct mux_frame *f = &t->rec[i].frame;

		if (t->rec[i].type != MUX_EV_FRAME)
			continue;
		assert_int_equal(f->session_id, want[frame].sid);
		assert_int_equal(f->status, want[frame].status);
		assert_int_equal(f->option, want[frame].option);
		assert_int_equal(f->data_len, want[frame].data_len);
		frame++;
	}
	free(t);
}

static void test_decoder_same_events_for_every_split_of_captures(void **state)
{
	static uint8_t stream[8192];
	size_t len;

	len = golden_stream(tunnel_segs, ARRAY_SIZE(tunnel_segs), true, 0, stream, sizeof(stream));
	assert_split_invariant(stream, len);
	len = golden_stream(tunnel_segs, ARRAY_SIZE(tunnel_segs), false, 0, stream, sizeof(stream));
	assert_split_invariant(stream, len);
	len = golden_stream(udp_err_segs, ARRAY_SIZE(udp_err_segs), true, 0, stream, sizeof(stream));
	assert_split_invariant(stream, len);
	len = golden_stream(udp_err_segs, ARRAY_SIZE(udp_err_segs), false, 0, stream, sizeof(stream));
	assert_split_invariant(stream, len);
	len = golden_stream(drain_segs, ARRAY_SIZE(drain_segs), true, 52706, stream, sizeof(stream));
	assert_split_invariant(stream, len);
}

/* Concatenated DATA of every split equals the captured payload of each frame. */
static void test_decoder_concatenated_data_matches_capture_payloads(void **state)
{
	static uint8_t stream[8192], payloads[8192];
	size_t len = golden_stream(udp_err_segs, ARRAY_SIZE(udp_err_segs), true, 0, stream, sizeof(stream));
	size_t i, plen = 0, at;

	for (i = 0; i < ARRAY_SIZE(udp_err_segs); i++) {
		uint8_t seg[512];
		size_t n;

		if (!udp_err_segs[i].p2b)
			continue;
		n = hex2bin(udp_err_segs[i].hex, seg, sizeof(seg));
		/* All P->B frames here are Keep (8-byte header) or IPv4 New (16). */
		if (seg[4] == MUX_NEW) {
			memcpy(payloads + plen, seg + 16, n - 16);
			plen += n - 16;
		} else if (seg[5] & MUX_OPT_DATA) {
			memcpy(payloads + plen, seg + 8, n - 8);
			plen += n - 8;
		}
	}
	for (at = 0; at <= len; at += 7) {
		struct trace *t = decode_chunked(stream, len, chunk_split_at, &at);

		assert_int_equal(t->ndata, plen);
		assert_memory_equal(t->data, payloads, plen);
		free(t);
	}
}

static void test_decoder_random_input_same_events_for_every_chunking(void **state)
{
	uint8_t buf[600];
	uint32_t seed = 7;
	int round;

	/*
	 * Mostly-valid garbage: small metaLen/status/option values so that some
	 * frames parse before an error; every chunking must agree anyway.
	 */
	for (round = 0; round < 200; round++) {
		size_t i;

		for (i = 0; i < sizeof(buf); i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (uint8_t)(seed >> 16);
			if ((seed >> 8) % 3)
				buf[i] &= 0x07;
		}
		assert_split_invariant(buf, 64 + round);
	}
}

static void test_decoder_empty_input_needs_more(void **state)
{
	struct mux_decoder d;
	struct mux_event ev;

	mux_decoder_init(&d);
	assert_int_equal(mux_decode(&d, NULL, 0, &ev), 0);
	assert_int_equal(ev.type, MUX_EV_NEED_MORE);
}

static void test_decoder_data_events_point_into_caller_buffer(void **state)
{
	uint8_t frame[8 + 300];
	struct mux_decoder d;
	struct mux_event ev;
	size_t n;

	mux_keep_header(frame, 9, 300);
	memset(frame + 8, 'x', 300);
	mux_decoder_init(&d);

	n = mux_decode(&d, frame, 100, &ev);
	assert_int_equal(ev.type, MUX_EV_FRAME);
	assert_int_equal(n, 8);
	n = mux_decode(&d, frame + 8, 92, &ev);
	assert_int_equal(ev.type, MUX_EV_DATA);
	assert_ptr_equal(ev.data, frame + 8);
	assert_int_equal(ev.len, 92);
	assert_int_equal(n, 92);
	assert_int_equal(ev.frame.session_id, 9);
	n = mux_decode(&d, frame + 100, 208, &ev);
	assert_int_equal(ev.type, MUX_EV_DATA);
	assert_ptr_equal(ev.data, frame + 100);
	assert_int_equal(ev.len, 208);
	n = mux_decode(&d, frame + 308, 0, &ev);
	assert_int_equal(n, 0);
	assert_int_equal(ev.type, MUX_EV_FRAME_END);
	assert_int_equal(ev.frame.session_id, 9);
	assert_int_equal(ev.frame.data_len, 300);
	n = mux_decode(&d, frame + 308, 0, &ev);
	assert_int_equal(ev.type, MUX_EV_NEED_MORE);
}

static void test_decoder_accepts_max_stream_data_len(void **state)
{
	static uint8_t frame[8 + 65535];
	struct trace *t;
	size_t i;

	mux_keep_header(frame, 4, 65535);
	for (i = 0; i < 65535; i++)
		frame[8 + i] = (uint8_t)(i * 7);
	t = decode_whole(frame, sizeof(frame));
	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(t->rec[0].frame.data_len, 65535);
	assert_memory_equal(t->data, frame + 8, 65535);
	free(t);
	for (i = 0; i < 4; i++) {
		uint32_t seed = (uint32_t)i + 100;
		struct trace *r = decode_chunked(frame, sizeof(frame), chunk_random, &seed);

		assert_int_equal(r->ndata, 65535);
		assert_memory_equal(r->data, frame + 8, 65535);
		free(r);
	}
}

static void test_decoder_keep_with_zero_data_len_has_no_data_event(void **state)
{
	struct trace *t = decode_hex("00 04 00 05 02 01 00 00  00 04 00 05 03 00");

	assert_int_equal(t->nrec, 4);
	assert_int_equal(t->rec[0].type, MUX_EV_FRAME);
	assert_true(t->rec[0].frame.has_data);
	assert_int_equal(t->rec[0].frame.data_len, 0);
	assert_int_equal(t->rec[1].type, MUX_EV_FRAME_END);
	assert_int_equal(t->rec[2].frame.status, MUX_END);
	free(t);
}

static void test_decoder_passes_data_on_end_and_keepalive(void **state)
{
	struct trace *t = decode_hex("00 04 00 05 03 03 00 02 ab cd  00 04 00 00 04 01 00 01 ee "
				     "00 04 00 00 04 00");

	assert_int_equal(assert_trace_well_formed(t), 3);
	assert_int_equal(t->rec[0].frame.status, MUX_END);
	assert_int_equal(t->rec[0].frame.option, MUX_OPT_DATA | MUX_OPT_ERROR);
	assert_int_equal(t->rec[3].frame.status, MUX_KEEPALIVE);
	assert_int_equal(t->rec[6].frame.status, MUX_KEEPALIVE);
	assert_memory_equal(t->data, "\xab\xcd\xee", 3);
	free(t);
}

static void test_decoder_preserves_unknown_option_bits(void **state)
{
	struct trace *t = decode_hex("00 04 00 07 02 fc  00 04 00 07 02 fd 00 01 41");

	assert_int_equal(t->rec[0].frame.option, 0xfc);
	assert_false(t->rec[0].frame.has_data);
	assert_int_equal(t->rec[2].frame.option, 0xfd);
	assert_true(t->rec[2].frame.has_data);
	assert_int_equal(t->rec[2].frame.data_len, 1);
	free(t);
}

/* ------------------------------------------------------------------------ */
/* Decoder errors (§1.1, §1.6)                                              */

static void test_decoder_rejects_metalen_over_512(void **state)
{
	assert_decode_error("02 01 00 01 02 00", MUX_ERR_META_TOO_LONG);
	assert_decode_error("ff ff", MUX_ERR_META_TOO_LONG);
	/* The error comes from the length alone, before the block arrives. */
	assert_decode_error("00 04 00 01 03 00  02 01", MUX_ERR_META_TOO_LONG);
}

static void test_decoder_accepts_metalen_512_and_ignores_extra_metadata(void **state)
{
	uint8_t frame[2 + 512 + 2 + 3];
	struct trace *t;

	memset(frame, 0xee, sizeof(frame));
	frame[0] = 0x02;
	frame[1] = 0x00;
	frame[2] = 0x00;
	frame[3] = 0x09;
	frame[4] = MUX_KEEP;
	frame[5] = MUX_OPT_DATA;
	frame[514] = 0;
	frame[515] = 3;
	memcpy(frame + 516, "abc", 3);
	assert_split_invariant(frame, sizeof(frame));
	t = decode_whole(frame, sizeof(frame));
	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(t->rec[0].frame.session_id, 9);
	assert_int_equal(t->rec[0].frame.data_len, 3);
	assert_memory_equal(t->data, "abc", 3);
	free(t);
}

static void test_decoder_rejects_metalen_under_4(void **state)
{
	assert_decode_error("00 00", MUX_ERR_META_TOO_SHORT);
	assert_decode_error("00 01 00", MUX_ERR_META_TOO_SHORT);
	assert_decode_error("00 02 00 01", MUX_ERR_META_TOO_SHORT);
	assert_decode_error("00 03 00 01 02", MUX_ERR_META_TOO_SHORT);
	/* After a good frame: the first frame's events still come out. */
	assert_decode_error("00 04 00 01 03 00  00 03 00 01 02", MUX_ERR_META_TOO_SHORT);
}

static void test_decoder_rejects_new_with_metalen_under_8(void **state)
{
	assert_decode_error("00 04 00 02 01 00", MUX_ERR_META_TOO_SHORT);
	assert_decode_error("00 05 00 02 01 00 01", MUX_ERR_META_TOO_SHORT);
	assert_decode_error("00 07 00 02 01 00 01 00 50", MUX_ERR_META_TOO_SHORT);
}

static void test_decoder_rejects_bad_status(void **state)
{
	assert_decode_error("00 04 00 02 00 00", MUX_ERR_BAD_STATUS);
	assert_decode_error("00 04 00 02 05 00", MUX_ERR_BAD_STATUS);
	assert_decode_error("00 04 00 02 ff 01 00 01 aa", MUX_ERR_BAD_STATUS);
}

static void test_decoder_rejects_bad_network(void **state)
{
	assert_decode_error("00 0c 00 02 01 00 00 00 50 01 7f 00 00 01", MUX_ERR_BAD_NETWORK);
	assert_decode_error("00 0c 00 02 01 00 03 00 50 01 7f 00 00 01", MUX_ERR_BAD_NETWORK);
}

/* V2Ray parses port and address before it looks at the network byte. */
static void test_decoder_reports_address_error_before_network_error(void **state)
{
	assert_decode_error("00 0c 00 02 01 00 09 00 50 07 7f 00 00 01", MUX_ERR_BAD_ADDR_TYPE);
	assert_decode_error("00 0b 00 02 01 00 09 00 50 01 7f 00 00", MUX_ERR_BAD_ADDR_LEN);
}

static void test_decoder_rejects_bad_address_type(void **state)
{
	assert_decode_error("00 0c 00 02 01 00 01 00 50 00 7f 00 00 01", MUX_ERR_BAD_ADDR_TYPE);
	assert_decode_error("00 0c 00 02 01 00 01 00 50 04 7f 00 00 01", MUX_ERR_BAD_ADDR_TYPE);
}

static void test_decoder_rejects_address_not_fitting_metalen(void **state)
{
	/* IPv4 needs metaLen 12, IPv6 24, domain 9 + len. */
	assert_decode_error("00 0b 00 02 01 00 01 00 50 01 7f 00 00", MUX_ERR_BAD_ADDR_LEN);
	assert_decode_error("00 08 00 02 01 00 01 00 50 01", MUX_ERR_BAD_ADDR_LEN);
	assert_decode_error("00 17 00 02 01 00 01 00 50 03 "
			    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", MUX_ERR_BAD_ADDR_LEN);
	assert_decode_error("00 08 00 02 01 00 01 00 50 02", MUX_ERR_BAD_ADDR_LEN);
	assert_decode_error("00 0b 00 02 01 00 01 00 50 02 03 61 62", MUX_ERR_BAD_ADDR_LEN);
}

static void test_decoder_rejects_invalid_domain_chars(void **state)
{
	static const char *const bad[] = {
		"61 20 62", /* "a b" */
		"61 3a 62", /* "a:b" */
		"61 2f 62", /* "a/b" */
		"61 00 62", /* NUL */
		"61 c3 a9", /* UTF-8 é */
		"2a 2e 62", /* "*.b" */
		"5b 61 5d", /* "[a]": '[' prefix but not an IP */
		"3a 3a 31", /* "::1": not converted (does not start with a digit) */
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		char hex[128];

		snprintf(hex, sizeof(hex), "00 0c 00 02 01 00 01 00 50 02 03 %s", bad[i]);
		assert_decode_error(hex, MUX_ERR_BAD_DOMAIN);
	}
}

static void test_decoder_rejects_empty_domain(void **state)
{
	assert_decode_error("00 09 00 02 01 00 01 00 50 02 00", MUX_ERR_BAD_DOMAIN);
}

static void test_decoder_accepts_every_valid_domain_char(void **state)
{
	static const char name[] = "Az09.-_example";
	uint8_t frame[64];
	struct trace *t;
	size_t n = sizeof(name) - 1;

	memcpy(frame, "\x00\x00\x00\x02\x01\x00\x01\x01\xbb\x02", 10);
	frame[1] = (uint8_t)(9 + n);
	frame[10] = (uint8_t)n;
	memcpy(frame + 11, name, n);
	t = decode_whole(frame, 11 + n);
	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(t->rec[0].frame.target.addr.type, MUX_ADDR_DOMAIN);
	assert_string_equal(t->rec[0].frame.target.addr.domain.name, name);
	assert_int_equal(t->rec[0].frame.target.port, 443);
	free(t);
}

static void test_decoder_skips_metadata_beyond_new_target(void **state)
{
	/* IPv4 target in a 20-byte metadata block: 8 trailing bytes, then data. */
	struct trace *t = decode_hex("00 14 00 02 01 01 01 69 7f 01 7f 00 00 01 de ad be ef de ad be ef "
				     "00 02 68 69");

	assert_int_equal(assert_trace_well_formed(t), 1);
	assert_int_equal(t->rec[0].frame.target.port, 27007);
	assert_memory_equal(t->rec[0].frame.target.addr.v4, localhost_v4, 4);
	assert_int_equal(t->rec[0].frame.data_len, 2);
	assert_memory_equal(t->data, "hi", 2);
	free(t);
}

static void test_decoder_ignores_extra_metadata_on_keep_end_keepalive(void **state)
{
	struct trace *t = decode_hex("00 06 00 02 02 01 aa bb 00 01 7a "
				     "00 05 00 02 03 02 cc "
				     "00 08 00 02 04 00 01 02 03 04");

	assert_int_equal(assert_trace_well_formed(t), 3);
	assert_int_equal(t->rec[0].frame.status, MUX_KEEP);
	assert_int_equal(t->rec[0].frame.data_len, 1);
	assert_memory_equal(t->data, "z", 1);
	assert_int_equal(t->rec[3].frame.status, MUX_END);
	assert_int_equal(t->rec[3].frame.option, MUX_OPT_ERROR);
	assert_int_equal(t->rec[5].frame.status, MUX_KEEPALIVE);
	free(t);
}

/* Decode a New whose domain is `name`; return the decoded target's address. */
static struct mux_addr decode_domain_target(const char *name, size_t n)
{
	uint8_t frame[300];
	struct mux_addr a;
	struct trace *t;

	memcpy(frame, "\x00\x00\x00\x02\x01\x00\x01\x00\x50\x02", 10);
	frame[1] = (uint8_t)(9 + n);
	frame[10] = (uint8_t)n;
	memcpy(frame + 11, name, n);
	assert_split_invariant(frame, 11 + n);
	t = decode_whole(frame, 11 + n);
	assert_int_equal(assert_trace_well_formed(t), 1);
	a = t->rec[0].frame.target.addr;
	free(t);
	return a;
}

static void test_decoder_converts_ip_looking_domain_to_ip(void **state)
{
	static const uint8_t v6_loop[16] = { [15] = 1 };
	static const uint8_t v6_doc[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x01 };
	struct mux_addr a;

	a = decode_domain_target("127.0.0.1", 9);
	assert_int_equal(a.type, MUX_ADDR_IPV4);
	assert_memory_equal(a.v4, localhost_v4, 4);

	a = decode_domain_target("[::1]", 5);
	assert_int_equal(a.type, MUX_ADDR_IPV6);
	assert_memory_equal(a.v6, v6_loop, 16);

	a = decode_domain_target("2001:db8::1", 11);
	assert_int_equal(a.type, MUX_ADDR_IPV6);
	assert_memory_equal(a.v6, v6_doc, 16);

	a = decode_domain_target("[127.0.0.1]", 11);
	assert_int_equal(a.type, MUX_ADDR_IPV4);
	assert_memory_equal(a.v4, localhost_v4, 4);

	/* v4-mapped text: Go's net.IP keeps it as IPv4. */
	a = decode_domain_target("0::ffff:127.0.0.1", 17);
	assert_int_equal(a.type, MUX_ADDR_IPV4);
	assert_memory_equal(a.v4, localhost_v4, 4);

	/* net.ParseAddress trims white space first ("1.2.3.4 " is an IP), then fails char checks otherwise. */
	a = decode_domain_target("127.0.0.1\t", 10);
	assert_int_equal(a.type, MUX_ADDR_IPV4);
	assert_memory_equal(a.v4, localhost_v4, 4);
}

static void test_decoder_keeps_digit_domain_that_is_not_an_ip(void **state)
{
	struct mux_addr a;

	a = decode_domain_target("1.2.3", 5);
	assert_int_equal(a.type, MUX_ADDR_DOMAIN);
	assert_string_equal(a.domain.name, "1.2.3");
	/* Leading zeros are not an IPv4 for Go (>= 1.17) nor glibc. */
	a = decode_domain_target("01.2.3.4", 8);
	assert_int_equal(a.type, MUX_ADDR_DOMAIN);
	a = decode_domain_target("1.2.3.256", 9);
	assert_int_equal(a.type, MUX_ADDR_DOMAIN);
	a = decode_domain_target("9gag.com", 8);
	assert_int_equal(a.type, MUX_ADDR_DOMAIN);
	assert_string_equal(a.domain.name, "9gag.com");
}

static void test_decoder_converts_v4_mapped_ipv6_to_ipv4(void **state)
{
	struct trace *t = decode_hex("00 18 00 02 01 00 01 00 50 03 "
				     "00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 02 03");
	const struct mux_addr *a = &t->rec[0].frame.target.addr;

	assert_int_equal(a->type, MUX_ADDR_IPV4);
	assert_memory_equal(a->v4, "\x0a\x01\x02\x03", 4);
	free(t);

	t = decode_hex("00 18 00 02 01 00 02 01 bb 03 "
		       "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01");
	a = &t->rec[0].frame.target.addr;
	assert_int_equal(a->type, MUX_ADDR_IPV6);
	assert_int_equal(t->rec[0].frame.target.network, MUX_NET_UDP);
	assert_int_equal(t->rec[0].frame.target.port, 443);
	free(t);
}

static void test_decoder_error_is_sticky_and_consumes_nothing(void **state)
{
	static const uint8_t bad[] = { 0x00, 0x04, 0x00, 0x01, 0x07, 0x00, 0x00, 0x04, 0x00, 0x01, 0x03, 0x00 };
	struct mux_decoder d;
	struct mux_event ev;
	size_t n;

	mux_decoder_init(&d);
	n = mux_decode(&d, bad, sizeof(bad), &ev);
	assert_int_equal(ev.type, MUX_EV_ERROR);
	assert_int_equal(ev.error, MUX_ERR_BAD_STATUS);
	assert_int_equal(n, 6); /* the bad frame's metadata, not the next frame */
	assert_int_equal(d.error, MUX_ERR_BAD_STATUS);
	n = mux_decode(&d, bad + 6, sizeof(bad) - 6, &ev);
	assert_int_equal(n, 0);
	assert_int_equal(ev.type, MUX_EV_ERROR);
	assert_int_equal(ev.error, MUX_ERR_BAD_STATUS);
	n = mux_decode(&d, NULL, 0, &ev);
	assert_int_equal(ev.type, MUX_EV_ERROR);

	/* init recovers the decoder */
	mux_decoder_init(&d);
	n = mux_decode(&d, bad + 6, 6, &ev);
	assert_int_equal(ev.type, MUX_EV_FRAME);
}

static void test_decoder_strerror_names_every_error(void **state)
{
	int e;

	for (e = MUX_ERR_NONE; e <= MUX_ERR_BAD_DOMAIN; e++) {
		assert_non_null(mux_decode_strerror(e));
		assert_true(strlen(mux_decode_strerror(e)) > 0);
	}
	assert_non_null(strstr(mux_decode_strerror(MUX_ERR_META_TOO_LONG), "metalen"));
	assert_non_null(mux_decode_strerror((enum mux_decode_error)99));
}

/* ------------------------------------------------------------------------ */
/* Encoder                                                                  */

static void assert_header_hex(const struct mux_frame *f, const char *hex)
{
	uint8_t want[MUX_HDR_MAX], got[MUX_HDR_MAX];
	size_t want_len = hex2bin(hex, want, sizeof(want));
	ssize_t n = mux_encode_header(got, sizeof(got), f);

	assert_int_equal(n, (ssize_t)want_len);
	assert_memory_equal(got, want, want_len);
}

static void test_encoder_every_status_and_option(void **state)
{
	struct mux_frame f = { .session_id = 0x1234 };

	f.status = MUX_KEEP;
	f.option = 0;
	assert_header_hex(&f, "00 04 12 34 02 00");
	f.option = MUX_OPT_DATA;
	f.data_len = 0x2000;
	assert_header_hex(&f, "00 04 12 34 02 01 20 00");
	f.status = MUX_END;
	f.option = MUX_OPT_ERROR;
	assert_header_hex(&f, "00 04 12 34 03 02");
	f.option = MUX_OPT_ERROR | MUX_OPT_DATA;
	f.data_len = 1;
	assert_header_hex(&f, "00 04 12 34 03 03 00 01");
	f.status = MUX_KEEPALIVE;
	f.option = 0;
	assert_header_hex(&f, "00 04 12 34 04 00");
	/* Other option bits are written as given. */
	f.status = MUX_KEEP;
	f.option = 0xf0;
	assert_header_hex(&f, "00 04 12 34 02 f0");
	f.option = 0xff;
	f.data_len = 0xffff;
	assert_header_hex(&f, "00 04 12 34 02 ff ff ff");
}

static void test_encoder_keep_header_matches_inline_helper(void **state)
{
	struct mux_frame f = { .session_id = 0xbeef, .status = MUX_KEEP, .option = MUX_OPT_DATA,
			       .has_data = true, .data_len = 8192 };
	uint8_t a[MUX_KEEP_HDR_LEN], b[MUX_HDR_MAX];

	mux_keep_header(a, 0xbeef, 8192);
	assert_int_equal(mux_encode_header(b, sizeof(b), &f), MUX_KEEP_HDR_LEN);
	assert_memory_equal(a, b, MUX_KEEP_HDR_LEN);
}

static void test_encoder_new_for_every_network_and_address_type(void **state)
{
	struct mux_frame f = { .session_id = 5, .status = MUX_NEW };

	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_TCP, "10.1.2.3", 80), 0);
	assert_header_hex(&f, "00 0c 00 05 01 00 01 00 50 01 0a 01 02 03");
	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_UDP, "10.1.2.3", 53), 0);
	assert_header_hex(&f, "00 0c 00 05 01 00 02 00 35 01 0a 01 02 03");
	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_TCP, "2001:db8::1", 443), 0);
	assert_header_hex(&f, "00 18 00 05 01 00 01 01 bb 03 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01");
	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_TCP, "example.com", 443), 0);
	assert_header_hex(&f, "00 14 00 05 01 00 01 01 bb 02 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d");
	f.option = MUX_OPT_DATA;
	f.data_len = 3;
	assert_header_hex(&f, "00 14 00 05 01 01 01 01 bb 02 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d 00 03");
}

static void test_encoder_writes_v4_mapped_ipv6_as_ipv4(void **state)
{
	struct mux_frame f = { .session_id = 2, .status = MUX_NEW };

	f.target.network = MUX_NET_TCP;
	f.target.port = 27007;
	f.target.addr.type = MUX_ADDR_IPV6;
	memcpy(f.target.addr.v6, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\0\0\1", 16);
	assert_header_hex(&f, "00 0c 00 02 01 00 01 69 7f 01 7f 00 00 01");
}

static void test_encoder_accepts_domain_of_255(void **state)
{
	struct mux_frame f = { .session_id = 2, .status = MUX_NEW };
	uint8_t buf[MUX_HDR_MAX];

	f.target.network = MUX_NET_TCP;
	f.target.addr.type = MUX_ADDR_DOMAIN;
	f.target.addr.domain.len = 255;
	memset(f.target.addr.domain.name, 'a', 255);
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), 2 + 9 + 255);
	assert_int_equal(buf[0] << 8 | buf[1], 9 + 255);
	assert_int_equal(buf[10], 255);
}

static void test_encoder_rejects_bad_status_network_and_address(void **state)
{
	struct mux_frame f = { .session_id = 2, .status = MUX_NEW };
	uint8_t buf[MUX_HDR_MAX];

	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_TCP, "1.2.3.4", 1), 0);
	assert_true(mux_encode_header(buf, sizeof(buf), &f) > 0);

	f.status = 0;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	f.status = 5;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	f.status = MUX_NEW;
	f.target.network = 0;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	f.target.network = 3;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	f.target.network = MUX_NET_UDP;
	f.target.addr.type = 0;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	f.target.addr.type = 4;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);

	/* Network and address are not looked at for other statuses. */
	f.status = MUX_KEEP;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), 6);
}

static void test_encoder_rejects_empty_or_invalid_domain(void **state)
{
	static const char *const bad[] = { "a b", "a:b", "a/b", "é.com", "*.x", "[x]" };
	struct mux_frame f = { .session_id = 2, .status = MUX_NEW };
	uint8_t buf[MUX_HDR_MAX];
	size_t i;

	f.target.network = MUX_NET_TCP;
	f.target.addr.type = MUX_ADDR_DOMAIN;
	f.target.addr.domain.len = 0;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		f.target.addr.domain.len = (uint8_t)strlen(bad[i]);
		strcpy(f.target.addr.domain.name, bad[i]);
		assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
	}
	/* len covers a NUL: the name is shorter than it claims. */
	strcpy(f.target.addr.domain.name, "ab");
	f.target.addr.domain.len = 4;
	assert_int_equal(mux_encode_header(buf, sizeof(buf), &f), -EINVAL);
}

static void test_encoder_returns_enospc_when_buffer_small(void **state)
{
	struct mux_frame f = { .session_id = 2, .status = MUX_NEW, .option = MUX_OPT_DATA, .data_len = 1 };
	struct mux_frame k = { .session_id = 2, .status = MUX_END };
	uint8_t buf[MUX_HDR_MAX];
	ssize_t need;
	size_t cap;

	assert_int_equal(mux_target_from_host(&f.target, MUX_NET_TCP, "example.com", 1), 0);
	need = mux_encode_header(buf, sizeof(buf), &f);
	assert_int_equal(need, 2 + 9 + 11 + 2);
	for (cap = 0; cap < (size_t)need; cap++)
		assert_int_equal(mux_encode_header(buf, cap, &f), -ENOSPC);
	assert_int_equal(mux_encode_header(buf, (size_t)need, &f), need);
	for (cap = 0; cap < 6; cap++)
		assert_int_equal(mux_encode_header(buf, cap, &k), -ENOSPC);
	assert_int_equal(mux_encode_header(buf, 6, &k), 6);
}

static void test_encoded_new_frames_decode_back(void **state)
{
	static const char *const hosts[] = { "10.0.0.1", "::1", "fe80::1:2", "a.example", "_srv-1.x" };
	size_t i;
	int net;

	for (i = 0; i < ARRAY_SIZE(hosts); i++) {
		for (net = MUX_NET_TCP; net <= MUX_NET_UDP; net++) {
			struct mux_frame f = { .session_id = (uint16_t)(100 + i), .status = MUX_NEW,
					       .option = MUX_OPT_DATA, .has_data = true, .data_len = 2 };
			uint8_t buf[MUX_HDR_MAX + 2];
			struct trace *t;
			ssize_t n;

			assert_int_equal(mux_target_from_host(&f.target, (uint8_t)net, hosts[i], 65535), 0);
			n = mux_encode_header(buf, sizeof(buf), &f);
			assert_true(n > 0);
			memcpy(buf + n, "ok", 2);
			t = decode_whole(buf, (size_t)n + 2);
			assert_int_equal(assert_trace_well_formed(t), 1);
			assert_frame_equal(&t->rec[0].frame, &f);
			assert_memory_equal(t->data, "ok", 2);
			free(t);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* mux_target_from_host / mux_addr_str                                      */

static void test_target_from_host_parses_ipv4_ipv6_and_domain(void **state)
{
	struct mux_target t;

	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "192.168.1.254", 8080), 0);
	assert_int_equal(t.network, MUX_NET_TCP);
	assert_int_equal(t.port, 8080);
	assert_int_equal(t.addr.type, MUX_ADDR_IPV4);
	assert_memory_equal(t.addr.v4, "\xc0\xa8\x01\xfe", 4);

	assert_int_equal(mux_target_from_host(&t, MUX_NET_UDP, "::1", 53), 0);
	assert_int_equal(t.network, MUX_NET_UDP);
	assert_int_equal(t.addr.type, MUX_ADDR_IPV6);
	assert_int_equal(t.addr.v6[15], 1);

	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "[::1]", 53), 0);
	assert_int_equal(t.addr.type, MUX_ADDR_IPV6);

	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, MUX_CONTROL_DOMAIN, 0), 0);
	assert_int_equal(t.addr.type, MUX_ADDR_DOMAIN);
	assert_int_equal(t.addr.domain.len, 26);
	assert_string_equal(t.addr.domain.name, MUX_CONTROL_DOMAIN);
}

static void test_target_from_host_maps_v4_mapped_ipv6_to_ipv4(void **state)
{
	struct mux_target t;

	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "::ffff:127.0.0.1", 1), 0);
	assert_int_equal(t.addr.type, MUX_ADDR_IPV4);
	assert_memory_equal(t.addr.v4, localhost_v4, 4);
}

static void test_target_from_host_rejects_invalid_input(void **state)
{
	char longname[300];
	struct mux_target t;

	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, NULL, 1), -EINVAL);
	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "", 1), -EINVAL);
	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "a b", 1), -EINVAL);
	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "a:b:c:d:e", 1), -EINVAL);
	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, "host/x", 1), -EINVAL);
	assert_int_equal(mux_target_from_host(&t, 0, "1.2.3.4", 1), -EINVAL);
	assert_int_equal(mux_target_from_host(&t, 3, "1.2.3.4", 1), -EINVAL);
	memset(longname, 'a', 256);
	longname[256] = 0;
	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, longname, 1), -EINVAL);
	longname[255] = 0;
	assert_int_equal(mux_target_from_host(&t, MUX_NET_TCP, longname, 1), 0);
	assert_int_equal(t.addr.domain.len, 255);
}

static void test_addr_str_formats_each_type(void **state)
{
	struct mux_target t;
	char buf[300];

	mux_target_from_host(&t, MUX_NET_TCP, "127.0.0.1", 1);
	assert_string_equal(mux_addr_str(&t.addr, buf, sizeof(buf)), "127.0.0.1");
	mux_target_from_host(&t, MUX_NET_TCP, "::1", 1);
	assert_string_equal(mux_addr_str(&t.addr, buf, sizeof(buf)), "::1");
	mux_target_from_host(&t, MUX_NET_TCP, "2001:DB8:0:0:0:0:0:1", 1);
	assert_string_equal(mux_addr_str(&t.addr, buf, sizeof(buf)), "2001:db8::1");
	mux_target_from_host(&t, MUX_NET_TCP, "example.com", 1);
	assert_string_equal(mux_addr_str(&t.addr, buf, sizeof(buf)), "example.com");
	/* Truncates to the buffer, always NUL-terminated. */
	assert_string_equal(mux_addr_str(&t.addr, buf, 5), "exam");
	mux_target_from_host(&t, MUX_NET_TCP, "10.20.30.40", 1);
	assert_string_equal(mux_addr_str(&t.addr, buf, 6), "10.20");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decoder_golden_control_new_with_first_heartbeat),
		cmocka_unit_test(test_decoder_golden_heartbeat_keep_on_session_1),
		cmocka_unit_test(test_decoder_golden_user_new_with_data),
		cmocka_unit_test(test_decoder_golden_keep_response),
		cmocka_unit_test(test_decoder_golden_end_and_end_with_error),
		cmocka_unit_test(test_decoder_golden_new_without_data),
		cmocka_unit_test(test_decoder_golden_drain_then_end_on_session_1),
		cmocka_unit_test(test_decoder_golden_udp_new_with_datagram),
		cmocka_unit_test(test_encoder_golden_control_new_with_first_heartbeat),
		cmocka_unit_test(test_encoder_golden_user_new_with_data),
		cmocka_unit_test(test_encoder_golden_keep_end_and_new_without_data),
		cmocka_unit_test(test_encoder_golden_drain_and_udp_new),
		cmocka_unit_test(test_encoder_reproduces_every_captured_frame),
		cmocka_unit_test(test_decoder_whole_tunnel_stream_portal_to_bridge),
		cmocka_unit_test(test_decoder_same_events_for_every_split_of_captures),
		cmocka_unit_test(test_decoder_concatenated_data_matches_capture_payloads),
		cmocka_unit_test(test_decoder_random_input_same_events_for_every_chunking),
		cmocka_unit_test(test_decoder_empty_input_needs_more),
		cmocka_unit_test(test_decoder_data_events_point_into_caller_buffer),
		cmocka_unit_test(test_decoder_accepts_max_stream_data_len),
		cmocka_unit_test(test_decoder_keep_with_zero_data_len_has_no_data_event),
		cmocka_unit_test(test_decoder_passes_data_on_end_and_keepalive),
		cmocka_unit_test(test_decoder_preserves_unknown_option_bits),
		cmocka_unit_test(test_decoder_rejects_metalen_over_512),
		cmocka_unit_test(test_decoder_accepts_metalen_512_and_ignores_extra_metadata),
		cmocka_unit_test(test_decoder_rejects_metalen_under_4),
		cmocka_unit_test(test_decoder_rejects_new_with_metalen_under_8),
		cmocka_unit_test(test_decoder_rejects_bad_status),
		cmocka_unit_test(test_decoder_rejects_bad_network),
		cmocka_unit_test(test_decoder_reports_address_error_before_network_error),
		cmocka_unit_test(test_decoder_rejects_bad_address_type),
		cmocka_unit_test(test_decoder_rejects_address_not_fitting_metalen),
		cmocka_unit_test(test_decoder_rejects_invalid_domain_chars),
		cmocka_unit_test(test_decoder_rejects_empty_domain),
		cmocka_unit_test(test_decoder_accepts_every_valid_domain_char),
		cmocka_unit_test(test_decoder_skips_metadata_beyond_new_target),
		cmocka_unit_test(test_decoder_ignores_extra_metadata_on_keep_end_keepalive),
		cmocka_unit_test(test_decoder_converts_ip_looking_domain_to_ip),
		cmocka_unit_test(test_decoder_keeps_digit_domain_that_is_not_an_ip),
		cmocka_unit_test(test_decoder_converts_v4_mapped_ipv6_to_ipv4),
		cmocka_unit_test(test_decoder_error_is_sticky_and_consumes_nothing),
		cmocka_unit_test(test_decoder_strerror_names_every_error),
		cmocka_unit_test(test_encoder_every_status_and_option),
		cmocka_unit_test(test_encoder_keep_header_matches_inline_helper),
		cmocka_unit_test(test_encoder_new_for_every_network_and_address_type),
		cmocka_unit_test(test_encoder_writes_v4_mapped_ipv6_as_ipv4),
		cmocka_unit_test(test_encoder_accepts_domain_of_255),
		cmocka_unit_test(test_encoder_rejects_bad_status_network_and_address),
		cmocka_unit_test(test_encoder_rejects_empty_or_invalid_domain),
		cmocka_unit_test(test_encoder_returns_enospc_when_buffer_small),
		cmocka_unit_test(test_encoded_new_frames_decode_back),
		cmocka_unit_test(test_target_from_host_parses_ipv4_ipv6_and_domain),
		cmocka_unit_test(test_target_from_host_maps_v4_mapped_ipv6_to_ipv4),
		cmocka_unit_test(test_target_from_host_rejects_invalid_input),
		cmocka_unit_test(test_addr_str_formats_each_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
