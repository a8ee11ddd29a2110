// SPDX-License-Identifier: MIT
/*
 * Config parser tests: the two V2Ray reference files, defaults, every value
 * the subset accepts, and every class of refusal with its message.
 *
 * JSON in this file is written with single quotes and translated, so the
 * cases stay readable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "config.h"

/* Verbatim copies of shared/reference/v2ray/{portal,bridge}.json; the files
 * themselves are parsed too when they are present (test_reference_files). */
static const char portal_json[] =
"{\n"
"  \"log\": {\n"
"    \"loglevel\": \"warning\",\n"
"    \"access\": \"none\"\n"
"  },\n"
"  \"reverse\": {\n"
"    \"portals\": [\n"
"      {\n"
"        \"tag\": \"portal\",\n"
"        \"domain\": \"tunnel.v2ref.local\"\n"
"      }\n"
"    ]\n"
"  },\n"
"  \"inbounds\": [\n"
"    {\n"
"      \"tag\": \"tunnel\",\n"
"      \"listen\": \"127.0.0.1\",\n"
"      \"port\": 21001,\n"
"      \"protocol\": \"dokodemo-door\",\n"
"      \"settings\": {\n"
"        \"address\": \"tunnel.v2ref.local\",\n"
"        \"port\": 1,\n"
"        \"network\": \"tcp\"\n"
"      }\n"
"    },\n"
"    {\n"
"      \"tag\": \"public\",\n"
"      \"listen\": \"127.0.0.1\",\n"
"      \"port\": 21000,\n"
"      \"protocol\": \"dokodemo-door\",\n"
"      \"settings\": {\n"
"        \"address\": \"127.0.0.1\",\n"
"        \"port\": 25201,\n"
"        \"network\": \"tcp\"\n"
"      }\n"
"    },\n"
"    {\n"
"      \"tag\": \"public-echo\",\n"
"      \"listen\": \"127.0.0.1\",\n"
"      \"port\": 21002,\n"
"      \"protocol\": \"dokodemo-door\",\n"
"      \"settings\": {\n"
"        \"address\": \"127.0.0.1\",\n"
"        \"port\": 27007,\n"
"        \"network\": \"tcp\"\n"
"      }\n"
"    },\n"
"    {\n"
"      \"tag\": \"public-udp\",\n"
"      \"listen\": \"127.0.0.1\",\n"
"      \"port\": 21003,\n"
"      \"protocol\": \"dokodemo-door\",\n"
"      \"settings\": {\n"
"        \"address\": \"127.0.0.1\",\n"
"        \"port\": 27008,\n"
"        \"network\": \"udp\"\n"
"      }\n"
"    },\n"
"    {\n"
"      \"tag\": \"public-dead\",\n"
"      \"listen\": \"127.0.0.1\",\n"
"      \"port\": 21004,\n"
"      \"protocol\": \"dokodemo-door\",\n"
"      \"settings\": {\n"
"        \"address\": \"127.0.0.1\",\n"
"        \"port\": 27999,\n"
"        \"network\": \"tcp\"\n"
"      }\n"
"    }\n"
"  ],\n"
"  \"outbounds\": [\n"
"    {\n"
"      \"tag\": \"block\",\n"
"      \"protocol\": \"blackhole\",\n"
"      \"settings\": {}\n"
"    }\n"
"  ],\n"
"  \"routing\": {\n"
"    \"domainStrategy\": \"AsIs\",\n"
"    \"rules\": [\n"
"      {\n"
"        \"type\": \"field\",\n"
"        \"inboundTag\": [\n"
"          \"tunnel\"\n"
"        ],\n"
"        \"domain\": [\n"
"          \"full:tunnel.v2ref.local\"\n"
"        ],\n"
"        \"outboundTag\": \"portal\"\n"
"      },\n"
"      {\n"
"        \"type\": \"field\",\n"
"        \"inboundTag\": [\n"
"          \"public\",\n"
"          \"public-echo\",\n"
"          \"public-udp\",\n"
"          \"public-dead\"\n"
"        ],\n"
"        \"outboundTag\": \"portal\"\n"
"      }\n"
"    ]\n"
"  }\n"
"}";

static const char bridge_json[] =
"{\n"
"  \"log\": { \"loglevel\": \"warning\", \"access\": \"none\" },\n"
"  \"reverse\": { \"bridges\": [ { \"tag\": \"bridge\", \"domain\": \"tunnel.v2ref.local\" } ] },\n"
"  \"outbounds\": [\n"
"    { \"tag\": \"direct\", \"protocol\": \"freedom\", \"settings\": {} },\n"
"    { \"tag\": \"interconn\", \"protocol\": \"freedom\", \"settings\": { \"redirect\": \"127.0.0.1:21001\" } }\n"
"  ],\n"
"  \"routing\": {\n"
"    \"domainStrategy\": \"AsIs\",\n"
"    \"rules\": [\n"
"      { \"type\": \"field\", \"inboundTag\": [\"bridge\"], \"domain\": [\"full:tunnel.v2ref.local\"], \"outboundTag\": \"interconn\" },\n"
"      { \"type\": \"field\", \"inboundTag\": [\"bridge\"], \"outboundTag\": \"direct\" }\n"
"    ]\n"
"  }\n"
"}";

