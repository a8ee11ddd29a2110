// SPDX-License-Identifier: MIT
/*
 * Config parser: the V2Ray 4.34 JSON subset a reverse setup needs, plus our
 * own top-level "revsock" object.
 *
 * Policy: every key is either understood or refused.  V2Ray ignores keys it
 * does not know and we deliberately do not: a setting we accepted but did not
 * implement would make revsock behave differently from V2Ray without saying
 * so.  The one exception is a JSON null, which V2Ray (Go's encoding/json)
 * treats exactly like an absent key, and so do we.
 *
 * Every error is one line "<json path>: <reason>" and the parse returns
 * -EINVAL; nothing is half-filled: the result is built in a private struct
 * and only copied out on success.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define PATH_MAX_LEN 256

/* Limits on the "revsock" object: large enough for any sane use, small
 * enough that seconds * 1000 still fits an unsigned and a buffer size
 * cannot be a typo that eats the machine. */
#define REVSOCK_SECONDS_MAX 86400u
#define REVSOCK_BUFFER_MIN 65536u
#define REVSOCK_BUFFER_MAX (1u << 30)

struct pctx {
	char *err;
};

static int fail(struct pctx *p, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write "path: reason" once (the first error wins) and return -EINVAL.
 * Keys and values come from the user; control characters are masked so the
 * message stays a single line. */
static int fail(struct pctx *p, const char *path, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	n = snprintf(p->err, CONFIG_ERR_MAX, "%s: ", path);
	if (n < 0 || n >= CONFIG_ERR_MAX)
		n = CONFIG_ERR_MAX - 1;
	va_start(ap, fmt);
	vsnprintf(p->err + n, CONFIG_ERR_MAX - (size_t)n, fmt, ap);
	va_end(ap);
	for (s = p->err; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	return -EINVAL;
}

static int fail_unsupported(struct pctx *p, const char *path)
{
	return fail(p, path, "not supported by revsock");
}

/* Bounded append: paths only ever get truncated, which is harmless in a
 * message, and this keeps -Wformat-truncation quiet. */
static size_t path_append(char *out, size_t n, const char *s)
{
	while (*s && n < PATH_MAX_LEN - 1)
		out[n++] = *s++;
	out[n] = '\0';
	return n;
}

static void join_key(char *out, const char *parent, const char *key)
{
	size_t n = 0;

	out[0] = '\0';
	if (parent[0]) {
		n = path_append(out, n, parent);
		n = path_append(out, n, ".");
	}
	path_append(out, n, key);
}

static void join_idx(char *out, const char *parent, size_t i)
{
	char idx[32];
	size_t n;

	snprintf(idx, sizeof(idx), "[%zu]", i);
	out[0] = '\0';
	n = path_append(out, 0, parent);
	path_append(out, n, idx);
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

static int want_object(struct pctx *p, const char *path, const json_t *v)
{
	if (!json_is_object(v))
		return fail(p, path, "must be an object, not %s", json_kind(v));
	return 0;
}

static int want_array(struct pctx *p, const char *path, const json_t *v)
{
	if (!json_is_array(v))
		return fail(p, path, "must be an array, not %s", json_kind(v));
	return 0;
}

static int want_string(struct pctx *p, const char *path, const json_t *v)
{
	if (!json_is_string(v))
		return fail(p, path, "must be a string, not %s", json_kind(v));
	return 0;
}

/* Copy a string into a fixed buffer; refuse rather than truncate. */
static int copy_str(struct pctx *p, const char *path, const json_t *v,
		    char *dst, size_t size, bool nonempty)
{
	const char *s;
	size_t len;
	int ret;

	ret = want_string(p, path, v);
	if (ret)
		return ret;
	s = json_string_value(v);
	len = json_string_length(v);
	if (nonempty && len == 0)
		return fail(p, path, "must not be empty");
	if (len >= size)
		return fail(p, path, "too long (%zu bytes, max %zu)", len, size - 1);
	memcpy(dst, s, len + 1);
	return 0;
}

/* A non-negative JSON integer within [min, max]. */
static int get_uint(struct pctx *p, const char *path, const json_t *v,
		    unsigned long long min, unsigned long long max,
		    unsigned long long *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return fail(p, path, "must be an integer, not %s", json_kind(v));
	i = json_integer_value(v);
	if (i < 0 || (unsigned long long)i < min || (unsigned long long)i > max)
		return fail(p, path, "%lld is out of range (%llu..%llu)",
			    (long long)i, min, max);
	*out = (unsigned long long)i;
	return 0;
}

/* Decimal digits only, no sign, no spaces: "80".  Returns -1 if not. */
static long parse_decimal(const char *s, size_t len)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 6)
		return -1;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Inbound "port" and dokodemo settings.port: a number or a numeric string
 * (V2Ray's PortRange accepts both), one port in 1..65535. */
static int get_port(struct pctx *p, const char *path, const json_t *v, uint16_t *out)
{
	const char *s;
	long n;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 1 || i > 65535)
			return fail(p, path, "%lld is out of range (1..65535)", (long long)i);
		*out = (uint16_t)i;
		return 0;
	}
	if (!json_is_string(v))
		return fail(p, path, "must be a port number, not %s", json_kind(v));
	s = json_string_value(v);
	if (strncmp(s, "env:", 4) == 0)
		return fail(p, path, "\"%s\": env: ports are not supported by revsock", s);
	if (strchr(s, '-') || strchr(s, ','))
		return fail(p, path, "\"%s\": port ranges are not supported by revsock (one port)", s);
	n = parse_decimal(s, strlen(s));
	if (n < 1 || n > 65535)
		return fail(p, path, "\"%s\" is not a port number (1..65535)", s);
	*out = (uint16_t)n;
	return 0;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* A host we may have to resolve or connect to: an IP literal, "[v6]" (V2Ray's
 * ParseAddress strips the brackets, so do we), or a DNS name.  Names are
 * limited to the LDH set plus '_' so nothing odd reaches the resolver or the
 * Mux address field (which carries at most 255 bytes). */
static int check_host(struct pctx *p, const char *path, char *host)
{
	size_t len = strlen(host);
	size_t i;

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		memmove(host, host + 1, len - 2);
		host[len - 2] = '\0';
		if (inet_pton(AF_INET6, host, (unsigned char[16]){0}) != 1)
			return fail(p, path, "\"[%s]\" is not an IPv6 address", host);
		return 0;
	}
	if (is_ip_literal(host))
		return 0;
	if (len == 0)
		return fail(p, path, "must not be empty");
	if (len > 255)
		return fail(p, path, "host name too long (max 255 bytes)");
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_')
			return fail(p, path, "\"%s\" is not an IP address or a host name", host);
	}
	return 0;
}

