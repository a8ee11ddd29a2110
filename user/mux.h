/* SPDX-License-Identifier: MIT */
/*
 * Mux.Cool frame codec: encoder and incremental decoder.
 *
 * Pure code: no I/O, no clock, no allocation.  Wire format and limits are those
 * of V2Ray 4.34 (see shared/reference/mux-cool-and-reverse.md §1).
 *
 *   metaLen u16 | sessID u16 | status u8 | option u8 | [target, New only]
 *   [dataLen u16 | data]            (only when option & MUX_OPT_DATA)
 *
 *   target = network u8 | port u16 | addrType u8 | addr
 */
#ifndef REVSOCK_MUX_H
#define REVSOCK_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum mux_status {
	MUX_NEW = 0x01,
	MUX_KEEP = 0x02,
	MUX_END = 0x03,
	MUX_KEEPALIVE = 0x04,
};

#define MUX_OPT_DATA 0x01
#define MUX_OPT_ERROR 0x02

enum mux_network {
	MUX_NET_TCP = 0x01,
	MUX_NET_UDP = 0x02,
};

enum mux_addr_type {
	MUX_ADDR_IPV4 = 0x01,
	MUX_ADDR_DOMAIN = 0x02,
	MUX_ADDR_IPV6 = 0x03,
};

#define MUX_META_MAX 512           /* reader: metaLen > 512 is fatal */
#define MUX_META_MIN 4             /* reader: metaLen < 4 is fatal */
#define MUX_META_NEW_MIN 8         /* reader: New with metaLen < 8 is fatal */
#define MUX_STREAM_DATA_MAX 65535  /* a u16 */
#define MUX_UDP_DATA_MAX 2048      /* V2Ray's buf.Size: larger kills a V2Ray peer's tunnel */
#define MUX_DOMAIN_MAX 255
/* Largest encoded frame header: metaLen + 512 bytes of metadata + dataLen. */
#define MUX_HDR_MAX (2 + MUX_META_MAX + 2)
/* Header of a Keep/End/KeepAlive frame with data: 2+4+2. */
#define MUX_KEEP_HDR_LEN 8

#define MUX_CONTROL_DOMAIN "reverse.internal.v2ray.com"
#define MUX_CONTROL_SESSION_ID 1

struct mux_addr {
	uint8_t type; /* enum mux_addr_type */
	union {
		uint8_t v4[4];
		uint8_t v6[16];
		struct {
			uint8_t len;
			char name[MUX_DOMAIN_MAX + 1]; /* NUL-terminated for convenience */
		} domain;
	};
};

struct mux_target {
	uint8_t network; /* enum mux_network */
	uint16_t port;
	struct mux_addr addr;
};

struct mux_frame {
	uint16_t session_id;
	uint8_t status; /* enum mux_status */
	uint8_t option; /* MUX_OPT_* bits, other bits preserved as received */
	bool has_data;  /* option & MUX_OPT_DATA */
	uint16_t data_len;
	struct mux_target target; /* valid only when status == MUX_NEW */
};

/*
 * Encode a frame header, including the u16 dataLen when f->option has
 * MUX_OPT_DATA (the f->data_len payload bytes themselves are not written: the
 * caller sends them after the header, e.g. with writev).
 * Returns the number of bytes written to buf, or a negative errno:
 *   -EINVAL  bad status/network/address type, domain empty, too long or with
 *            characters V2Ray would refuse
 *   -ENOSPC  cap too small
 */
ssize_t mux_encode_header(uint8_t *buf, size_t cap, const struct mux_frame *f);

/* Convenience: the 8-byte header of a Keep+Data frame (the data path's hot case). */
static inline void mux_keep_header(uint8_t hdr[MUX_KEEP_HDR_LEN], uint16_t sid, uint16_t len)
{
	hdr[0] = 0;
	hdr[1] = 4;
	hdr[2] = (uint8_t)(sid >> 8);
	hdr[3] = (uint8_t)sid;
	hdr[4] = MUX_KEEP;
	hdr[5] = MUX_OPT_DATA;
	hdr[6] = (uint8_t)(len >> 8);
	hdr[7] = (uint8_t)len;
}

/* Build a mux_target from text: "1.2.3.4", "::1" or a domain. Returns 0 or -EINVAL. */
int mux_target_from_host(struct mux_target *t, uint8_t network, const char *host, uint16_t port);
/* Format the address of a target ("1.2.3.4", "::1", "example.com") into buf. */
const char *mux_addr_str(const struct mux_addr *a, char *buf, size_t cap);

/*
 * Incremental decoder.  Feed it any split of the byte stream; the sequence of
 * events is the same for every split.  Payload bytes are never copied: DATA
 * events point into the caller's input buffer.
 */
enum mux_decode_error {
	MUX_ERR_NONE = 0,
	MUX_ERR_META_TOO_LONG,   /* metaLen > 512 */
	MUX_ERR_META_TOO_SHORT,  /* metaLen < 4, or New with metaLen < 8 */
	MUX_ERR_BAD_STATUS,      /* status not 1..4 */
	MUX_ERR_BAD_NETWORK,     /* New: network not TCP/UDP */
	MUX_ERR_BAD_ADDR_TYPE,   /* New: address type not 1/2/3 */
	MUX_ERR_BAD_ADDR_LEN,    /* New: address does not fit metaLen */
	MUX_ERR_BAD_DOMAIN,      /* New: domain empty or not [A-Za-z0-9._-] */
};

/* Human-readable reason, e.g. "invalid metalen 600 (max 512)"-style names. */
const char *mux_decode_strerror(enum mux_decode_error e);

enum mux_event_type {
	MUX_EV_NEED_MORE = 0, /* all input consumed, no event */
	MUX_EV_FRAME,         /* a frame header: ev->frame is valid; DATA events follow if has_data */
	MUX_EV_DATA,          /* ev->data/ev->len: a piece of the current frame's payload */
	MUX_EV_FRAME_END,     /* the current frame (and its payload) is complete */
	MUX_EV_ERROR,         /* fatal: ev->error says why; the decoder stays in error */
};

struct mux_event {
	enum mux_event_type type;
	struct mux_frame frame;     /* MUX_EV_FRAME, also kept valid during DATA/FRAME_END */
	const uint8_t *data;        /* MUX_EV_DATA */
	size_t len;                 /* MUX_EV_DATA */
	enum mux_decode_error error; /* MUX_EV_ERROR */
};

struct mux_decoder {
	int state;                   /* private */
	uint8_t hdr[MUX_HDR_MAX];    /* private: header bytes gathered so far */
	size_t have;                 /* private */
	size_t need;                 /* private */
	uint32_t data_left;          /* private: payload bytes still to come */
	struct mux_frame frame;      /* private: the frame being decoded */
	enum mux_decode_error error; /* sticky */
};

void mux_decoder_init(struct mux_decoder *d);

/*
 * Consume bytes from in[0..len) and produce at most one event.  Returns the
 * number of bytes consumed (0..len).  Call again with the rest until it returns
 * MUX_EV_NEED_MORE with everything consumed.  A frame without data yields
 * FRAME then FRAME_END; with data, FRAME, zero or more DATA, FRAME_END (a
 * zero-length data block yields no DATA event).  After MUX_EV_ERROR every call
 * returns MUX_EV_ERROR and consumes nothing.
 */
size_t mux_decode(struct mux_decoder *d, const uint8_t *in, size_t len, struct mux_event *ev);

#endif
