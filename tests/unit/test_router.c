// SPDX-License-Identifier: MIT
/*
 * Router tests: V2Ray field-rule semantics with domainStrategy AsIs.
 * Rules come from the config parser; targets are built by hand so these
 * tests do not depend on the Mux codec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "config.h"
#include "router.h"

static struct mux_target tgt_domain(uint8_t net, const char *name, uint16_t port)
{
	struct mux_target t;

	memset(&t, 0, sizeof(t));
	t.network = net;
	t.port = port;
	t.addr.type = MUX_ADDR_DOMAIN;
	t.addr.domain.len = (uint8_t)strlen(name);
	memcpy(t.addr.domain.name, name, t.addr.domain.len);
	return t;
}

static struct mux_target tgt_ip(uint8_t net, const char *ip, uint16_t port)
{
	struct mux_target t;

	memset(&t, 0, sizeof(t));
	t.network = net;
	t.port = port;
	if (inet_pton(AF_INET, ip, t.addr.v4) == 1) {
		t.addr.type = MUX_ADDR_IPV4;
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, t.addr.v6), 1);
		t.addr.type = MUX_ADDR_IPV6;
	}
	return t;
}

/* Parse single-quoted JSON (see test_config.c); fail the test on error. */
static void load(struct config *c, const char *sq)
{
	char err[CONFIG_ERR_MAX], *json = strdup(sq);
	int ret;

	assert_non_null(json);
	for (char *p = json; *p; p++)
		if (*p == '\'')
			*p = '"';
	ret = config_parse_string(c, json, err);
	if (ret)
		print_error("config: %s\n", err);
	free(json);
	assert_int_equal(ret, 0);
}

/* Outbounds a..e and bridge-style inbound tags in1/in2 for rule fixtures. */
#define FIXTURE(rules) \
	"{'reverse': {'bridges': [{'tag': 'in1', 'domain': 'd'}, {'tag': 'in2', 'domain': 'd'}]}," \
	" 'outbounds': [{'tag': 'a', 'protocol': 'freedom'}, {'tag': 'b', 'protocol': 'freedom'}," \
	"  {'tag': 'c', 'protocol': 'freedom'}, {'tag': 'd', 'protocol': 'freedom'}," \
	"  {'tag': 'e', 'protocol': 'freedom'}]," \
	" 'routing': {'rules': [" rules "]}}"

static void route_is(const struct config *c, const char *in, struct mux_target t, const char *want)
{
	const char *got = router_route(c, in, &t);

	if (!want) {
		if (got)
			print_error("expected no match, got \"%s\"\n", got);
		assert_null(got);
		return;
	}
	if (!got)
		print_error("expected \"%s\", got no match\n", want);
	assert_non_null(got);
	assert_string_equal(got, want);
}

#define T MUX_NET_TCP
#define U MUX_NET_UDP

static void test_domain_matches(void **state)
{
	struct config_domain full = { DOMAIN_MATCH_FULL, "example.com" };
	struct config_domain suffix = { DOMAIN_MATCH_SUFFIX, "example.com" };
	struct config_domain sub = { DOMAIN_MATCH_SUBSTR, "goo" };

	assert_true(router_domain_matches(&full, "example.com"));
	assert_true(router_domain_matches(&full, "EXAMPLE.Com"));
	assert_false(router_domain_matches(&full, "www.example.com"));
	assert_false(router_domain_matches(&full, "example.com.cn"));
	assert_false(router_domain_matches(&full, "example.co"));
	assert_false(router_domain_matches(&full, NULL));

	assert_true(router_domain_matches(&suffix, "example.com"));
	assert_true(router_domain_matches(&suffix, "a.b.Example.COM"));
	assert_false(router_domain_matches(&suffix, "badexample.com"));
	assert_false(router_domain_matches(&suffix, "example.com.evil"));
	assert_false(router_domain_matches(&suffix, "com"));
	assert_false(router_domain_matches(&suffix, ""));

	assert_true(router_domain_matches(&sub, "goo"));
	assert_true(router_domain_matches(&sub, "www.GOOgle.com"));
	assert_true(router_domain_matches(&sub, "a.goo"));
	assert_false(router_domain_matches(&sub, "go.o"));
}

