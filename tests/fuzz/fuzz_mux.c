// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the Mux.Cool decoder (user/mux.c).  Checks, beyond
 * "no crash / no sanitizer report":
 *  - split invariance: the input decoded in one piece and in pseudo-random
 *    pieces (chunk sizes seeded by the first input byte) gives the same events
 *    and the same payload bytes;
 *  - DATA events point into the input, at the current position;
 *  - every decoded frame header re-encodes, and the encoding decodes back to
 *    the same frame.
 * See tests/fuzz/README for how to build and run it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mux.h"

#define MAX_EVENTS 4096

struct rec {
	enum mux_event_type type;
	uint16_t sid;
	uint8_t status, option;
	uint16_t data_len;
	size_t payload; /* DATA: merged length */
	enum mux_decode_error error;
};

struct run {
	struct rec rec[MAX_EVENTS];
	size_t nrec;
	uint8_t *payload;
	size_t npayload;
};

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_reencode(const struct mux_frame *f)
{
	uint8_t buf[MUX_HDR_MAX];
	struct mux_decoder d;
	struct mux_event ev;
	ssize_t n = mux_encode_header(buf, sizeof(buf), f);

	check(n > 0);
	mux_decoder_init(&d);
	check(mux_decode(&d, buf, (size_t)n, &ev) == (size_t)n);
	check(ev.type == MUX_EV_FRAME);
	check(ev.frame.session_id == f->session_id && ev.frame.status == f->status &&
	      ev.frame.option == f->option && ev.frame.data_len == f->data_len);
	if (f->status == MUX_NEW) {
		check(ev.frame.target.network == f->target.network);
		check(ev.frame.target.port == f->target.port);
		check(ev.frame.target.addr.type == f->target.addr.type);
	}
}

static void run_decoder(const uint8_t *in, size_t len, uint32_t seed, struct run *r)
{
	struct mux_decoder d;
	size_t off = 0;

	mux_decoder_init(&d);
	r->nrec = 0;
	r->npayload = 0;
	while (off <= len) {
		size_t chunk = len - off, pos = 0;

		if (seed) {
			seed = seed * 1103515245u + 12345u;
			chunk = 1 + (seed >> 16) % 64;
			if (chunk > len - off)
				chunk = len - off;
		}
		for (;;) {
			struct mux_event ev;
			size_t n = mux_decode(&d, in + off + pos, chunk - pos, &ev);
			struct rec *last = r->nrec ? &r->rec[r->nrec - 1] : NULL;

			check(n <= chunk - pos);
			if (ev.type == MUX_EV_NEED_MORE) {
				check(pos + n == chunk);
				break;
			}
			if (ev.type == MUX_EV_ERROR) {
				if (!last || last->type != MUX_EV_ERROR) {
					check(r->nrec < MAX_EVENTS);
					r->rec[r->nrec++] = (struct rec){ .type = ev.type, .error = ev.error };
				}
				check(mux_decode(&d, in + off + pos + n, chunk - pos - n, &ev) == 0);
				check(ev.type == MUX_EV_ERROR);
				return;
			}
			if (ev.type == MUX_EV_DATA) {
				check(ev.data == in + off + pos && ev.len == n && n > 0);
				memcpy(r->payload + r->npayload, ev.data, ev.len);
				r->npayload += ev.len;
				if (last && last->type == MUX_EV_DATA) {
					last->payload += ev.len;
					pos += n;
					continue;
				}
			}
			if (ev.type == MUX_EV_FRAME)
				check_reencode(&ev.frame);
			check(r->nrec < MAX_EVENTS);
			r->rec[r->nrec++] = (struct rec){
				.type = ev.type, .sid = ev.frame.session_id, .status = ev.frame.status,
				.option = ev.frame.option, .data_len = ev.frame.data_len,
				.payload = ev.type == MUX_EV_DATA ? ev.len : 0,
			};
			pos += n;
		}
		off += chunk;
		if (chunk == 0)
			break;
	}
}

static struct run whole, split;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t seed;

	if (size < 1 || size > 1 << 20)
		return 0;
	seed = data[0] | 1u;
	data++;
	size--;

	whole.payload = malloc(size + 1);
	split.payload = malloc(size + 1);
	check(whole.payload && split.payload);
	run_decoder(data, size, 0, &whole);
	run_decoder(data, size, seed, &split);

	check(whole.nrec == split.nrec);
	check(memcmp(whole.rec, split.rec, whole.nrec * sizeof(whole.rec[0])) == 0);
	check(whole.npayload == split.npayload);
	check(memcmp(whole.payload, split.payload, whole.npayload) == 0);
	free(whole.payload);
	free(split.payload);
	return 0;
}
