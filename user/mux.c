// SPDX-License-Identifier: MIT
/*
 * Mux.Cool frame codec (V2Ray 4.34 common/mux/frame.go and
 * common/protocol/address.go, reimplemented).  Pure: no I/O, no clock, no
 * allocation.  See mux.h for the API and the spec's §1 for the wire format.
 */
#include "mux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

enum decoder_state {
	DEC_META_LEN = 0, /* gathering the u16 metaLen */
	DEC_META,         /* gathering metaLen bytes of metadata */
	DEC_DATA_LEN,     /* gathering the u16 dataLen */
	DEC_DATA,         /* passing data_left payload bytes through */
	DEC_FRAME_END,    /* frame complete: FRAME_END is the next event */
	DEC_ERROR,        /* sticky */
};

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* V2Ray's isValidDomain(): the only characters a domain target may carry. */
static bool domain_char_ok(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_';
}

static bool domain_ok(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > MUX_DOMAIN_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!domain_char_ok((uint8_t)name[i]))
			return false;
	return true;
}

/* ::ffff:a.b.c.d, which V2Ray (Go's net.IP) always treats as IPv4. */
static bool is_v4_mapped(const uint8_t v6[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(v6, prefix, sizeof(prefix)) == 0;
}

/*
 * Length of the Unicode white space character (unicode.IsSpace) at the start
 * or at the end of s, 0 if none.  Go's strings.TrimSpace strips these, and
 * V2Ray's net.ParseAddress trims before trying to parse an IP, so a domain
 * "1.2.3.4\t" arrives as the IPv4 address 1.2.3.4.  Multi-byte sequences are
 * matched as whole UTF-8 encodings; a lead byte cannot be a continuation byte,
 * so matching the last 2 or 3 bytes is the same as decoding the last rune.
 */
static size_t utf8_space_len(const uint8_t *p, size_t n)
{
	if (n >= 1 && (p[0] == ' ' || (p[0] >= '\t' && p[0] <= '\r')))
		return 1;
	if (n >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0))
		return 2; /* U+0085 NEL, U+00A0 NBSP */
	if (n >= 3) {
		if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80)
			return 3; /* U+1680 */
		if (p[0] == 0xe2 && p[1] == 0x80 &&
		    ((p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
			return 3; /* U+2000..200A, U+2028, U+2029, U+202F */
		if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f)
			return 3; /* U+205F */
		if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80)
			return 3; /* U+3000 */
	}
	return 0;
}

static size_t space_prefix_len(const uint8_t *s, size_t n)
{
	return utf8_space_len(s, n);
}

static size_t space_suffix_len(const uint8_t *s, size_t n)
{
	size_t k;

	for (k = 1; k <= 3 && k <= n; k++)
		if (utf8_space_len(s + n - k, k) == k)
			return k;
	return 0;
}

/*
 * V2Ray's net.ParseAddress() restricted to its IP outcome: strip one pair of
 * enclosing brackets, trim white space, then parse as IPv4 or IPv6 (Go's
 * net.ParseIP and glibc's inet_pton agree: dotted quads without leading zeros,
 * RFC 4291 text without zone).  Returns true and fills *a when s is an IP.
 */
