// SPDX-License-Identifier: MIT
/*
 * revsock: a V2Ray-compatible reverse proxy (portal and bridge).
 *
 *   revsock run   -c FILE [--datapath auto|userspace|sockmap] [--log LEVEL]
 *   revsock check -c FILE
 *   revsock demo
 *   revsock probe
 *   revsock version
 *
 * Exit status: 0 ok; 1 fatal runtime error; 2 bad config, port in use, bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine_bpf.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"

#define REVSOCK_VERSION "0.1.0"
#define EXIT_CONFIG 2

static void usage(FILE *f)
{
	fprintf(f,
		"usage: revsock run -c FILE [--datapath auto|userspace|sockmap] [--log LEVEL]\n"
		"       revsock check -c FILE\n"
		"       revsock demo\n"
		"       revsock probe\n"
		"       revsock version\n");
}

static int parse_level(const char *s, enum log_level *lvl)
{
	static const char *const names[] = { "none", "error", "warning", "info", "debug" };

	for (int i = 0; i < 5; i++) {
		if (!strcmp(s, names[i])) {
			*lvl = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_datapath(const char *s, enum datapath_kind *d)
{
	if (!strcmp(s, "auto"))
		*d = DATAPATH_AUTO;
	else if (!strcmp(s, "userspace"))
		*d = DATAPATH_USERSPACE;
	else if (!strcmp(s, "sockmap"))
		*d = DATAPATH_SOCKMAP;
	else
		return -EINVAL;
	return 0;
}

static const char *config_role(const struct config *c)
{
	if (c->n_portals && c->n_bridges)
		return "portal+bridge";
	if (c->n_portals)
		return "portal";
	if (c->n_bridges)
		return "bridge";
	return "revsock";
}

/*
 * What `auto` prefers when both engines work on this kernel: userspace.
 * `make bench` (2026-12-05) measured the kernel engine at 0.42-0.49x the
 * userspace engine for one bulk stream, 0.83-0.92x for 8 streams, with higher
 * latency; its path moves less than a loopback sender produces, so a bulk
 * session keeps pausing at its bound.  README "Engines".
 */
#define AUTO_PREFERS_KERNEL false

/* The data path engine for this run; see README "Engines".  Resolves auto. */
static int choose_datapath(enum datapath_kind *d)
{
	char why[256] = "";
	int ret;

	if (*d == DATAPATH_USERSPACE) {
		log_info("datapath userspace");
		return 0;
	}
	ret = bpf_engine_probe(why, sizeof(why));
	if (*d == DATAPATH_SOCKMAP) {
		if (ret < 0) {
			log_err("datapath sockmap: this kernel cannot run the kernel engine: %s",
				why[0] ? why : strerror(-ret));
			return ret;
		}
		log_info("datapath sockmap: kernel engine (a tunnel whose consumer falls behind leaves the kernel "
			 "path; docs/bpf.md \"Status\")");
		return 0;
	}
	if (ret < 0) {
		log_info("datapath auto: userspace engine (kernel engine unavailable: %s)",
			 why[0] ? why : strerror(-ret));
		*d = DATAPATH_USERSPACE;
	} else if (AUTO_PREFERS_KERNEL) {
		log_info("datapath auto: sockmap engine (every kernel feature present)");
		*d = DATAPATH_SOCKMAP;
	} else {
		log_info("datapath auto: userspace engine (the kernel engine loads here but is not faster: "
			 "README \"Engines\")");
		*d = DATAPATH_USERSPACE;
	}
	return 0;
}

/* Content errors name only the JSON path: add the file, once. */
static void print_config_error(const char *path, const char *err)
{
	if (!strncmp(err, path, strlen(path)))
		fprintf(stderr, "revsock: %s\n", err);
	else
		fprintf(stderr, "revsock: %s: %s\n", path, err);
}