static void test_domain_rules(void **state)
{
	struct config c;

	load(&c, FIXTURE(
		"{'type': 'field', 'domain': ['full:Exact.example'], 'outboundTag': 'a'},"
		"{'type': 'field', 'domain': ['domain:example.org'], 'outboundTag': 'b'},"
		"{'type': 'field', 'domain': ['keyword:tube', 'plainword'], 'outboundTag': 'c'}"));
	route_is(&c, "in1", tgt_domain(T, "exact.example", 80), "a");
	route_is(&c, "in1", tgt_domain(T, "EXACT.EXAMPLE", 80), "a");
	route_is(&c, "in1", tgt_domain(T, "www.exact.example", 80), NULL);
	route_is(&c, "in1", tgt_domain(T, "example.org", 80), "b");
	route_is(&c, "in1", tgt_domain(U, "deep.sub.example.org", 53), "b");
	route_is(&c, "in1", tgt_domain(T, "notexample.org", 80), NULL);
	route_is(&c, "in1", tgt_domain(T, "example.org.evil", 80), NULL);
	route_is(&c, "in1", tgt_domain(T, "www.youtube.com", 443), "c");
	route_is(&c, "in1", tgt_domain(T, "x.plainword.y", 443), "c");
	route_is(&c, "in1", tgt_domain(T, "plain.word", 443), NULL);
	/* AsIs: a domain condition never sees an IP target. */
	route_is(&c, "in1", tgt_ip(T, "93.184.216.34", 80), NULL);
	route_is(&c, NULL, tgt_domain(T, "exact.example", 80), "a");
	{
		/* An embedded NUL must not turn "exact.example\0x" into a
		 * match on its prefix. */
		struct mux_target t = tgt_domain(T, "exact.example", 80);

		memcpy(t.addr.domain.name, "exact.example\0x", 15);
		t.addr.domain.len = 15;
		route_is(&c, "in1", t, NULL);
	}
	config_free(&c);
}

static void test_ip_rules(void **state)
{
	struct config c;

	load(&c, FIXTURE(
		"{'type': 'field', 'ip': ['10.0.0.0/8', '192.168.1.128/25'], 'outboundTag': 'a'},"
		"{'type': 'field', 'ip': ['2001:db8::/32', '::1'], 'outboundTag': 'b'},"
		"{'type': 'field', 'ip': ['172.16.5.4'], 'outboundTag': 'c'},"
		"{'type': 'field', 'ip': ['fe80::/10'], 'outboundTag': 'd'},"
		"{'type': 'field', 'ip': ['0.0.0.0/0'], 'outboundTag': 'e'}"));
	route_is(&c, "in1", tgt_ip(T, "10.0.0.1", 1), "a");
	route_is(&c, "in1", tgt_ip(T, "10.255.255.255", 1), "a");
	route_is(&c, "in1", tgt_ip(T, "192.168.1.128", 1), "a");
	route_is(&c, "in1", tgt_ip(T, "192.168.1.255", 1), "a");
	route_is(&c, "in1", tgt_ip(T, "192.168.1.127", 1), "e");
	route_is(&c, "in1", tgt_ip(T, "11.0.0.1", 1), "e");
	route_is(&c, "in1", tgt_ip(T, "172.16.5.4", 1), "c");
	route_is(&c, "in1", tgt_ip(T, "172.16.5.5", 1), "e");
	route_is(&c, "in1", tgt_ip(T, "2001:db8::1", 1), "b");
	route_is(&c, "in1", tgt_ip(T, "2001:db8:ffff:ffff::", 1), "b");
	route_is(&c, "in1", tgt_ip(T, "2001:db9::1", 1), NULL);
	route_is(&c, "in1", tgt_ip(T, "::1", 1), "b");
	route_is(&c, "in1", tgt_ip(T, "::2", 1), NULL);
	route_is(&c, "in1", tgt_ip(T, "fe80::1", 1), "d");
	route_is(&c, "in1", tgt_ip(T, "febf:ffff::1", 1), "d");
	route_is(&c, "in1", tgt_ip(T, "fec0::1", 1), NULL);
	/* v4 CIDRs never match v6 targets, even mapped ones; 0/0 is v4 only. */
	route_is(&c, "in1", tgt_ip(T, "::ffff:10.0.0.1", 1), NULL);
	/* AsIs: an ip condition never sees a domain target. */
	route_is(&c, "in1", tgt_domain(T, "10.0.0.1", 1), NULL);
	config_free(&c);
}