/* V2Ray's NetworkList: "tcp", "udp", "tcp,udp" (any order, case-insensitive)
 * or an array of those names.  Returns a NET_* mask. */
static int get_network(struct pctx *p, const char *path, const json_t *v, unsigned *out)
{
	static const char allowed[] = "is not one of tcp, udp, tcp,udp";
	unsigned mask = 0;
	size_t i, n;

	if (!json_is_string(v) && !json_is_array(v))
		return fail(p, path, "must be a string, not %s", json_kind(v));
	n = json_is_array(v) ? json_array_size(v) : 1;
	for (i = 0; i < n; i++) {
		const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
		char buf[64], *save = NULL, *tok;

		if (!json_is_string(e))
			return fail(p, path, "must be a string, not %s", json_kind(e));
		if (json_string_length(e) >= sizeof(buf) || json_string_length(e) == 0)
			return fail(p, path, "\"%s\" %s", json_string_value(e), allowed);
		memcpy(buf, json_string_value(e), json_string_length(e) + 1);
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			for (char *end = tok + strlen(tok); end > tok && end[-1] == ' '; )
				*--end = '\0';
			if (strcasecmp(tok, "tcp") == 0)
				mask |= NET_TCP;
			else if (strcasecmp(tok, "udp") == 0)
				mask |= NET_UDP;
			else
				return fail(p, path, "\"%s\" %s", json_string_value(e), allowed);
		}
	}
	if (!mask)
		return fail(p, path, "empty network list (use tcp, udp or tcp,udp)");
	*out = mask;
	return 0;
}

/* ------------------------------------------------------------------ log */

static int parse_log(struct pctx *p, struct config *c, const json_t *obj)
{
	static const struct { const char *name; enum log_level lvl; } levels[] = {
		{ "debug", LOG_LVL_DEBUG }, { "info", LOG_LVL_INFO },
		{ "warning", LOG_LVL_WARNING }, { "error", LOG_LVL_ERROR },
		{ "none", LOG_LVL_NONE },
	};
	char path[PATH_MAX_LEN];
	const char *key;
	json_t *v;
	size_t i;
	int ret;

	ret = want_object(p, "log", obj);
	if (ret)
		return ret;
	json_object_foreach((json_t *)obj, key, v) {
		join_key(path, "log", key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "loglevel") == 0) {
			ret = want_string(p, path, v);
			if (ret)
				return ret;
			/* V2Ray lower-cases the level before matching. */
			for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
				if (strcasecmp(json_string_value(v), levels[i].name) == 0)
					break;
			if (i == sizeof(levels) / sizeof(levels[0]))
				return fail(p, path, "\"%s\" is not one of debug, info, warning, error, none",
					    json_string_value(v));
			c->log_level = levels[i].lvl;
		} else if (strcmp(key, "access") == 0 || strcmp(key, "error") == 0) {
			const char *s;

			ret = want_string(p, path, v);
			if (ret)
				return ret;
			s = json_string_value(v);
			/* "" means stderr/stdout to V2Ray, "none" means off:
			 * both are compatible with logging to stderr. */
			if (s[0] && strcmp(s, "none") != 0)
				return fail(p, path, "\"%s\": log files are not supported by revsock "
					    "(it logs to stderr); use \"none\" or \"\"", s);
		} else {
			return fail_unsupported(p, path);
		}
	}
	return 0;
}

/* -------------------------------------------------------------- reverse */

typedef int (*parse_elem_fn)(struct pctx *p, const char *path, const json_t *v, void *elem);

/*
 * An array whose elements parse_elem fills, each at its own JSON path
 * ("inbounds[2]").  The array is handed to *out before the elements are
 * parsed, so the caller's cleanup frees it on error.
 */