static bool parse_ip(const char *text, size_t n, struct mux_addr *a)
{
	const uint8_t *s = (const uint8_t *)text;
	char buf[INET6_ADDRSTRLEN + 8];
	uint8_t v6[16];
	size_t k;

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	while ((k = space_prefix_len(s, n)) > 0) {
		s += k;
		n -= k;
	}
	while ((k = space_suffix_len(s, n)) > 0)
		n -= k;

	/* Longer than any IP text, or with a NUL that would cut it short. */
	if (n == 0 || n >= sizeof(buf) || memchr(s, 0, n))
		return false;
	memcpy(buf, s, n);
	buf[n] = 0;

	if (inet_pton(AF_INET, buf, a->v4) == 1) {
		a->type = MUX_ADDR_IPV4;
		return true;
	}
	if (inet_pton(AF_INET6, buf, v6) == 1) {
		if (is_v4_mapped(v6)) {
			a->type = MUX_ADDR_IPV4;
			memcpy(a->v4, v6 + 12, 4);
		} else {
			a->type = MUX_ADDR_IPV6;
			memcpy(a->v6, v6, 16);
		}
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------------ */
/* Encoder                                                                  */

ssize_t mux_encode_header(uint8_t *buf, size_t cap, const struct mux_frame *f)
{
	const struct mux_addr *a = &f->target.addr;
	size_t meta_len = 4, addr_len = 0, total;
	uint8_t addr_type = 0;
	size_t pos;

	if (f->status < MUX_NEW || f->status > MUX_KEEPALIVE)
		return -EINVAL;

	if (f->status == MUX_NEW) {
		if (f->target.network != MUX_NET_TCP && f->target.network != MUX_NET_UDP)
			return -EINVAL;
		switch (a->type) {
		case MUX_ADDR_IPV4:
			addr_type = MUX_ADDR_IPV4;
			addr_len = 4;
			break;
		case MUX_ADDR_IPV6:
			/* Go keeps a v4-mapped address as IPv4: V2Ray writes type 1. */
			if (is_v4_mapped(a->v6)) {
				addr_type = MUX_ADDR_IPV4;
				addr_len = 4;
			} else {
				addr_type = MUX_ADDR_IPV6;
				addr_len = 16;
			}
			break;
		case MUX_ADDR_DOMAIN:
			if (!domain_ok(a->domain.name, a->domain.len))
				return -EINVAL;
			addr_type = MUX_ADDR_DOMAIN;
			addr_len = 1 + (size_t)a->domain.len;
			break;
		default:
			return -EINVAL;
		}
		/* network + port + address type + address */
		meta_len += 1 + 2 + 1 + addr_len;
	}

	total = 2 + meta_len + ((f->option & MUX_OPT_DATA) ? 2 : 0);
	if (cap < total)
		return -ENOSPC;

	put_be16(buf, (uint16_t)meta_len);
	put_be16(buf + 2, f->session_id);
	buf[4] = f->status;
	buf[5] = f->option;
	pos = 6;
	if (f->status == MUX_NEW) {
		buf[pos++] = f->target.network;
		put_be16(buf + pos, f->target.port);
		pos += 2;
		buf[pos++] = addr_type;
		if (addr_type == MUX_ADDR_DOMAIN) {
			buf[pos] = a->domain.len;
			memcpy(buf + pos + 1, a->domain.name, a->domain.len);
		} else if (a->type == MUX_ADDR_IPV6 && addr_type == MUX_ADDR_IPV4) {
			memcpy(buf + pos, a->v6 + 12, 4);
		} else {
			memcpy(buf + pos, addr_type == MUX_ADDR_IPV4 ? a->v4 : a->v6, addr_len);
		}
		pos += addr_len;
	}
	if (f->option & MUX_OPT_DATA) {
		put_be16(buf + pos, f->data_len);
		pos += 2;
	}
	return (ssize_t)pos;
}

int mux_target_from_host(struct mux_target *t, uint8_t network, const char *host, uint16_t port)
{
	const uint8_t *s;
	size_t n, k;

	if (!host || (network != MUX_NET_TCP && network != MUX_NET_UDP))
		return -EINVAL;

	memset(t, 0, sizeof(*t));
	t->network = network;
	t->port = port;

	n = strlen(host);
	if (parse_ip(host, n, &t->addr))
		return 0;

	/* A domain: net.ParseAddress trims white space from it too. */
	s = (const uint8_t *)host;
	while ((k = space_prefix_len(s, n)) > 0) {
		s += k;
		n -= k;
	}
	while ((k = space_suffix_len(s, n)) > 0)
		n -= k;
	if (!domain_ok((const char *)s, n))
		return -EINVAL;
	t->addr.type = MUX_ADDR_DOMAIN;
	t->addr.domain.len = (uint8_t)n;
	memcpy(t->addr.domain.name, s, n);
	t->addr.domain.name[n] = 0;
	return 0;
}

const char *mux_addr_str(const struct mux_addr *a, char *buf, size_t cap)
{
	char tmp[MUX_DOMAIN_MAX + 1];

	if (cap == 0)
		return buf;
	switch (a->type) {
	case MUX_ADDR_IPV4:
		inet_ntop(AF_INET, a->v4, tmp, sizeof(tmp));
		break;
	case MUX_ADDR_IPV6:
		inet_ntop(AF_INET6, a->v6, tmp, sizeof(tmp));
		break;
	case MUX_ADDR_DOMAIN:
		memcpy(tmp, a->domain.name, a->domain.len);
		tmp[a->domain.len] = 0;
		break;
	default:
		snprintf(tmp, sizeof(tmp), "?type%u", a->type);
		break;
	}
	/* Truncate rather than fail: this is for logs. */
	snprintf(buf, cap, "%s", tmp);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Decoder                                                                  */

static const char *const decode_errors[] = {
	[MUX_ERR_NONE] = "no error",
	[MUX_ERR_META_TOO_LONG] = "invalid metalen (max 512)",
	[MUX_ERR_META_TOO_SHORT] = "insufficient metadata (metalen < 4, or < 8 for New)",
	[MUX_ERR_BAD_STATUS] = "unknown session status",
	[MUX_ERR_BAD_NETWORK] = "unknown network type",
	[MUX_ERR_BAD_ADDR_TYPE] = "unknown address type",
	[MUX_ERR_BAD_ADDR_LEN] = "address does not fit in metadata",
	[MUX_ERR_BAD_DOMAIN] = "invalid domain name",
};

const char *mux_decode_strerror(enum mux_decode_error e)
{
	if ((unsigned)e >= sizeof(decode_errors) / sizeof(decode_errors[0]) || !decode_errors[e])
		return "unknown decode error";
	return decode_errors[e];
}

void mux_decoder_init(struct mux_decoder *d)
{
	memset(d, 0, sizeof(*d));
	d->state = DEC_META_LEN;
	d->need = 2;
}

/*
 * Parse a New frame's target from the metadata after sessID/status/option,
 * in V2Ray's order: port, address (type, bytes, domain checks), and only then
 * the network byte, so a frame bad in both ways reports the address error.
 * Metadata bytes after the target are ignored, as V2Ray does.
 */
static enum mux_decode_error parse_target(const uint8_t *meta, size_t meta_len,
					  struct mux_target *t)
{
	size_t pos = 5; /* sessID(2) status(1) option(1) network(1) */
	uint8_t network = meta[4];
	size_t dlen;

	t->port = get_be16(meta + pos); /* meta_len >= 8 checked by the caller */
	pos += 2;
	memset(&t->addr, 0, sizeof(t->addr));
	t->addr.type = meta[pos++];

	switch (t->addr.type) {
	case MUX_ADDR_IPV4:
		if (meta_len - pos < 4)
			return MUX_ERR_BAD_ADDR_LEN;
		memcpy(t->addr.v4, meta + pos, 4);
		break;
	case MUX_ADDR_IPV6:
		if (meta_len - pos < 16)
			return MUX_ERR_BAD_ADDR_LEN;
		memcpy(t->addr.v6, meta + pos, 16);
		/* Go's net.IPAddress turns a v4-mapped address into IPv4. */
		if (is_v4_mapped(t->addr.v6)) {
			uint8_t v4[4];

			memcpy(v4, t->addr.v6 + 12, 4);
			memset(&t->addr, 0, sizeof(t->addr));
			t->addr.type = MUX_ADDR_IPV4;
			memcpy(t->addr.v4, v4, 4);
		}
		break;
	case MUX_ADDR_DOMAIN:
		if (meta_len - pos < 1)
			return MUX_ERR_BAD_ADDR_LEN;
		dlen = meta[pos++];
		if (meta_len - pos < dlen)
			return MUX_ERR_BAD_ADDR_LEN;
		/* V2Ray indexes domain[0] unchecked (a Go panic); refuse instead. */
		if (dlen == 0)
			return MUX_ERR_BAD_DOMAIN;
		/* V2Ray quirk: a "domain" starting like an IP that parses as one is one. */
		if ((meta[pos] >= '0' && meta[pos] <= '9') || meta[pos] == '[') {
			struct mux_addr ip;

			if (parse_ip((const char *)meta + pos, dlen, &ip)) {
				t->addr = ip;
				break;
			}
		}
		if (!domain_ok((const char *)meta + pos, dlen))
			return MUX_ERR_BAD_DOMAIN;
		t->addr.domain.len = (uint8_t)dlen;
		memcpy(t->addr.domain.name, meta + pos, dlen);
		t->addr.domain.name[dlen] = 0;
		break;
	default:
		return MUX_ERR_BAD_ADDR_TYPE;
	}

	if (network != MUX_NET_TCP && network != MUX_NET_UDP)
		return MUX_ERR_BAD_NETWORK;
	t->network = network;
	return MUX_ERR_NONE;
}

/* The whole metadata block is in d->hdr[2..]: fill d->frame from it. */
static enum mux_decode_error parse_meta(struct mux_decoder *d, size_t meta_len)
{
	const uint8_t *meta = d->hdr + 2;
	struct mux_frame *f = &d->frame;

	f->session_id = get_be16(meta);
	f->status = meta[2];
	f->option = meta[3];
	f->has_data = (f->option & MUX_OPT_DATA) != 0;
	f->data_len = 0;

	if (f->status == MUX_NEW) {
		if (meta_len < MUX_META_NEW_MIN)
			return MUX_ERR_META_TOO_SHORT;
		return parse_target(meta, meta_len, &f->target);
	}
	if (f->status < MUX_NEW || f->status > MUX_KEEPALIVE)
		return MUX_ERR_BAD_STATUS;
	return MUX_ERR_NONE;
}

/*
 * Copy the frame into the event.  The target (~270 bytes) is only meaningful
 * for New frames, so other frames skip it: this runs for every DATA event.
 */
static void event_frame(const struct mux_decoder *d, struct mux_event *ev)
{
	if (d->frame.status == MUX_NEW) {
		ev->frame = d->frame;
	} else {
		ev->frame.session_id = d->frame.session_id;
		ev->frame.status = d->frame.status;
		ev->frame.option = d->frame.option;
		ev->frame.has_data = d->frame.has_data;
		ev->frame.data_len = d->frame.data_len;
	}
}

static size_t decode_fail(struct mux_decoder *d, enum mux_decode_error e,
			  struct mux_event *ev, size_t consumed)
{
	d->state = DEC_ERROR;
	d->error = e;
	ev->type = MUX_EV_ERROR;
	ev->error = e;
	return consumed;
}

size_t mux_decode(struct mux_decoder *d, const uint8_t *in, size_t len, struct mux_event *ev)
{
	size_t pos = 0, n, meta_len;
	enum mux_decode_error err;

	ev->data = NULL;
	ev->len = 0;
	ev->error = MUX_ERR_NONE;

	for (;;) {
		switch (d->state) {
		case DEC_ERROR:
			ev->type = MUX_EV_ERROR;
			ev->error = d->error;
			return pos;

		case DEC_FRAME_END:
			event_frame(d, ev);
			ev->type = MUX_EV_FRAME_END;
			d->state = DEC_META_LEN;
			d->have = 0;
			d->need = 2;
			return pos;

		case DEC_DATA:
			if (d->data_left == 0) {
				d->state = DEC_FRAME_END;
				continue;
			}
			if (pos == len)
				goto need_more;
			n = len - pos;
			if (n > d->data_left)
				n = d->data_left;
			event_frame(d, ev);
			ev->type = MUX_EV_DATA;
			ev->data = in + pos;
			ev->len = n;
			d->data_left -= (uint32_t)n;
			return pos + n;

		default:
			/* Header bytes: gather until d->need are in d->hdr. */
			if (pos == len)
				goto need_more; /* also keeps in == NULL away from memcpy */
			n = d->need - d->have;
			if (n > len - pos)
				n = len - pos;
			memcpy(d->hdr + d->have, in + pos, n);
			d->have += n;
			pos += n;
			if (d->have < d->need)
				goto need_more;
			break;
		}

		/* A header piece is complete. */
		switch (d->state) {
		case DEC_META_LEN:
			meta_len = get_be16(d->hdr);
			/* Checked before reading the block, as V2Ray does for > 512. */
			if (meta_len > MUX_META_MAX)
				return decode_fail(d, MUX_ERR_META_TOO_LONG, ev, pos);
			if (meta_len < MUX_META_MIN)
				return decode_fail(d, MUX_ERR_META_TOO_SHORT, ev, pos);
			d->need = 2 + meta_len;
			d->state = DEC_META;
			break;

		case DEC_META:
			meta_len = d->need - 2;
			err = parse_meta(d, meta_len);
			if (err != MUX_ERR_NONE)
				return decode_fail(d, err, ev, pos);
			if (d->frame.has_data) {
				d->need += 2;
				d->state = DEC_DATA_LEN;
				break;
			}
			event_frame(d, ev);
			ev->type = MUX_EV_FRAME;
			d->state = DEC_FRAME_END;
			return pos;

		case DEC_DATA_LEN:
			d->frame.data_len = get_be16(d->hdr + d->need - 2);
			d->data_left = d->frame.data_len;
			event_frame(d, ev);
			ev->type = MUX_EV_FRAME;
			d->state = DEC_DATA;
			return pos;
		}
	}

need_more:
	ev->type = MUX_EV_NEED_MORE;
	return pos;
}