static void test_port_and_network_rules(void **state)
{
	struct config c;

	load(&c, FIXTURE(
		"{'type': 'field', 'port': '53,443,1000-2000', 'network': 'udp', 'outboundTag': 'a'},"
		"{'type': 'field', 'port': 8080, 'outboundTag': 'b'},"
		"{'type': 'field', 'port': '1000-2000', 'network': 'tcp', 'outboundTag': 'c'},"
		"{'type': 'field', 'network': 'tcp,udp', 'port': '9', 'outboundTag': 'd'}"));
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 53), "a");
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 443), "a");
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 1000), "a");
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 2000), "a");
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 999), NULL);
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 2001), NULL);
	route_is(&c, "in1", tgt_ip(U, "1.1.1.1", 54), NULL);
	route_is(&c, "in1", tgt_ip(T, "1.1.1.1", 53), NULL);     /* udp-only rule */
	route_is(&c, "in1", tgt_ip(T, "1.1.1.1", 1500), "c");
	route_is(&c, "in1", tgt_domain(U, "x", 8080), "b");
	route_is(&c, "in1", tgt_domain(T, "x", 8080), "b");
	route_is(&c, "in1", tgt_domain(T, "x", 9), "d");
	route_is(&c, "in1", tgt_domain(U, "x", 9), "d");
	config_free(&c);
}

static void test_inbound_and_precedence(void **state)
{
	struct config c;

	load(&c, FIXTURE(
		/* all conditions must hold: in1 AND the domain */
		"{'type': 'field', 'inboundTag': ['in1'], 'domain': ['full:t.local'], 'outboundTag': 'a'},"
		"{'type': 'field', 'inboundTag': ['in2', 'in1'], 'port': '1-100', 'outboundTag': 'b'},"
		/* shadowed: rule 2 already takes in1/in2 on low ports */
		"{'type': 'field', 'inboundTag': ['in1'], 'port': '80', 'outboundTag': 'c'},"
		/* domain and ip in one rule: never true under AsIs */
		"{'type': 'field', 'domain': ['x'], 'ip': ['0.0.0.0/0'], 'outboundTag': 'd'},"
		"{'type': 'field', 'inboundTag': ['in1'], 'outboundTag': 'e'}"));
	route_is(&c, "in1", tgt_domain(T, "t.local", 0), "a");
	route_is(&c, "in2", tgt_domain(T, "t.local", 5), "b");
	route_is(&c, "in2", tgt_domain(T, "t.local", 0), NULL);
	route_is(&c, "in2", tgt_domain(T, "t.local", 5000), NULL);
	route_is(&c, "in1", tgt_domain(T, "other", 80), "b");
	route_is(&c, "in1", tgt_domain(T, "other", 8080), "e");
	route_is(&c, "in1", tgt_domain(T, "x", 8080), "e");
	route_is(&c, "in3", tgt_domain(T, "x", 8080), NULL);
	route_is(&c, NULL, tgt_domain(T, "x", 8080), NULL);
	route_is(&c, NULL, tgt_ip(T, "1.2.3.4", 8080), NULL);
	route_is(&c, "IN1", tgt_domain(T, "x", 8080), NULL);     /* tags are case-sensitive */
	config_free(&c);
}

