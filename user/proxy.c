// SPDX-License-Identifier: MIT
/* The running proxy: builds portals, bridges and inbounds from the config,
 * handles SIGTERM/SIGINT, and shuts down within 2 s. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "kpath.h"
#include "linkwatch.h"
#include "log.h"
#include "proxy.h"

#define STOP_GRACE_MS 1500 /* SIGTERM: exit within 2 s whatever the peers do */

static void stop_timer_fired(struct loop *l, void *ctx)
{
	loop_stop(l);
}

void proxy_stop(struct proxy *px)
{
	struct tunnel *t;

	if (px->stopping)
		return;
	px->stopping = true;
	log_info("stopping: no new connections, ending sessions");
	inbounds_stop(px);
	for (size_t i = 0; i < px->n_bridges; i++)
		loop_timer_disarm(px->loop, &px->bridges[i].monitor);
	for (t = px->all_tunnels; t; t = t->all_next) {
		struct session *s, *tmp;

		HASH_ITER(hh, t->sessions, s, tmp)
			session_end(s, false, NULL);
		tunnel_finish(t, "shutting down");
	}
	/* leave as soon as every tunnel has flushed and closed (tunnel_close), or after the grace */
	if (!px->all_tunnels)
		loop_stop(px->loop);
	loop_timer_arm(px->loop, &px->stop_timer, STOP_GRACE_MS, stop_timer_fired, px);
}

static void signal_readable(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct proxy *px = (struct proxy *)((char *)io - offsetof(struct proxy, sig_io));
	struct signalfd_siginfo si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			proxy_stop(px);
	}
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* every session holds one socket; V2Ray setups run thousands */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int proxy_start(struct proxy *px, struct loop *l, const struct config *cfg)
{
	sigset_t mask;
	int fd, err;

	memset(px, 0, sizeof(*px));
	px->loop = l;
	px->cfg = cfg;
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	px->scratch = malloc(UP_FRAMES * UP_FRAME_SPAN);
	px->rbuf = malloc(TUNNEL_RBUF_SIZE);
	px->portals = calloc(cfg->n_portals + 1, sizeof(*px->portals));
	px->bridges = calloc(cfg->n_bridges + 1, sizeof(*px->bridges));
	if (!px->scratch || !px->rbuf || !px->portals || !px->bridges)
		return -ENOMEM;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = loop_add(l, &px->sig_io, fd, EPOLLIN, signal_readable);
	if (err < 0)
		return err;

	if (cfg->revsock.datapath == DATAPATH_SOCKMAP) {
		char why[256] = "";

		err = kpath_open(px, why, sizeof(why));
		if (err < 0) {
			log_err("datapath sockmap: cannot load the kernel engine: %s", why[0] ? why : strerror(-err));
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < cfg->n_portals; i++) {
		px->portals[i].px = px;
		px->portals[i].cfg = &cfg->portals[i];
	}
	px->n_portals = cfg->n_portals;
	err = inbounds_start(px);
	if (err < 0)
		return err;
	for (size_t i = 0; i < cfg->n_bridges; i++) {
		px->bridges[i].px = px;
		px->bridges[i].cfg = &cfg->bridges[i];
		px->n_bridges++;
		bridge_start(&px->bridges[i]);
	}
	px->linkwatch = linkwatch_start(px);
	return 0;
}

void proxy_free(struct proxy *px)
{
	while (px->all_tunnels)
		tunnel_close(px->all_tunnels, "exit");
	linkwatch_stop(px->linkwatch);
	px->linkwatch = NULL;
	kpath_close(px);
	for (size_t i = 0; i < px->n_portals; i++)
		free(px->portals[i].tunnels.v);
	for (size_t i = 0; i < px->n_bridges; i++)
		free(px->bridges[i].tunnels.v);
	free(px->portals);
	free(px->bridges);
	free(px->tcp_in);
	free(px->udp_in);
	free(px->scratch);
	free(px->rbuf);
}