static int parse_object_array(struct pctx *p, const char *path, const json_t *arr, size_t elem_size,
			      void **out, size_t *n_out, parse_elem_fn parse_elem)
{
	char epath[PATH_MAX_LEN];
	size_t i, n;
	int ret;

	ret = want_array(p, path, arr);
	if (ret)
		return ret;
	n = json_array_size(arr);
	if (n == 0)
		return 0;
	*out = calloc(n, elem_size);
	if (!*out)
		return -ENOMEM;
	*n_out = n;
	for (i = 0; i < n; i++) {
		join_idx(epath, path, i);
		ret = parse_elem(p, epath, json_array_get(arr, i), (char *)*out + i * elem_size);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_reverse_entry(struct pctx *p, const char *epath, const json_t *e, void *elem)
{
	struct config_reverse_entry *ent = elem;
	char kpath[PATH_MAX_LEN];
	bool has_tag = false, has_domain = false;
	const char *key;
	json_t *v;
	int ret;

	ret = want_object(p, epath, e);
	if (ret)
		return ret;
	json_object_foreach((json_t *)e, key, v) {
		join_key(kpath, epath, key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "tag") == 0) {
			ret = copy_str(p, kpath, v, ent->tag, sizeof(ent->tag), true);
			has_tag = true;
		} else if (strcmp(key, "domain") == 0) {
			/* Compared byte for byte with the dispatched target
			 * (V2Ray does the same): no case folding here. */
			ret = copy_str(p, kpath, v, ent->domain, sizeof(ent->domain), true);
			has_domain = true;
		} else {
			ret = fail_unsupported(p, kpath);
		}
		if (ret)
			return ret;
	}
	if (!has_tag)
		return fail(p, epath, "\"tag\" is required");
	if (!has_domain)
		return fail(p, epath, "\"domain\" is required");
	return 0;
}

static int parse_reverse(struct pctx *p, struct config *c, const json_t *obj)
{
	char path[PATH_MAX_LEN];
	const char *key;
	json_t *v;
	int ret;

	ret = want_object(p, "reverse", obj);
	if (ret)
		return ret;
	json_object_foreach((json_t *)obj, key, v) {
		join_key(path, "reverse", key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "portals") == 0)
			ret = parse_object_array(p, path, v, sizeof(*c->portals), (void **)&c->portals,
						 &c->n_portals, parse_reverse_entry);
		else if (strcmp(key, "bridges") == 0)
			ret = parse_object_array(p, path, v, sizeof(*c->bridges), (void **)&c->bridges,
						 &c->n_bridges, parse_reverse_entry);
		else
			ret = fail_unsupported(p, path);
		if (ret)
			return ret;
	}
	return 0;
}

/* ------------------------------------------------------------- inbounds */

static int parse_dokodemo_settings(struct pctx *p, const char *path, const json_t *obj,
				   struct config_inbound *in)
{
	char kpath[PATH_MAX_LEN];
	bool has_addr = false, has_port = false;
	const char *key;
	json_t *v;
	int ret;

	ret = want_object(p, path, obj);
	if (ret)
		return ret;
	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "address") == 0) {
			ret = copy_str(p, kpath, v, in->address, sizeof(in->address), true);
			if (!ret)
				ret = check_host(p, kpath, in->address);
			has_addr = true;
		} else if (strcmp(key, "port") == 0) {
			ret = get_port(p, kpath, v, &in->target_port);
			has_port = true;
		} else if (strcmp(key, "network") == 0) {
			ret = get_network(p, kpath, v, &in->network);
		} else if (strcmp(key, "timeout") == 0) {
			/* Accepting it without honouring it would be a silent
			 * behaviour change; our idle timers live in "revsock". */
			ret = fail(p, kpath, "not supported by revsock (see the \"revsock\" "
				   "object for idle timeouts)");
		} else {
			ret = fail_unsupported(p, kpath);
		}
		if (ret)
			return ret;
	}
	if (!has_addr)
		return fail(p, path, "\"address\" is required");
	if (!has_port)
		return fail(p, path, "\"port\" is required");
	return 0;
}

static int parse_sniffing(struct pctx *p, const char *path, const json_t *obj)
{
	char kpath[PATH_MAX_LEN];
	const char *key;
	json_t *v;
	int ret;

	ret = want_object(p, path, obj);
	if (ret)
		return ret;
	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "enabled") == 0) {
			if (!json_is_boolean(v))
				return fail(p, kpath, "must be a boolean, not %s", json_kind(v));
			if (json_is_true(v))
				return fail(p, kpath, "sniffing is not supported by revsock "
					    "(only \"enabled\": false)");
		} else if (strcmp(key, "destOverride") == 0 || strcmp(key, "metadataOnly") == 0) {
			/* Inert while sniffing is off, in V2Ray as here. */
		} else {
			return fail_unsupported(p, kpath);
		}
	}
	return 0;
}

static int parse_inbound(struct pctx *p, const char *path, const json_t *obj, void *elem)
{
	struct config_inbound *in = elem;
	char kpath[PATH_MAX_LEN];
	const json_t *proto, *settings;
	const char *key;
	json_t *v;
	bool has_port = false;
	int ret;

	ret = want_object(p, path, obj);
	if (ret)
		return ret;
	snprintf(in->listen, sizeof(in->listen), "0.0.0.0");
	in->network = NET_TCP;

	/* Protocol first: everything else is only meaningful for it. */
	join_key(kpath, path, "protocol");
	proto = json_object_get(obj, "protocol");
	if (!proto || json_is_null(proto))
		return fail(p, path, "\"protocol\" is required");
	ret = want_string(p, kpath, proto);
	if (ret)
		return ret;
	if (strcasecmp(json_string_value(proto), "dokodemo-door") != 0)
		return fail(p, kpath, "\"%s\" is not supported (only \"dokodemo-door\")",
			    json_string_value(proto));

	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v) || strcmp(key, "protocol") == 0)
			continue;
		if (strcmp(key, "tag") == 0) {
			ret = copy_str(p, kpath, v, in->tag, sizeof(in->tag), false);
		} else if (strcmp(key, "listen") == 0) {
			ret = copy_str(p, kpath, v, in->listen, sizeof(in->listen), true);
			if (!ret && !is_ip_literal(in->listen))
				ret = fail(p, kpath, "\"%s\" is not an IP address", in->listen);
		} else if (strcmp(key, "port") == 0) {
			ret = get_port(p, kpath, v, &in->port);
			has_port = true;
		} else if (strcmp(key, "settings") == 0) {
			ret = 0;        /* below, after the loop */
		} else if (strcmp(key, "sniffing") == 0) {
			ret = parse_sniffing(p, kpath, v);
		} else if (strcmp(key, "streamSettings") == 0) {
			ret = fail(p, kpath, "not supported by revsock (plain TCP/UDP only)");
		} else {
			ret = fail_unsupported(p, kpath);
		}
		if (ret)
			return ret;
	}
	if (!has_port)
		return fail(p, path, "\"port\" is required");
	settings = json_object_get(obj, "settings");
	if (!settings || json_is_null(settings))
		return fail(p, path, "\"settings\" is required (address and port)");
	join_key(kpath, path, "settings");
	return parse_dokodemo_settings(p, kpath, settings, in);
}