#define REF_DIR_DEFAULT "/work/shared/reference/v2ray"

/* 'x' -> "x": JSON written with single quotes. */
static char *q(const char *s)
{
	char *d = strdup(s);

	assert_non_null(d);
	for (char *p = d; *p; p++)
		if (*p == '\'')
			*p = '"';
	return d;
}

static int parse_q(struct config *c, const char *sq, char *err)
{
	char *json = q(sq);
	int ret = config_parse_string(c, json, err);

	free(json);
	return ret;
}

static void assert_defaults(const struct config *c)
{
	assert_int_equal(c->log_level, LOG_LVL_WARNING);
	assert_int_equal(c->n_portals, 0);
	assert_int_equal(c->n_bridges, 0);
	assert_int_equal(c->n_inbounds, 0);
	assert_int_equal(c->n_outbounds, 0);
	assert_int_equal(c->n_rules, 0);
	assert_null(c->rules);
	assert_int_equal(c->revsock.tunnel_idle_timeout_s, 10);
	assert_int_equal(c->revsock.session_buffer_bytes, 4194304);
	assert_int_equal(c->revsock.session_stall_timeout_s, 5);
	assert_int_equal(c->revsock.udp_idle_timeout_s, 60);
	assert_int_equal(c->revsock.datapath, DATAPATH_AUTO);
	assert_string_equal(c->revsock.instance, "");
	assert_int_equal(c->revsock.link_grace_s, 5);
}

static void check_portal(const struct config *c)
{
	static const struct { const char *tag; uint16_t port, tport; const char *addr; unsigned net; }
	want[] = {
		{ "tunnel", 21001, 1, "tunnel.v2ref.local", NET_TCP },
		{ "public", 21000, 25201, "127.0.0.1", NET_TCP },
		{ "public-echo", 21002, 27007, "127.0.0.1", NET_TCP },
		{ "public-udp", 21003, 27008, "127.0.0.1", NET_UDP },
		{ "public-dead", 21004, 27999, "127.0.0.1", NET_TCP },
	};
	size_t i;

	assert_int_equal(c->log_level, LOG_LVL_WARNING);
	assert_int_equal(c->n_portals, 1);
	assert_string_equal(c->portals[0].tag, "portal");
	assert_string_equal(c->portals[0].domain, "tunnel.v2ref.local");
	assert_int_equal(c->n_bridges, 0);
	assert_int_equal(c->n_inbounds, 5);
	for (i = 0; i < 5; i++) {
		const struct config_inbound *in = &c->inbounds[i];

		assert_string_equal(in->tag, want[i].tag);
		assert_string_equal(in->listen, "127.0.0.1");
		assert_int_equal(in->port, want[i].port);
		assert_string_equal(in->address, want[i].addr);
		assert_int_equal(in->target_port, want[i].tport);
		assert_int_equal(in->network, want[i].net);
	}
	assert_int_equal(c->n_outbounds, 1);
	assert_string_equal(c->outbounds[0].tag, "block");
	assert_int_equal(c->outbounds[0].protocol, OUTBOUND_BLACKHOLE);
	assert_false(c->outbounds[0].has_redirect);
	assert_int_equal(c->n_rules, 2);
	assert_int_equal(c->rules[0].n_inbound_tags, 1);
	assert_string_equal(c->rules[0].inbound_tags[0], "tunnel");
	assert_int_equal(c->rules[0].n_domains, 1);
	assert_int_equal(c->rules[0].domains[0].kind, DOMAIN_MATCH_FULL);
	assert_string_equal(c->rules[0].domains[0].value, "tunnel.v2ref.local");
	assert_int_equal(c->rules[0].n_ips, 0);
	assert_int_equal(c->rules[0].n_ports, 0);
	assert_int_equal(c->rules[0].network, 0);
	assert_string_equal(c->rules[0].outbound_tag, "portal");
	assert_int_equal(c->rules[1].n_inbound_tags, 4);
	assert_string_equal(c->rules[1].inbound_tags[0], "public");
	assert_string_equal(c->rules[1].inbound_tags[3], "public-dead");
	assert_int_equal(c->rules[1].n_domains, 0);
	assert_string_equal(c->rules[1].outbound_tag, "portal");
	assert_non_null(config_find_portal(c, "portal"));
	assert_null(config_find_portal(c, "block"));
	assert_null(config_find_outbound(c, "portal"));
	assert_ptr_equal(config_find_outbound(c, "block"), &c->outbounds[0]);
	/* Untouched sections keep their defaults. */
	assert_int_equal(c->revsock.tunnel_idle_timeout_s, 10);
	assert_int_equal(c->revsock.session_buffer_bytes, 4194304);
}