static int cmd_run(const char *path, const char *datapath, const char *level)
{
	char err[CONFIG_ERR_MAX];
	struct config cfg;
	struct proxy px;
	struct loop *l = NULL;
	int ret;

	ret = config_parse_file(&cfg, path, err);
	if (ret < 0) {
		print_config_error(path, err);
		return EXIT_CONFIG;
	}
	log_threshold = cfg.log_level;
	if (level && parse_level(level, &log_threshold) < 0) {
		fprintf(stderr, "revsock: --log: \"%s\" is not one of none, error, warning, info, debug\n", level);
		config_free(&cfg);
		return EXIT_CONFIG;
	}
	if (datapath && parse_datapath(datapath, &cfg.revsock.datapath) < 0) {
		fprintf(stderr, "revsock: --datapath: \"%s\" is not one of auto, userspace, sockmap\n", datapath);
		config_free(&cfg);
		return EXIT_CONFIG;
	}
	log_set_role(config_role(&cfg));
	if (choose_datapath(&cfg.revsock.datapath) < 0) {
		config_free(&cfg);
		return EXIT_CONFIG;
	}
	l = loop_new();
	if (!l) {
		fprintf(stderr, "revsock: cannot create the event loop: %s\n", strerror(errno));
		config_free(&cfg);
		return 1;
	}
	ret = proxy_start(&px, l, &cfg);
	if (ret < 0) {
		/* the failing step logged its line (e.g. the port in use) */
		if (ret != -EADDRINUSE && ret != -EACCES && ret != -EADDRNOTAVAIL && ret != -EINVAL)
			log_err("cannot start: %s", strerror(-ret));
		ret = (ret == -ENOMEM) ? 1 : EXIT_CONFIG;
		goto cleanup;
	}
	log_info("running (%zu portals, %zu bridges, %zu inbounds)", cfg.n_portals, cfg.n_bridges, cfg.n_inbounds);
	ret = loop_run(l) < 0 ? 1 : 0;
	log_info("stopped");
cleanup:
	proxy_free(&px);
	loop_free(l);
	config_free(&cfg);
	return ret;
}

/* What `--datapath auto` runs on this kernel, and why (the same probe as run). */
static int cmd_probe(void)
{
	char why[256] = "";
	int ret = bpf_engine_probe(why, sizeof(why));

	if (ret < 0)
		printf("userspace engine (kernel engine unavailable: %s)\n", why[0] ? why : strerror(-ret));
	else if (AUTO_PREFERS_KERNEL)
		printf("sockmap engine (kernel engine probe: every feature present)\n");
	else
		printf("userspace engine (kernel engine probe: every feature present; "
		       "--datapath sockmap runs it; auto prefers userspace, README \"Engines\")\n");
	return 0;
}

static int cmd_check(const char *path)
{
	char err[CONFIG_ERR_MAX];
	struct config cfg;

	if (config_parse_file(&cfg, path, err) < 0) {
		print_config_error(path, err);
		return EXIT_CONFIG;
	}
	printf("%s: OK (%zu portals, %zu bridges, %zu inbounds, %zu outbounds, %zu rules)\n", path, cfg.n_portals,
	       cfg.n_bridges, cfg.n_inbounds, cfg.n_outbounds, cfg.n_rules);
	config_free(&cfg);
	return 0;
}

/* ---------- demo: portal + bridge + a service, one request, stop ---------- */

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

static int free_port(uint16_t *port)
{
	int fd = listen_loopback(port);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static void demo_service(int lfd)
{
	for (;;) {
		char buf[512], reply[700];
		ssize_t n;
		int c = accept(lfd, NULL, NULL);

		if (c < 0)
			continue;
		n = read(c, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = 0;
			buf[strcspn(buf, "\r\n")] = 0;
			n = snprintf(reply, sizeof(reply), "demo service (behind the bridge) got: %s\n", buf);
			if (write(c, reply, (size_t)n) < 0)
				perror("demo service: write");
		}
		close(c);
	}
}

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execv(argv[0], argv);
		perror("exec");
		_exit(127);
	}
	return pid;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) ? -errno : 0;
}