static int parse_inbounds(struct pctx *p, struct config *c, const json_t *arr)
{
	return parse_object_array(p, "inbounds", arr, sizeof(*c->inbounds), (void **)&c->inbounds,
				  &c->n_inbounds, parse_inbound);
}

/* ------------------------------------------------------------ outbounds */

/* freedom settings.redirect: "host:port", "[v6]:port", ":port" (keep the
 * target's host) or "host:0" (keep its port), as V2Ray's SplitHostPort. */
static int parse_redirect(struct pctx *p, const char *path, const json_t *v,
			  struct config_outbound *out)
{
	char buf[CONFIG_HOST_MAX + 16];
	const char *s, *colon, *port;
	size_t hlen;
	long n;
	int ret;

	ret = want_string(p, path, v);
	if (ret)
		return ret;
	s = json_string_value(v);
	if (json_string_length(v) >= sizeof(buf))
		return fail(p, path, "too long");
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return fail(p, path, "\"%s\" is not host:port", s);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return fail(p, path, "\"%s\" is not host:port (IPv6 needs [brackets])", s);
	}
	port = colon + 1;
	n = parse_decimal(port, strlen(port));
	if (n < 0 || n > 65535)
		return fail(p, path, "\"%s\": \"%s\" is not a port number", s, port);
	hlen = (size_t)(colon - s);
	if (hlen >= sizeof(out->redirect_host))
		return fail(p, path, "host name too long");
	memcpy(out->redirect_host, s, hlen);
	out->redirect_host[hlen] = '\0';
	if (hlen) {
		ret = check_host(p, path, out->redirect_host);
		if (ret)
			return ret;
	}
	if (!hlen && n == 0)
		return fail(p, path, "\"%s\" redirects nowhere", s);
	out->has_redirect = true;
	out->redirect_port = (uint16_t)n;
	return 0;
}

static int parse_freedom_settings(struct pctx *p, const char *path, const json_t *obj,
				  struct config_outbound *out)
{
	char kpath[PATH_MAX_LEN];
	const char *key;
	json_t *v;
	int ret;

	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "redirect") == 0) {
			ret = parse_redirect(p, kpath, v, out);
		} else if (strcmp(key, "domainStrategy") == 0) {
			ret = want_string(p, kpath, v);
			if (!ret && strcasecmp(json_string_value(v), "AsIs") != 0)
				ret = fail(p, kpath, "\"%s\" is not supported (only \"AsIs\")",
					   json_string_value(v));
		} else {
			ret = fail_unsupported(p, kpath);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_blackhole_settings(struct pctx *p, const char *path, const json_t *obj)
{
	char kpath[PATH_MAX_LEN], rpath[PATH_MAX_LEN];
	const char *key, *rkey;
	json_t *v, *rv;
	int ret;

	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "response") != 0)
			return fail_unsupported(p, kpath);
		ret = want_object(p, kpath, v);
		if (ret)
			return ret;
		json_object_foreach(v, rkey, rv) {
			join_key(rpath, kpath, rkey);
			if (json_is_null(rv))
				continue;
			if (strcmp(rkey, "type") != 0)
				return fail_unsupported(p, rpath);
			ret = want_string(p, rpath, rv);
			if (ret)
				return ret;
			if (strcasecmp(json_string_value(rv), "none") != 0)
				return fail(p, rpath, "\"%s\" is not supported (only \"none\")",
					    json_string_value(rv));
		}
	}
	return 0;
}