static void check_bridge(const struct config *c)
{
	assert_int_equal(c->n_portals, 0);
	assert_int_equal(c->n_bridges, 1);
	assert_string_equal(c->bridges[0].tag, "bridge");
	assert_string_equal(c->bridges[0].domain, "tunnel.v2ref.local");
	assert_int_equal(c->n_inbounds, 0);
	assert_int_equal(c->n_outbounds, 2);
	assert_string_equal(c->outbounds[0].tag, "direct");
	assert_int_equal(c->outbounds[0].protocol, OUTBOUND_FREEDOM);
	assert_false(c->outbounds[0].has_redirect);
	assert_string_equal(c->outbounds[1].tag, "interconn");
	assert_int_equal(c->outbounds[1].protocol, OUTBOUND_FREEDOM);
	assert_true(c->outbounds[1].has_redirect);
	assert_string_equal(c->outbounds[1].redirect_host, "127.0.0.1");
	assert_int_equal(c->outbounds[1].redirect_port, 21001);
	assert_int_equal(c->n_rules, 2);
	assert_string_equal(c->rules[0].inbound_tags[0], "bridge");
	assert_int_equal(c->rules[0].domains[0].kind, DOMAIN_MATCH_FULL);
	assert_string_equal(c->rules[0].domains[0].value, "tunnel.v2ref.local");
	assert_string_equal(c->rules[0].outbound_tag, "interconn");
	assert_int_equal(c->rules[1].n_inbound_tags, 1);
	assert_int_equal(c->rules[1].n_domains, 0);
	assert_string_equal(c->rules[1].outbound_tag, "direct");
	assert_ptr_equal(config_find_outbound(c, "interconn"), &c->outbounds[1]);
	assert_null(config_find_outbound(c, "nope"));
	assert_null(config_find_outbound(c, NULL));
}

static void test_reference_strings(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	assert_int_equal(config_parse_string(&c, portal_json, err), 0);
	check_portal(&c);
	config_free(&c);
	assert_defaults(&c);
	config_free(&c);        /* twice is harmless */

	assert_int_equal(config_parse_string(&c, bridge_json, err), 0);
	check_bridge(&c);
	config_free(&c);
}

static void test_reference_files(void **state)
{
	const char *dir = getenv("REVSOCK_REF_DIR");
	char path[512], err[CONFIG_ERR_MAX];
	struct config c;
	int ret;

	if (!dir)
		dir = REF_DIR_DEFAULT;
	snprintf(path, sizeof(path), "%s/portal.json", dir);
	if (access(path, R_OK) != 0) {
		print_message("reference files not found in %s, skipping\n", dir);
		skip();
	}
	ret = config_parse_file(&c, path, err);
	if (ret)
		print_message("%s\n", err);
	assert_int_equal(ret, 0);
	check_portal(&c);
	config_free(&c);

	snprintf(path, sizeof(path), "%s/bridge.json", dir);
	ret = config_parse_file(&c, path, err);
	if (ret)
		print_message("%s\n", err);
	assert_int_equal(ret, 0);
	check_bridge(&c);
	config_free(&c);
}

static void test_defaults(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	config_defaults(&c);
	assert_defaults(&c);
	assert_int_equal(config_parse_string(&c, "{}", err), 0);
	assert_defaults(&c);
	config_free(&c);
	/* null is an absent key, as in V2Ray. */
	assert_int_equal(parse_q(&c, "{'log': null, 'routing': {'rules': null}, "
				 "'revsock': {'datapath': null}}", err), 0);
	assert_defaults(&c);
	config_free(&c);
}