static void test_no_rules(void **state)
{
	struct config c;

	config_defaults(&c);
	route_is(&c, "in1", tgt_domain(T, "x", 1), NULL);
	config_free(&c);
}

/* The reference setups route as V2Ray does. */
static void test_reference_setups(void **state)
{
	struct config c;

	load(&c,
		"{'reverse': {'portals': [{'tag': 'portal', 'domain': 'tunnel.v2ref.local'}]},"
		" 'inbounds': ["
		"  {'tag': 'tunnel', 'listen': '127.0.0.1', 'port': 21001, 'protocol': 'dokodemo-door',"
		"   'settings': {'address': 'tunnel.v2ref.local', 'port': 1, 'network': 'tcp'}},"
		"  {'tag': 'public', 'listen': '127.0.0.1', 'port': 21000, 'protocol': 'dokodemo-door',"
		"   'settings': {'address': '127.0.0.1', 'port': 25201, 'network': 'tcp'}},"
		"  {'tag': 'other', 'listen': '127.0.0.1', 'port': 21005, 'protocol': 'dokodemo-door',"
		"   'settings': {'address': '127.0.0.1', 'port': 1, 'network': 'tcp'}}],"
		" 'outbounds': [{'tag': 'block', 'protocol': 'blackhole', 'settings': {}}],"
		" 'routing': {'domainStrategy': 'AsIs', 'rules': ["
		"  {'type': 'field', 'inboundTag': ['tunnel'], 'domain': ['full:tunnel.v2ref.local'],"
		"   'outboundTag': 'portal'},"
		"  {'type': 'field', 'inboundTag': ['public'], 'outboundTag': 'portal'}]}}");
	route_is(&c, "tunnel", tgt_domain(T, "tunnel.v2ref.local", 1), "portal");
	route_is(&c, "tunnel", tgt_domain(T, "other.local", 1), NULL);
	route_is(&c, "public", tgt_ip(T, "127.0.0.1", 25201), "portal");
	route_is(&c, "other", tgt_ip(T, "127.0.0.1", 1), NULL);
	config_free(&c);

	load(&c,
		"{'reverse': {'bridges': [{'tag': 'bridge', 'domain': 'tunnel.v2ref.local'}]},"
		" 'outbounds': [{'tag': 'direct', 'protocol': 'freedom', 'settings': {}},"
		"  {'tag': 'interconn', 'protocol': 'freedom', 'settings': {'redirect': '127.0.0.1:21001'}}],"
		" 'routing': {'domainStrategy': 'AsIs', 'rules': ["
		"  {'type': 'field', 'inboundTag': ['bridge'], 'domain': ['full:tunnel.v2ref.local'],"
		"   'outboundTag': 'interconn'},"
		"  {'type': 'field', 'inboundTag': ['bridge'], 'outboundTag': 'direct'}]}}");
	route_is(&c, "bridge", tgt_domain(T, "tunnel.v2ref.local", 0), "interconn");
	route_is(&c, "bridge", tgt_ip(T, "127.0.0.1", 27007), "direct");
	route_is(&c, "bridge", tgt_ip(U, "::1", 27008), "direct");
	route_is(&c, "bridge", tgt_domain(T, "sub.tunnel.v2ref.local", 0), "direct");
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_domain_matches),
		cmocka_unit_test(test_domain_rules),
		cmocka_unit_test(test_ip_rules),
		cmocka_unit_test(test_port_and_network_rules),
		cmocka_unit_test(test_inbound_and_precedence),
		cmocka_unit_test(test_no_rules),
		cmocka_unit_test(test_reference_setups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