static int parse_outbound(struct pctx *p, const char *path, const json_t *obj, void *elem)
{
	struct config_outbound *out = elem;
	char kpath[PATH_MAX_LEN];
	const json_t *proto;
	const char *key, *name;
	json_t *v;
	int ret;

	ret = want_object(p, path, obj);
	if (ret)
		return ret;
	join_key(kpath, path, "protocol");
	proto = json_object_get(obj, "protocol");
	if (!proto || json_is_null(proto))
		return fail(p, path, "\"protocol\" is required");
	ret = want_string(p, kpath, proto);
	if (ret)
		return ret;
	name = json_string_value(proto);
	if (strcasecmp(name, "freedom") == 0)
		out->protocol = OUTBOUND_FREEDOM;
	else if (strcasecmp(name, "blackhole") == 0)
		out->protocol = OUTBOUND_BLACKHOLE;
	else
		return fail(p, kpath, "\"%s\" is not supported (only \"freedom\", \"blackhole\")",
			    name);

	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v) || strcmp(key, "protocol") == 0)
			continue;
		if (strcmp(key, "tag") == 0) {
			ret = copy_str(p, kpath, v, out->tag, sizeof(out->tag), false);
		} else if (strcmp(key, "settings") == 0) {
			ret = want_object(p, kpath, v);
			if (!ret && out->protocol == OUTBOUND_FREEDOM)
				ret = parse_freedom_settings(p, kpath, v, out);
			else if (!ret)
				ret = parse_blackhole_settings(p, kpath, v);
		} else if (strcmp(key, "streamSettings") == 0) {
			ret = fail(p, kpath, "not supported by revsock (plain TCP/UDP only)");
		} else {
			/* sendThrough, proxySettings, mux, ... */
			ret = fail_unsupported(p, kpath);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_outbounds(struct pctx *p, struct config *c, const json_t *arr)
{
	return parse_object_array(p, "outbounds", arr, sizeof(*c->outbounds), (void **)&c->outbounds,
				  &c->n_outbounds, parse_outbound);
}

/* -------------------------------------------------------------- routing */

/* V2Ray's StringList: an array of strings or one string.  Calls fn for each
 * element with its path ("x[i]" for arrays, "x" for a single string). */
typedef int (*str_fn)(struct pctx *p, const char *path, const char *s, size_t len, void *arg);

static int for_each_string(struct pctx *p, const char *path, const json_t *v,
			   size_t *count, str_fn fn, void *arg)
{
	char epath[PATH_MAX_LEN];
	size_t i, n;
	int ret;

	if (json_is_string(v)) {
		if (count) {
			*count = 1;
			return 0;
		}
		return fn(p, path, json_string_value(v), json_string_length(v), arg);
	}
	if (!json_is_array(v))
		return fail(p, path, "must be an array of strings, not %s", json_kind(v));
	n = json_array_size(v);
	if (count) {
		*count = n;
		return 0;
	}
	for (i = 0; i < n; i++) {
		const json_t *e = json_array_get(v, i);

		join_idx(epath, path, i);
		ret = want_string(p, epath, e);
		if (ret)
			return ret;
		ret = fn(p, epath, json_string_value(e), json_string_length(e), arg);
		if (ret)
			return ret;
	}
	return 0;
}

static int add_inbound_tag(struct pctx *p, const char *path, const char *s, size_t len, void *arg)
{
	struct config_rule *r = arg;

	if (len == 0)
		return fail(p, path, "must not be empty");
	r->inbound_tags[r->n_inbound_tags] = strdup(s);
	if (!r->inbound_tags[r->n_inbound_tags])
		return -ENOMEM;
	r->n_inbound_tags++;
	return 0;
}

static int add_domain(struct pctx *p, const char *path, const char *s, size_t len, void *arg)
{
	static const char *const refused[] = { "regexp:", "geosite:", "ext:", "ext-domain:",
					       "dotless:" };
	struct config_rule *r = arg;
	struct config_domain *d = &r->domains[r->n_domains];
	const char *val = s;
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (strncmp(s, refused[i], strlen(refused[i])) == 0)
			return fail(p, path, "\"%s\": %s domains are not supported by revsock "
				    "(only full:, domain:, keyword: and plain)", s, refused[i]);
	if (strncmp(s, "full:", 5) == 0) {
		d->kind = DOMAIN_MATCH_FULL;
		val = s + 5;
	} else if (strncmp(s, "domain:", 7) == 0) {
		d->kind = DOMAIN_MATCH_SUFFIX;
		val = s + 7;
	} else if (strncmp(s, "keyword:", 8) == 0) {
		d->kind = DOMAIN_MATCH_SUBSTR;
		val = s + 8;
	} else {
		d->kind = DOMAIN_MATCH_SUBSTR;
	}
	len -= (size_t)(val - s);
	if (len == 0 || memchr(val, '\0', len))
		return fail(p, path, "\"%s\": empty domain", s);
	if (len >= sizeof(d->value))
		return fail(p, path, "\"%s\": too long (max %zu bytes)", s, sizeof(d->value) - 1);
	/* Matching is case-insensitive; store lower case once. */
	for (i = 0; i < len; i++)
		d->value[i] = (char)tolower((unsigned char)val[i]);
	d->value[len] = '\0';
	r->n_domains++;
	return 0;
}

static int add_cidr(struct pctx *p, const char *path, const char *s, size_t len, void *arg)
{
	struct config_rule *r = arg;
	struct config_cidr *cidr = &r->ips[r->n_ips];
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash;
	unsigned max, bits, i;

	if (strncmp(s, "geoip:", 6) == 0 || strncmp(s, "ext:", 4) == 0 ||
	    strncmp(s, "ext-ip:", 7) == 0)
		return fail(p, path, "\"%s\": geoip/ext lists are not supported by revsock "
			    "(only IP addresses and CIDRs)", s);
	if (len == 0 || len >= sizeof(buf))
		return fail(p, path, "\"%s\" is not an IP address or CIDR", s);
	memcpy(buf, s, len + 1);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, cidr->addr) == 1) {
		cidr->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, cidr->addr) == 1) {
		cidr->family = AF_INET6;
		max = 128;
	} else {
		return fail(p, path, "\"%s\" is not an IP address or CIDR", s);
	}
	bits = max;
	if (slash) {
		long n = parse_decimal(slash + 1, strlen(slash + 1));

		if (n < 0 || (unsigned long)n > max)
			return fail(p, path, "\"%s\": bad prefix length (0..%u)", s, max);
		bits = (unsigned)n;
	}
	cidr->prefix = (uint8_t)bits;
	/* Mask once here so the router compares whole bytes. */
	for (i = 0; i < max / 8; i++) {
		if (bits >= 8)
			bits -= 8;
		else {
			cidr->addr[i] &= (uint8_t)(0xff00u >> bits);
			bits = 0;
		}
	}
	r->n_ips++;
	return 0;
}

/* V2Ray's PortList: a number, or a string "53", "1000-2000", "53,443,1-9". */
static int add_ports(struct pctx *p, const char *path, const char *s, size_t len, void *arg)
{
	struct config_rule *r = arg;
	char buf[512], *save = NULL, *tok;
	size_t n = 0, cap = 0;
	struct config_port_range *pr = NULL;
	const char *q;

	if (len == 0 || len >= sizeof(buf))
		return fail(p, path, "\"%s\" is not a port list", s);
	memcpy(buf, s, len + 1);
	for (q = s; *q; q++)
		cap += *q == ',';
	pr = calloc(cap + 1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	r->ports = pr;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *dash, *end;
		long from, to;

		while (*tok == ' ')
			tok++;
		for (end = tok + strlen(tok); end > tok && end[-1] == ' '; )
			*--end = '\0';
		dash = strchr(tok, '-');
		if (dash) {
			*dash = '\0';
			from = parse_decimal(tok, strlen(tok));
			to = parse_decimal(dash + 1, strlen(dash + 1));
		} else {
			from = to = parse_decimal(tok, strlen(tok));
		}
		if (from < 0 || to < 0 || from > 65535 || to > 65535 || from > to)
			return fail(p, path, "\"%s\" is not a port list "
				    "(e.g. \"53\", \"1000-2000\", \"53,443,1000-2000\")", s);
		pr[n].from = (uint16_t)from;
		pr[n].to = (uint16_t)to;
		r->n_ports = ++n;
	}
	if (!n)
		return fail(p, path, "\"%s\" is not a port list", s);
	return 0;
}