static void test_accepts(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	int ret;

	ret = parse_q(&c,
		"{'log': {'loglevel': 'DEBUG', 'access': '', 'error': 'none'},"
		" 'reverse': {'bridges': [{'tag': 'b', 'domain': 'Tun.Example'}]},"
		" 'inbounds': [{'port': '8080', 'protocol': 'dokodemo-door',"
		"   'settings': {'address': '[::1]', 'port': '53', 'network': 'udp, TCP'},"
		"   'sniffing': {'enabled': false, 'destOverride': ['http']}},"
		"  {'tag': 'v6', 'listen': '::', 'port': 1, 'protocol': 'dokodemo-door',"
		"   'settings': {'address': 'example.com', 'port': 65535, 'network': ['udp']}}],"
		" 'outbounds': [{'protocol': 'freedom'},"
		"  {'tag': 'r1', 'protocol': 'freedom', 'settings': {'redirect': '[2001:db8::1]:443',"
		"   'domainStrategy': 'AsIs'}},"
		"  {'tag': 'r2', 'protocol': 'freedom', 'settings': {'redirect': ':8080'}},"
		"  {'tag': 'r3', 'protocol': 'freedom', 'settings': {'redirect': 'example.org:0'}},"
		"  {'tag': 'bh', 'protocol': 'blackhole', 'settings': {'response': {'type': 'none'}}}],"
		" 'routing': {'rules': ["
		"  {'type': 'field', 'inboundTag': 'b', 'domain': ['full:A.Example.COM',"
		"   'domain:Example.org', 'keyword:goo', 'plain'], 'outboundTag': 'r1'},"
		"  {'type': 'Field', 'ip': ['10.1.2.3/8', '192.168.1.200/25', '1.2.3.4',"
		"   '2001:db8:ffff::1/32', '::1'], 'port': '53, 443,1000-2000', 'network': 'tcp,udp',"
		"   'outboundTag': 'bh'},"
		"  {'type': 'field', 'port': 0, 'network': 'udp', 'outboundTag': 'bh'}]},"
		" 'revsock': {'tunnelIdleTimeout': 30, 'sessionBufferBytes': 65536,"
		"  'sessionStallTimeout': 7, 'udpIdleTimeout': 120, 'datapath': 'sockmap',"
		"  'instance': 'lab-1_A', 'linkGraceSeconds': 0}}", err);
	if (ret)
		print_message("%s\n", err);
	assert_int_equal(ret, 0);
	assert_int_equal(c.log_level, LOG_LVL_DEBUG);
	assert_string_equal(c.bridges[0].domain, "Tun.Example");  /* not folded */

	assert_string_equal(c.inbounds[0].tag, "");
	assert_string_equal(c.inbounds[0].listen, "0.0.0.0");
	assert_int_equal(c.inbounds[0].port, 8080);
	assert_string_equal(c.inbounds[0].address, "::1");
	assert_int_equal(c.inbounds[0].target_port, 53);
	assert_int_equal(c.inbounds[0].network, NET_TCP | NET_UDP);
	assert_string_equal(c.inbounds[1].listen, "::");
	assert_int_equal(c.inbounds[1].network, NET_UDP);

	assert_int_equal(c.n_outbounds, 5);
	assert_int_equal(c.outbounds[0].protocol, OUTBOUND_FREEDOM);
	assert_string_equal(c.outbounds[0].tag, "");
	assert_string_equal(c.outbounds[1].redirect_host, "2001:db8::1");
	assert_int_equal(c.outbounds[1].redirect_port, 443);
	assert_true(c.outbounds[2].has_redirect);
	assert_string_equal(c.outbounds[2].redirect_host, "");
	assert_int_equal(c.outbounds[2].redirect_port, 8080);
	assert_string_equal(c.outbounds[3].redirect_host, "example.org");
	assert_int_equal(c.outbounds[3].redirect_port, 0);
	assert_int_equal(c.outbounds[4].protocol, OUTBOUND_BLACKHOLE);

	assert_int_equal(c.n_rules, 3);
	assert_int_equal(c.rules[0].n_inbound_tags, 1);
	assert_string_equal(c.rules[0].inbound_tags[0], "b");
	assert_int_equal(c.rules[0].n_domains, 4);
	assert_int_equal(c.rules[0].domains[0].kind, DOMAIN_MATCH_FULL);
	assert_string_equal(c.rules[0].domains[0].value, "a.example.com");
	assert_int_equal(c.rules[0].domains[1].kind, DOMAIN_MATCH_SUFFIX);
	assert_string_equal(c.rules[0].domains[1].value, "example.org");
	assert_int_equal(c.rules[0].domains[2].kind, DOMAIN_MATCH_SUBSTR);
	assert_string_equal(c.rules[0].domains[2].value, "goo");
	assert_int_equal(c.rules[0].domains[3].kind, DOMAIN_MATCH_SUBSTR);
	assert_string_equal(c.rules[0].domains[3].value, "plain");

	{
		const struct config_rule *r = &c.rules[1];
		uint8_t v4[4], v6[16];

		assert_int_equal(r->n_ips, 5);
		assert_int_equal(r->ips[0].family, AF_INET);
		assert_int_equal(r->ips[0].prefix, 8);
		inet_pton(AF_INET, "10.0.0.0", v4);
		assert_memory_equal(r->ips[0].addr, v4, 4);
		assert_int_equal(r->ips[1].prefix, 25);
		inet_pton(AF_INET, "192.168.1.128", v4);
		assert_memory_equal(r->ips[1].addr, v4, 4);
		assert_int_equal(r->ips[2].prefix, 32);
		assert_int_equal(r->ips[3].family, AF_INET6);
		assert_int_equal(r->ips[3].prefix, 32);
		inet_pton(AF_INET6, "2001:db8::", v6);
		assert_memory_equal(r->ips[3].addr, v6, 16);
		assert_int_equal(r->ips[4].prefix, 128);
		assert_int_equal(r->n_ports, 3);
		assert_int_equal(r->ports[0].from, 53);
		assert_int_equal(r->ports[0].to, 53);
		assert_int_equal(r->ports[1].from, 443);
		assert_int_equal(r->ports[2].from, 1000);
		assert_int_equal(r->ports[2].to, 2000);
		assert_int_equal(r->network, NET_TCP | NET_UDP);
	}
	assert_int_equal(c.rules[2].n_ports, 1);
	assert_int_equal(c.rules[2].ports[0].to, 0);
	assert_int_equal(c.rules[2].network, NET_UDP);

	assert_int_equal(c.revsock.tunnel_idle_timeout_s, 30);
	assert_int_equal(c.revsock.session_buffer_bytes, 65536);
	assert_int_equal(c.revsock.session_stall_timeout_s, 7);
	assert_int_equal(c.revsock.udp_idle_timeout_s, 120);
	assert_int_equal(c.revsock.datapath, DATAPATH_SOCKMAP);
	assert_string_equal(c.revsock.instance, "lab-1_A");
	assert_int_equal(c.revsock.link_grace_s, 0);
	config_free(&c);
}