static int demo_request(uint16_t port, char *answer, size_t cap)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	const char *req = "hello through revsock\n";
	struct timeval tv = { .tv_sec = 2 };
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || write(fd, req, strlen(req)) < 0) {
		close(fd);
		return -1;
	}
	while (got < cap - 1) {
		ssize_t n = read(fd, answer + got, cap - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	answer[got] = 0;
	close(fd);
	return got ? 0 : -1;
}

static int cmd_demo(const char *self)
{
	char dir[] = "/tmp/revsock-demo.XXXXXX", portal_path[64], bridge_path[64], json[2048], answer[512];
	uint16_t svc_port, tunnel_port, public_port;
	pid_t svc, bridge = -1, portal = -1;
	int lfd, ret = 1;

	if (!mkdtemp(dir))
		return 1;
	lfd = listen_loopback(&svc_port);
	if (lfd < 0 || free_port(&tunnel_port) < 0 || free_port(&public_port) < 0) {
		fprintf(stderr, "demo: no free loopback port\n");
		return 1;
	}
	snprintf(portal_path, sizeof(portal_path), "%s/portal.json", dir);
	snprintf(bridge_path, sizeof(bridge_path), "%s/bridge.json", dir);
	snprintf(json, sizeof(json),
		 "{\"log\": {\"loglevel\": \"info\"},\n"
		 " \"reverse\": {\"portals\": [{\"tag\": \"portal\", \"domain\": \"tunnel.demo.local\"}]},\n"
		 " \"inbounds\": [\n"
		 "  {\"tag\": \"tunnel\", \"listen\": \"127.0.0.1\", \"port\": %u, \"protocol\": \"dokodemo-door\",\n"
		 "   \"settings\": {\"address\": \"tunnel.demo.local\", \"port\": 1, \"network\": \"tcp\"}},\n"
		 "  {\"tag\": \"public\", \"listen\": \"127.0.0.1\", \"port\": %u, \"protocol\": \"dokodemo-door\",\n"
		 "   \"settings\": {\"address\": \"127.0.0.1\", \"port\": %u, \"network\": \"tcp\"}}],\n"
		 " \"routing\": {\"rules\": [\n"
		 "  {\"type\": \"field\", \"inboundTag\": [\"tunnel\"], \"domain\": [\"full:tunnel.demo.local\"], \"outboundTag\": \"portal\"},\n"
		 "  {\"type\": \"field\", \"inboundTag\": [\"public\"], \"outboundTag\": \"portal\"}]}}\n",
		 tunnel_port, public_port, svc_port);
	if (write_file(portal_path, json) < 0)
		return 1;
	snprintf(json, sizeof(json),
		 "{\"log\": {\"loglevel\": \"info\"},\n"
		 " \"reverse\": {\"bridges\": [{\"tag\": \"bridge\", \"domain\": \"tunnel.demo.local\"}]},\n"
		 " \"outbounds\": [\n"
		 "  {\"tag\": \"direct\", \"protocol\": \"freedom\", \"settings\": {}},\n"
		 "  {\"tag\": \"interconn\", \"protocol\": \"freedom\", \"settings\": {\"redirect\": \"127.0.0.1:%u\"}}],\n"
		 " \"routing\": {\"rules\": [\n"
		 "  {\"type\": \"field\", \"inboundTag\": [\"bridge\"], \"domain\": [\"full:tunnel.demo.local\"], \"outboundTag\": \"interconn\"},\n"
		 "  {\"type\": \"field\", \"inboundTag\": [\"bridge\"], \"outboundTag\": \"direct\"}]}}\n",
		 tunnel_port);
	if (write_file(bridge_path, json) < 0)
		return 1;

	printf("demo: service on 127.0.0.1:%u, portal tunnel port %u, public port %u\n", svc_port, tunnel_port,
	       public_port);
	printf("demo: configs in %s\n", dir);
	fflush(stdout);
	svc = fork();
	if (svc == 0) {
		demo_service(lfd);
		_exit(0);
	}
	close(lfd);
	portal = spawn((char *[]){ (char *)self, "run", "-c", portal_path, NULL });
	bridge = spawn((char *[]){ (char *)self, "run", "-c", bridge_path, NULL });

	/* The bridge dials within a moment; retry for up to 5 s. */
	for (int i = 0; i < 100; i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		if (demo_request(public_port, answer, sizeof(answer)) == 0 && strstr(answer, "demo service")) {
			printf("demo: sent \"hello through revsock\" to 127.0.0.1:%u, answer: %s", public_port, answer);
			ret = 0;
			break;
		}
	}
	if (ret)
		fprintf(stderr, "demo: no answer through the tunnel within 5 s\n");
	kill(portal, SIGTERM);
	kill(bridge, SIGTERM);
	kill(svc, SIGTERM);
	for (int i = 0; i < 3; i++) {
		int status;
		pid_t pid = wait(&status);

		if (pid == portal || pid == bridge) {
			printf("demo: %s exited with status %d\n", pid == portal ? "portal" : "bridge",
			       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				ret = 1;
		}
	}
	unlink(portal_path);
	unlink(bridge_path);
	rmdir(dir);
	printf("demo: %s\n", ret ? "FAILED" : "done");
	return ret;
}

static const char *self_path(const char *argv0)
{
	static char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	if (n <= 0)
		return argv0;
	buf[n] = 0;
	return buf;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "datapath", required_argument, NULL, 'd' },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *cmd, *config = NULL, *datapath = NULL, *level = NULL;
	int c;

	if (argc < 2) {
		usage(stderr);
		return EXIT_CONFIG;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:d:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'd':
			datapath = optarg;
			break;
		case 'l':
			level = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (!strcmp(cmd, "version")) {
		printf("revsock %s (Mux.Cool and reverse Control compatible with V2Ray 4.34)\n", REVSOCK_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "demo"))
		return cmd_demo(self_path(argv[0]));
	if (!strcmp(cmd, "probe"))
		return cmd_probe();
	if ((!strcmp(cmd, "run") || !strcmp(cmd, "check")) && !config) {
		fprintf(stderr, "revsock %s: -c FILE is required\n", cmd);
		return EXIT_CONFIG;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(config, datapath, level);
	if (!strcmp(cmd, "check"))
		return cmd_check(config);
	usage(stderr);
	return EXIT_CONFIG;
}