static int parse_rule(struct pctx *p, const char *path, const json_t *obj, void *elem)
{
	struct config_rule *r = elem;
	char kpath[PATH_MAX_LEN];
	const json_t *type;
	const char *key;
	json_t *v;
	bool has_out = false;
	size_t n;
	int ret;

	ret = want_object(p, path, obj);
	if (ret)
		return ret;
	join_key(kpath, path, "type");
	type = json_object_get(obj, "type");
	if (!type || json_is_null(type))
		return fail(p, path, "\"type\" is required (only \"field\")");
	ret = want_string(p, kpath, type);
	if (ret)
		return ret;
	if (strcasecmp(json_string_value(type), "field") != 0)
		return fail(p, kpath, "\"%s\" is not supported (only \"field\")",
			    json_string_value(type));

	json_object_foreach((json_t *)obj, key, v) {
		join_key(kpath, path, key);
		if (json_is_null(v) || strcmp(key, "type") == 0)
			continue;
		if (strcmp(key, "inboundTag") == 0) {
			ret = for_each_string(p, kpath, v, &n, NULL, NULL);
			if (!ret && n && !r->inbound_tags) {
				r->inbound_tags = calloc(n, sizeof(*r->inbound_tags));
				if (!r->inbound_tags)
					return -ENOMEM;
			}
			if (!ret)
				ret = for_each_string(p, kpath, v, NULL, add_inbound_tag, r);
		} else if (strcmp(key, "domain") == 0) {
			ret = for_each_string(p, kpath, v, &n, NULL, NULL);
			if (!ret && n && !r->domains) {
				r->domains = calloc(n, sizeof(*r->domains));
				if (!r->domains)
					return -ENOMEM;
			}
			if (!ret)
				ret = for_each_string(p, kpath, v, NULL, add_domain, r);
		} else if (strcmp(key, "ip") == 0) {
			ret = for_each_string(p, kpath, v, &n, NULL, NULL);
			if (!ret && n && !r->ips) {
				r->ips = calloc(n, sizeof(*r->ips));
				if (!r->ips)
					return -ENOMEM;
			}
			if (!ret)
				ret = for_each_string(p, kpath, v, NULL, add_cidr, r);
		} else if (strcmp(key, "port") == 0) {
			if (json_is_integer(v)) {
				unsigned long long port;

				ret = get_uint(p, kpath, v, 0, 65535, &port);
				if (!ret) {
					r->ports = calloc(1, sizeof(*r->ports));
					if (!r->ports)
						return -ENOMEM;
					r->ports[0].from = r->ports[0].to = (uint16_t)port;
					r->n_ports = 1;
				}
			} else if (json_is_string(v)) {
				ret = add_ports(p, kpath, json_string_value(v),
						json_string_length(v), r);
			} else {
				ret = fail(p, kpath, "must be a number or a string, not %s",
					   json_kind(v));
			}
		} else if (strcmp(key, "network") == 0) {
			ret = get_network(p, kpath, v, &r->network);
		} else if (strcmp(key, "outboundTag") == 0) {
			ret = copy_str(p, kpath, v, r->outbound_tag, sizeof(r->outbound_tag), true);
			has_out = true;
		} else if (strcmp(key, "balancerTag") == 0) {
			ret = fail(p, kpath, "not supported by revsock (balancers are not "
				   "implemented; use outboundTag)");
		} else {
			/* source, sourcePort, user, protocol, attrs, ... */
			ret = fail_unsupported(p, kpath);
		}
		if (ret)
			return ret;
	}
	if (!has_out)
		return fail(p, path, "\"outboundTag\" is required");
	/* V2Ray refuses such a rule too ("this rule has no effective fields");
	 * accepting it would turn it into a catch-all. */
	if (!r->n_inbound_tags && !r->n_domains && !r->n_ips && !r->n_ports && !r->network)
		return fail(p, path, "rule has no conditions (V2Ray refuses it too)");
	return 0;
}

static int parse_routing(struct pctx *p, struct config *c, const json_t *obj)
{
	char path[PATH_MAX_LEN];
	const char *key;
	json_t *v;
	int ret;

	ret = want_object(p, "routing", obj);
	if (ret)
		return ret;
	json_object_foreach((json_t *)obj, key, v) {
		join_key(path, "routing", key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "domainStrategy") == 0) {
			ret = want_string(p, path, v);
			if (ret)
				return ret;
			/* We never resolve names while routing. */
			if (strcasecmp(json_string_value(v), "AsIs") != 0)
				return fail(p, path, "\"%s\" is not supported (only \"AsIs\")",
					    json_string_value(v));
		} else if (strcmp(key, "rules") == 0) {
			ret = parse_object_array(p, path, v, sizeof(*c->rules), (void **)&c->rules,
						 &c->n_rules, parse_rule);
			if (ret)
				return ret;
		} else {
			/* balancers, domainMatcher, ... */
			return fail_unsupported(p, path);
		}
	}
	return 0;
}

/* -------------------------------------------------------------- revsock */