struct err_case {
	const char *json;       /* single-quoted */
	const char *want;       /* substring of err */
};

/* Each case must fail with -EINVAL, one line naming want, and leave the
 * config at its defaults (nothing allocated). */
static void run_err_cases(const struct err_case *cases, size_t n)
{
	char err[CONFIG_ERR_MAX];
	struct config c;
	size_t i;
	int ret;

	for (i = 0; i < n; i++) {
		memset(err, 0, sizeof(err));
		ret = parse_q(&c, cases[i].json, err);
		if (ret != -EINVAL || !strstr(err, cases[i].want) || strchr(err, '\n')) {
			print_error("case %zu: %s\n  ret %d, err \"%s\"\n  want \"%s\"\n",
				    i, cases[i].json, ret, err, cases[i].want);
			fail();
		}
		assert_defaults(&c);
		config_free(&c);
	}
}

#define RUN(cases) run_err_cases(cases, sizeof(cases) / sizeof(cases[0]))

/* A valid dokodemo inbound, to splice into cases. */
#define DOKO "'protocol': 'dokodemo-door', 'port': 1000, 'settings': {'address': '1.2.3.4', 'port': 80}"
#define OUT_X "'outbounds': [{'tag': 'x', 'protocol': 'freedom'}]"

static void test_err_syntax_and_top(void **state)
{
	static const struct err_case cases[] = {
		{ "{'log': }", "line 1, column 9" },
		{ "{\n'log': {},\n'log': {}}", "duplicate object key" },
		{ "{\n  'a': 1,\n  'b' 2}", "line 3, column" },
		{ "[]", "must be an object" },
		{ "{'policy': {}}", "policy: not supported by revsock" },
		{ "{'dns': {'servers': []}}", "dns: not supported by revsock" },
		{ "{'api': {}}", "api: not supported by revsock" },
		{ "{'stats': {}}", "stats: not supported by revsock" },
		{ "{'transport': {}}", "transport: not supported by revsock" },
		{ "{'inbound': {}}", "inbound: not supported by revsock" },
		{ "{'inbounds': {}}", "inbounds: must be an array" },
		{ "{'routing': []}", "routing: must be an object" },
	};
	RUN(cases);
}

static void test_err_log(void **state)
{
	static const struct err_case cases[] = {
		{ "{'log': {'loglevel': 'verbose'}}",
		  "log.loglevel: \"verbose\" is not one of debug, info, warning, error, none" },
		{ "{'log': {'loglevel': 3}}", "log.loglevel: must be a string" },
		{ "{'log': {'access': '/var/log/v2ray/access.log'}}",
		  "log.access: \"/var/log/v2ray/access.log\": log files are not supported by revsock" },
		{ "{'log': {'error': 'err.log'}}", "log.error: \"err.log\": log files are not supported" },
		{ "{'log': {'dnsLog': true}}", "log.dnsLog: not supported by revsock" },
	};
	RUN(cases);
}

static void test_err_reverse(void **state)
{
	static const struct err_case cases[] = {
		{ "{'reverse': {'portals': [{'domain': 'd'}]}}", "reverse.portals[0]: \"tag\" is required" },
		{ "{'reverse': {'portals': [{'tag': 'p'}]}}", "reverse.portals[0]: \"domain\" is required" },
		{ "{'reverse': {'bridges': [{'tag': '', 'domain': 'd'}]}}",
		  "reverse.bridges[0].tag: must not be empty" },
		{ "{'reverse': {'bridges': [{'tag': 'b', 'domain': ''}]}}",
		  "reverse.bridges[0].domain: must not be empty" },
		{ "{'reverse': {'bridges': [{'tag': 'b', 'domain': 5}]}}",
		  "reverse.bridges[0].domain: must be a string" },
		{ "{'reverse': {'bridges': [{'tag': 'b', 'domain': 'd', 'x': 1}]}}",
		  "reverse.bridges[0].x: not supported by revsock" },
		{ "{'reverse': {'portals': {}}}", "reverse.portals: must be an array" },
		{ "{'reverse': {'mirrors': []}}", "reverse.mirrors: not supported by revsock" },
	};
	RUN(cases);
}

static void test_err_inbounds(void **state)
{
	static const struct err_case cases[] = {
		{ "{'inbounds': [{'port': 1, 'protocol': 'socks', 'settings': {}}]}",
		  "inbounds[0].protocol: \"socks\" is not supported (only \"dokodemo-door\")" },
		{ "{'inbounds': [{'port': 1, 'settings': {}}]}", "inbounds[0]: \"protocol\" is required" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'settings': {'address': 'a', 'port': 1}}]}",
		  "inbounds[0]: \"port\" is required" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 1}]}",
		  "inbounds[0]: \"settings\" is required" },
		{ "{'inbounds': [{" DOKO ", 'port': 0}]}", "duplicate object key" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 0, 'settings': {}}]}",
		  "inbounds[0].port: 0 is out of range (1..65535)" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 65536, 'settings': {}}]}",
		  "inbounds[0].port: 65536 is out of range" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 'http', 'settings': {}}]}",
		  "inbounds[0].port: \"http\" is not a port number" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': '1000-2000', 'settings': {}}]}",
		  "inbounds[0].port: \"1000-2000\": port ranges are not supported" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 80.5, 'settings': {}}]}",
		  "inbounds[0].port: must be a port number, not a real number" },
		{ "{'inbounds': [{" DOKO ", 'listen': 'localhost'}]}",
		  "inbounds[0].listen: \"localhost\" is not an IP address" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 1, 'settings': {'port': 80}}]}",
		  "inbounds[0].settings: \"address\" is required" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 1, 'settings': {'address': 'a'}}]}",
		  "inbounds[0].settings: \"port\" is required" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 1, "
		  "'settings': {'address': 'a', 'port': 1, 'network': 'sctp'}}]}",
		  "inbounds[0].settings.network: \"sctp\" is not one of tcp, udp, tcp,udp" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 1, "
		  "'settings': {'address': 'a b', 'port': 1}}]}",
		  "inbounds[0].settings.address: \"a b\" is not an IP address or a host name" },
		{ "{'inbounds': [{'protocol': 'dokodemo-door', 'port': 1, "
		  "'settings': {'address': 'a', 'port': 1, 'timeout': 300}}]}",
		  "inbounds[0].settings.timeout: not supported by revsock" },
		{ "{'inbounds': [{" DOKO "}, {" DOKO "}, {'protocol': 'dokodemo-door', 'port': 1, "
		  "'settings': {'address': 'a', 'port': 1, 'followRedirect': true}}]}",
		  "inbounds[2].settings.followRedirect: not supported by revsock" },
		{ "{'inbounds': [{" DOKO ", 'sniffing': {'enabled': true, 'destOverride': ['http']}}]}",
		  "inbounds[0].sniffing.enabled: sniffing is not supported by revsock" },
		{ "{'inbounds': [{" DOKO ", 'sniffing': {'enabled': 'no'}}]}",
		  "inbounds[0].sniffing.enabled: must be a boolean" },
		{ "{'inbounds': [{" DOKO ", 'streamSettings': {'network': 'tcp'}}]}",
		  "inbounds[0].streamSettings: not supported by revsock" },
		{ "{'inbounds': [{" DOKO ", 'allocate': {}}]}",
		  "inbounds[0].allocate: not supported by revsock" },
		{ "{'inbounds': [{" DOKO ", 'tag': 'a'}, {" DOKO ", 'tag': 'a'}]}",
		  "inbounds[1].tag: duplicate tag \"a\"" },
		{ "{'reverse': {'bridges': [{'tag': 'a', 'domain': 'd'}]}, 'inbounds': [{" DOKO ", 'tag': 'a'}]}",
		  "inbounds[0].tag: duplicate tag \"a\" (also a bridge tag)" },
		{ "{'inbounds': [{" DOKO ", 'tag': 7}]}", "inbounds[0].tag: must be a string" },
	};
	RUN(cases);
}