static int parse_revsock(struct pctx *p, struct config *c, const json_t *obj)
{
	struct config_revsock *r = &c->revsock;
	char path[PATH_MAX_LEN];
	unsigned long long u;
	const char *key, *s;
	json_t *v;
	int ret;

	ret = want_object(p, "revsock", obj);
	if (ret)
		return ret;
	json_object_foreach((json_t *)obj, key, v) {
		join_key(path, "revsock", key);
		if (json_is_null(v))
			continue;
		if (strcmp(key, "tunnelIdleTimeout") == 0) {
			ret = get_uint(p, path, v, 1, REVSOCK_SECONDS_MAX, &u);
			r->tunnel_idle_timeout_s = (unsigned)u;
		} else if (strcmp(key, "sessionBufferBytes") == 0) {
			ret = get_uint(p, path, v, REVSOCK_BUFFER_MIN, REVSOCK_BUFFER_MAX, &u);
			r->session_buffer_bytes = (size_t)u;
		} else if (strcmp(key, "sessionStallTimeout") == 0) {
			ret = get_uint(p, path, v, 1, REVSOCK_SECONDS_MAX, &u);
			r->session_stall_timeout_s = (unsigned)u;
		} else if (strcmp(key, "udpIdleTimeout") == 0) {
			ret = get_uint(p, path, v, 1, REVSOCK_SECONDS_MAX, &u);
			r->udp_idle_timeout_s = (unsigned)u;
		} else if (strcmp(key, "linkGraceSeconds") == 0) {
			ret = get_uint(p, path, v, 0, REVSOCK_SECONDS_MAX, &u);
			r->link_grace_s = (unsigned)u;
		} else if (strcmp(key, "datapath") == 0) {
			ret = want_string(p, path, v);
			if (ret)
				return ret;
			s = json_string_value(v);
			if (strcmp(s, "auto") == 0)
				r->datapath = DATAPATH_AUTO;
			else if (strcmp(s, "userspace") == 0)
				r->datapath = DATAPATH_USERSPACE;
			else if (strcmp(s, "sockmap") == 0)
				r->datapath = DATAPATH_SOCKMAP;
			else
				ret = fail(p, path, "\"%s\" is not one of auto, userspace, sockmap", s);
		} else if (strcmp(key, "instance") == 0) {
			ret = copy_str(p, path, v, r->instance, sizeof(r->instance), false);
			/* It names a bpffs directory: keep it a plain file name. */
			for (s = r->instance; !ret && *s; s++)
				if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
					ret = fail(p, path, "\"%s\": only A-Z a-z 0-9 _ - allowed",
						   r->instance);
		} else {
			ret = fail(p, path, "unknown revsock setting");
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* ---------------------------------------------------------- cross checks */

static bool in_reverse(const struct config_reverse_entry *e, size_t n, const char *tag)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(e[i].tag, tag) == 0)
			return true;
	return false;
}

static bool in_inbounds(const struct config *c, const char *tag)
{
	size_t i;

	for (i = 0; i < c->n_inbounds; i++)
		if (c->inbounds[i].tag[0] && strcmp(c->inbounds[i].tag, tag) == 0)
			return true;
	return false;
}

static bool in_outbounds(const struct config *c, const char *tag)
{
	size_t i;

	for (i = 0; i < c->n_outbounds; i++)
		if (c->outbounds[i].tag[0] && strcmp(c->outbounds[i].tag, tag) == 0)
			return true;
	return false;
}

/*
 * Tags must be unique.  Outbounds and portals share V2Ray's outbound handler
 * namespace (a portal *is* an outbound handler), inbounds and bridges the
 * inbound tag seen by routing, so a clash across them is refused too.
 * Untagged inbounds/outbounds are allowed any number of times, as in V2Ray.
 */
static int check_tags(struct pctx *p, const struct config *c)
{
	char path[PATH_MAX_LEN];
	size_t i, j;

	for (i = 0; i < c->n_inbounds; i++) {
		const char *t = c->inbounds[i].tag;

		if (!t[0])
			continue;
		snprintf(path, sizeof(path), "inbounds[%zu].tag", i);
		for (j = 0; j < i; j++)
			if (strcmp(c->inbounds[j].tag, t) == 0)
				return fail(p, path, "duplicate tag \"%s\" (also inbounds[%zu])", t, j);
		if (in_reverse(c->bridges, c->n_bridges, t))
			return fail(p, path, "duplicate tag \"%s\" (also a bridge tag)", t);
	}
	for (i = 0; i < c->n_outbounds; i++) {
		const char *t = c->outbounds[i].tag;

		if (!t[0])
			continue;
		snprintf(path, sizeof(path), "outbounds[%zu].tag", i);
		for (j = 0; j < i; j++)
			if (strcmp(c->outbounds[j].tag, t) == 0)
				return fail(p, path, "duplicate tag \"%s\" (also outbounds[%zu])", t, j);
		if (in_reverse(c->portals, c->n_portals, t))
			return fail(p, path, "duplicate tag \"%s\" (also a portal tag)", t);
	}
	for (i = 0; i < c->n_portals; i++) {
		snprintf(path, sizeof(path), "reverse.portals[%zu].tag", i);
		for (j = 0; j < i; j++)
			if (strcmp(c->portals[j].tag, c->portals[i].tag) == 0)
				return fail(p, path, "duplicate tag \"%s\" (also reverse.portals[%zu])",
					    c->portals[i].tag, j);
	}
	for (i = 0; i < c->n_bridges; i++) {
		snprintf(path, sizeof(path), "reverse.bridges[%zu].tag", i);
		for (j = 0; j < i; j++)
			if (strcmp(c->bridges[j].tag, c->bridges[i].tag) == 0)
				return fail(p, path, "duplicate tag \"%s\" (also reverse.bridges[%zu])",
					    c->bridges[i].tag, j);
	}
	return 0;
}

static int check_rules(struct pctx *p, const struct config *c)
{
	char path[PATH_MAX_LEN];
	size_t i, j;

	for (i = 0; i < c->n_rules; i++) {
		const struct config_rule *r = &c->rules[i];

		for (j = 0; j < r->n_inbound_tags; j++) {
			const char *t = r->inbound_tags[j];

			if (in_inbounds(c, t) || in_reverse(c->bridges, c->n_bridges, t))
				continue;
			snprintf(path, sizeof(path), "routing.rules[%zu].inboundTag[%zu]", i, j);
			return fail(p, path, "unknown inbound tag \"%s\"", t);
		}
		if (in_outbounds(c, r->outbound_tag) ||
		    in_reverse(c->portals, c->n_portals, r->outbound_tag))
			continue;
		snprintf(path, sizeof(path), "routing.rules[%zu].outboundTag", i);
		return fail(p, path, "unknown outbound tag \"%s\"", r->outbound_tag);
	}
	return 0;
}

/* ------------------------------------------------------------ top level */

static int parse_root(struct pctx *p, struct config *c, const json_t *root)
{
	const char *key;
	json_t *v;
	int ret;

	if (!json_is_object(root))
		return fail(p, "(top level)", "must be an object, not %s", json_kind(root));
	json_object_foreach((json_t *)root, key, v) {
		if (json_is_null(v))
			continue;
		if (strcmp(key, "log") == 0)
			ret = parse_log(p, c, v);
		else if (strcmp(key, "reverse") == 0)
			ret = parse_reverse(p, c, v);
		else if (strcmp(key, "inbounds") == 0)
			ret = parse_inbounds(p, c, v);
		else if (strcmp(key, "outbounds") == 0)
			ret = parse_outbounds(p, c, v);
		else if (strcmp(key, "routing") == 0)
			ret = parse_routing(p, c, v);
		else if (strcmp(key, "revsock") == 0)
			ret = parse_revsock(p, c, v);
		else    /* policy, dns, api, stats, transport, inbound, ... */
			ret = fail_unsupported(p, key);
		if (ret)
			return ret;
	}
	ret = check_tags(p, c);
	if (ret)
		return ret;
	return check_rules(p, c);
}

/* Consumes root.  On failure *c is left as config_defaults() made it. */
static int parse_json(struct config *c, json_t *root, char err[CONFIG_ERR_MAX])
{
	struct pctx p = { .err = err };
	struct config tmp;
	int ret;

	config_defaults(&tmp);
	ret = parse_root(&p, &tmp, root);
	json_decref(root);
	if (ret) {
		if (ret == -ENOMEM)
			snprintf(err, CONFIG_ERR_MAX, "out of memory");
		config_free(&tmp);
		return ret;
	}
	*c = tmp;
	return 0;
}

static int json_syntax_error(const char *prefix, const json_error_t *je,
			     char err[CONFIG_ERR_MAX])
{
	snprintf(err, CONFIG_ERR_MAX, "%s%sline %d, column %d: %s",
		 prefix ? prefix : "", prefix ? ": " : "", je->line, je->column, je->text);
	for (char *s = err; *s; s++)
		if ((unsigned char)*s < 0x20)
			*s = '?';
	return -EINVAL;
}

int config_parse_string(struct config *c, const char *json, char err[CONFIG_ERR_MAX])
{
	json_error_t je;
	json_t *root;

	config_defaults(c);
	err[0] = '\0';
	root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return json_syntax_error(NULL, &je, err);
	return parse_json(c, root, err);
}

int config_parse_file(struct config *c, const char *path, char err[CONFIG_ERR_MAX])
{
	json_error_t je;
	json_t *root;
	FILE *f;
	int ret;

	config_defaults(c);
	err[0] = '\0';
	/* Open it ourselves: jansson does not report errno. */
	f = fopen(path, "r");
	if (!f) {
		ret = -errno;
		snprintf(err, CONFIG_ERR_MAX, "%s: %s", path, strerror(errno));
		return ret;
	}
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	if (!root && ferror(f)) {
		ret = errno ? -errno : -EIO;
		snprintf(err, CONFIG_ERR_MAX, "%s: %s", path, strerror(-ret));
		fclose(f);
		return ret;
	}
	fclose(f);
	if (!root)
		return json_syntax_error(path, &je, err);
	return parse_json(c, root, err);
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->log_level = LOG_LVL_WARNING;
	c->revsock.tunnel_idle_timeout_s = 10;
	c->revsock.session_buffer_bytes = 4194304;
	c->revsock.session_stall_timeout_s = 5;
	c->revsock.udp_idle_timeout_s = 60;
	c->revsock.datapath = DATAPATH_AUTO;
	c->revsock.link_grace_s = 5;
}

/* Frees everything and leaves *c as config_defaults() makes it, so freeing
 * twice, or freeing after a failed parse, is harmless. */
void config_free(struct config *c)
{
	size_t i, j;

	for (i = 0; i < c->n_rules; i++) {
		struct config_rule *r = &c->rules[i];

		for (j = 0; j < r->n_inbound_tags; j++)
			free(r->inbound_tags[j]);
		free(r->inbound_tags);
		free(r->domains);
		free(r->ips);
		free(r->ports);
	}
	free(c->rules);
	free(c->portals);
	free(c->bridges);
	free(c->inbounds);
	free(c->outbounds);
	config_defaults(c);
}

const struct config_outbound *config_find_outbound(const struct config *c, const char *tag)
{
	size_t i;

	if (!tag || !tag[0])
		return NULL;
	for (i = 0; i < c->n_outbounds; i++)
		if (strcmp(c->outbounds[i].tag, tag) == 0)
			return &c->outbounds[i];
	return NULL;
}

const struct config_reverse_entry *config_find_portal(const struct config *c, const char *tag)
{
	size_t i;

	if (!tag || !tag[0])
		return NULL;
	for (i = 0; i < c->n_portals; i++)
		if (strcmp(c->portals[i].tag, tag) == 0)
			return &c->portals[i];
	return NULL;
}