static void test_err_outbounds(void **state)
{
	static const struct err_case cases[] = {
		{ "{'outbounds': [{'protocol': 'vmess'}]}",
		  "outbounds[0].protocol: \"vmess\" is not supported (only \"freedom\", \"blackhole\")" },
		{ "{'outbounds': [{'tag': 'a'}]}", "outbounds[0]: \"protocol\" is required" },
		{ "{'outbounds': [{'protocol': 'freedom', 'settings': {'domainStrategy': 'UseIP'}}]}",
		  "outbounds[0].settings.domainStrategy: \"UseIP\" is not supported (only \"AsIs\")" },
		{ "{'outbounds': [{'protocol': 'freedom', 'settings': {'redirect': 'nohost'}}]}",
		  "outbounds[0].settings.redirect: \"nohost\" is not host:port" },
		{ "{'outbounds': [{'protocol': 'freedom', 'settings': {'redirect': 'h:99999'}}]}",
		  "outbounds[0].settings.redirect: \"h:99999\": \"99999\" is not a port number" },
		{ "{'outbounds': [{'protocol': 'freedom', 'settings': {'redirect': '::1:80'}}]}",
		  "IPv6 needs [brackets]" },
		{ "{'outbounds': [{'protocol': 'freedom', 'settings': {'userLevel': 0}}]}",
		  "outbounds[0].settings.userLevel: not supported by revsock" },
		{ "{'outbounds': [{'protocol': 'freedom', 'settings': []}]}",
		  "outbounds[0].settings: must be an object" },
		{ "{'outbounds': [{'protocol': 'blackhole', 'settings': {'response': {'type': 'http'}}}]}",
		  "outbounds[0].settings.response.type: \"http\" is not supported (only \"none\")" },
		{ "{'outbounds': [{'protocol': 'blackhole', 'settings': {'redirect': 'a:1'}}]}",
		  "outbounds[0].settings.redirect: not supported by revsock" },
		{ "{'outbounds': [{'protocol': 'freedom', 'mux': {'enabled': true}}]}",
		  "outbounds[0].mux: not supported by revsock" },
		{ "{'outbounds': [{'protocol': 'freedom', 'streamSettings': {}}]}",
		  "outbounds[0].streamSettings: not supported by revsock" },
		{ "{'outbounds': [{'protocol': 'freedom', 'sendThrough': '1.2.3.4'}]}",
		  "outbounds[0].sendThrough: not supported by revsock" },
		{ "{'outbounds': [{'tag': 'a', 'protocol': 'freedom'}, {'tag': 'a', 'protocol': 'blackhole'}]}",
		  "outbounds[1].tag: duplicate tag \"a\" (also outbounds[0])" },
		{ "{'reverse': {'portals': [{'tag': 'a', 'domain': 'd'}]}, "
		  "'outbounds': [{'tag': 'a', 'protocol': 'freedom'}]}",
		  "outbounds[0].tag: duplicate tag \"a\" (also a portal tag)" },
		{ "{'reverse': {'portals': [{'tag': 'p', 'domain': 'd'}, {'tag': 'p', 'domain': 'e'}]}}",
		  "reverse.portals[1].tag: duplicate tag \"p\"" },
		{ "{'reverse': {'bridges': [{'tag': 'b', 'domain': 'd'}, {'tag': 'b', 'domain': 'd'}]}}",
		  "reverse.bridges[1].tag: duplicate tag \"b\"" },
	};
	RUN(cases);
}

static void test_err_routing(void **state)
{
	static const struct err_case cases[] = {
		{ "{'routing': {'domainStrategy': 'IPIfNonMatch'}}",
		  "routing.domainStrategy: \"IPIfNonMatch\" is not supported (only \"AsIs\")" },
		{ "{'routing': {'balancers': []}}", "routing.balancers: not supported by revsock" },
		{ "{'routing': {'rules': [{'type': 'chinasites', 'outboundTag': 'x'}]}}",
		  "routing.rules[0].type: \"chinasites\" is not supported (only \"field\")" },
		{ "{" OUT_X ", 'routing': {'rules': [{'port': 1, 'outboundTag': 'x'}]}}",
		  "routing.rules[0]: \"type\" is required" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': 1}]}}",
		  "routing.rules[0]: \"outboundTag\" is required" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'outboundTag': 'x'}]}}",
		  "routing.rules[0]: rule has no conditions" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': 1, 'balancerTag': 'b'}]}}",
		  "routing.rules[0].balancerTag: not supported by revsock" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'source': ['1.1.1.1'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].source: not supported by revsock" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'protocol': ['http'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].protocol: not supported by revsock" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'domain': ['a', 'regexp:^a$'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].domain[1]: \"regexp:^a$\": regexp: domains are not supported" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'domain': ['geosite:cn'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].domain[0]: \"geosite:cn\": geosite: domains are not supported" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'domain': ['ext:h2y.dat:gfw'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].domain[0]: \"ext:h2y.dat:gfw\": ext: domains are not supported" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'domain': ['full:'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].domain[0]: \"full:\": empty domain" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'domain': [1], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].domain[0]: must be a string" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'ip': ['geoip:private'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].ip[0]: \"geoip:private\": geoip/ext lists are not supported" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'ip': ['10.0.0.0/33'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].ip[0]: \"10.0.0.0/33\": bad prefix length (0..32)" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'ip': ['::/129'], 'outboundTag': 'x'}]}}",
		  "bad prefix length (0..128)" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'ip': ['example.com'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].ip[0]: \"example.com\" is not an IP address or CIDR" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': '70000', 'outboundTag': 'x'}]}}",
		  "routing.rules[0].port: \"70000\" is not a port list" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': '2000-1000', 'outboundTag': 'x'}]}}",
		  "routing.rules[0].port: \"2000-1000\" is not a port list" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': '53,,x', 'outboundTag': 'x'}]}}",
		  "routing.rules[0].port: \"53,,x\" is not a port list" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': -1, 'outboundTag': 'x'}]}}",
		  "routing.rules[0].port: -1 is out of range" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'network': 'icmp', 'outboundTag': 'x'}]}}",
		  "routing.rules[0].network: \"icmp\" is not one of tcp, udp, tcp,udp" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'port': 1, 'outboundTag': 'x'},"
		  " {'type': 'field', 'port': 2, 'outboundTag': 'nope'}]}}",
		  "routing.rules[1].outboundTag: unknown outbound tag \"nope\"" },
		{ "{" OUT_X ", 'routing': {'rules': [{'type': 'field', 'inboundTag': ['ghost'], 'outboundTag': 'x'}]}}",
		  "routing.rules[0].inboundTag[0]: unknown inbound tag \"ghost\"" },
		/* A portal tag is an inbound tag nowhere. */
		{ "{'reverse': {'portals': [{'tag': 'p', 'domain': 'd'}]}, "
		  "'routing': {'rules': [{'type': 'field', 'inboundTag': ['p'], 'outboundTag': 'p'}]}}",
		  "unknown inbound tag \"p\"" },
		{ "{'reverse': {'bridges': [{'tag': 'b', 'domain': 'd'}]}, "
		  "'routing': {'rules': [{'type': 'field', 'inboundTag': ['b'], 'outboundTag': 'b'}]}}",
		  "unknown outbound tag \"b\"" },
	};
	RUN(cases);
}

static void test_err_revsock(void **state)
{
	static const struct err_case cases[] = {
		{ "{'revsock': {'tunnelIdleTimeout': 0}}", "revsock.tunnelIdleTimeout: 0 is out of range" },
		{ "{'revsock': {'tunnelIdleTimeout': '10'}}", "revsock.tunnelIdleTimeout: must be an integer" },
		{ "{'revsock': {'sessionBufferBytes': 65535}}", "revsock.sessionBufferBytes: 65535 is out of range" },
		{ "{'revsock': {'sessionStallTimeout': 0}}", "revsock.sessionStallTimeout: 0 is out of range" },
		{ "{'revsock': {'udpIdleTimeout': -5}}", "revsock.udpIdleTimeout: -5 is out of range" },
		{ "{'revsock': {'linkGraceSeconds': 1.5}}", "revsock.linkGraceSeconds: must be an integer" },
		{ "{'revsock': {'datapath': 'xdp'}}",
		  "revsock.datapath: \"xdp\" is not one of auto, userspace, sockmap" },
		{ "{'revsock': {'instance': '../x'}}", "revsock.instance: \"../x\": only A-Z a-z 0-9 _ - allowed" },
		{ "{'revsock': {'turbo': true}}", "revsock.turbo: unknown revsock setting" },
		{ "{'revsock': 1}", "revsock: must be an object" },
	};
	RUN(cases);
}

static void test_err_message_sanitized(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config c;

	/* A key with a newline must not break the one-line contract. */
	assert_int_equal(config_parse_string(&c, "{\"a\\nb\": 1}", err), -EINVAL);
	assert_null(strchr(err, '\n'));
	assert_non_null(strstr(err, "a?b: not supported by revsock"));
}

static void test_parse_file_errors(void **state)
{
	char err[CONFIG_ERR_MAX], path[] = "/tmp/revsock-test-config-XXXXXX";
	struct config c;
	int fd, ret;

	ret = config_parse_file(&c, "/nonexistent/revsock.json", err);
	assert_int_equal(ret, -ENOENT);
	assert_string_equal(err, "/nonexistent/revsock.json: No such file or directory");
	assert_defaults(&c);

	ret = config_parse_file(&c, "/", err);
	assert_true(ret < 0);
	assert_non_null(strstr(err, "/: "));

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\n  \"log\": {\n    \"loglevel\": \n}\n", 32), 32);
	close(fd);
	ret = config_parse_file(&c, path, err);
	assert_int_equal(ret, -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "line 4, column"));

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"revsock\": {\"datapath\": \"userspace\"}}", 38), 38);
	close(fd);
	ret = config_parse_file(&c, path, err);
	assert_int_equal(ret, 0);
	assert_int_equal(c.revsock.datapath, DATAPATH_USERSPACE);
	config_free(&c);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"stats\": {}}", 13), 13);
	close(fd);
	ret = config_parse_file(&c, path, err);
	assert_int_equal(ret, -EINVAL);
	assert_string_equal(err, "stats: not supported by revsock");
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_strings),
		cmocka_unit_test(test_reference_files),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_err_syntax_and_top),
		cmocka_unit_test(test_err_log),
		cmocka_unit_test(test_err_reverse),
		cmocka_unit_test(test_err_inbounds),
		cmocka_unit_test(test_err_outbounds),
		cmocka_unit_test(test_err_routing),
		cmocka_unit_test(test_err_revsock),
		cmocka_unit_test(test_err_message_sanitized),
		cmocka_unit_test(test_parse_file_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
