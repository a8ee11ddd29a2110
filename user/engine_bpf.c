/* SPDX-License-Identifier: MIT */
/* sockmap engine: probes, skeleton load, pins, tunnels and session slots. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "engine_bpf.h"
#include "splice.skel.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

struct eng_tunnel {
	uint32_t id; /* 0 = free entry */
	uint64_t cookie;
	int fd;          /* the caller's tunnel socket (not owned) */
	int mbox[2];     /* mailbox socketpair: [0] in "mailboxes", read by the caller; [1] kept */
	uint64_t rcvd0;  /* tcpi_bytes_received that userspace consumed before the add */
	bool unhooked;   /* release: out of the "tunnels" sockhash */
	bool released;   /* release: done, mbox_total is final */
	uint64_t mbox_total;
};

/* Mailbox receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF, capped by
 * rmem_max): ingress messages are charged their skb's truesize, and the
 * kernel retries a full mailbox only every jiffy. */
#define MAILBOX_RCVBUF (4 << 20)

struct bpf_engine {
	struct splice *skel;
	int pin_dirfd;
	char pin_dir[PATH_MAX];
	struct revsock_slot *slots; /* mmap of the "slots" map */
	size_t slots_len;
	uint32_t max_slots;
	uint32_t max_tunnels;
	uint32_t *free_slots; /* stack */
	int *slot_fd;         /* the caller's target fd per slot (not owned) */
	uint32_t nfree;
	struct eng_tunnel *tunnels;
	uint32_t next_tunnel_id;
	int ncpus;
};

/* ---- helpers ---------------------------------------------------------- */

static void say(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (!why || !cap)
		return;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

static bool libbpf_quiet;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (libbpf_quiet || level == LIBBPF_DEBUG)
		return 0;
	if (level == LIBBPF_INFO && !getenv("REVSOCK_BPF_VERBOSE"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void libbpf_setup(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	libbpf_set_print(libbpf_print);
}

static uint32_t load_u32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static uint64_t load_u64(const __u64 *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* ---- probes ----------------------------------------------------------- */

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define LDX_W(d, s, o) INSN(BPF_LDX | BPF_MEM | BPF_W, d, s, o, 0)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define CALL_KFUNC(id) INSN(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, id)
#define CALL_HELPER(id) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, id)
#define ST_W(d, o, i) INSN(BPF_ST | BPF_MEM | BPF_W, d, 0, o, i)
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define ADD64_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define LD_MAP_FD(d, fd) INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)

static int probe_prog(const struct bpf_insn *insns, size_t n, char *log, size_t logcap)
{
	LIBBPF_OPTS(bpf_prog_load_opts, o, .log_buf = log, .log_size = (unsigned)logcap,
		    .log_level = log ? 1 : 0);
	int fd = bpf_prog_load(BPF_PROG_TYPE_SK_SKB, "revsock_probe", "GPL", insns, n, &o);

	return fd < 0 ? -errno : fd;
}

/*
 * The engine's mailbox path, by use: a loopback TCP pair in a SOCKHASH with a
 * stream parser (whole skb) and a verdict that redirects to the INGRESS of an
 * AF_UNIX socket in another SOCKHASH; a few bytes written must come out of the
 * AF_UNIX socket.  Redirects only: no SK_PASS (docs/bpf.md).
 */
static int probe_mailbox(int parser_fd, char *why, size_t cap)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	int src = -1, dst = -1, vfd = -1, lfd = -1, a = -1, b = -1, mb[2] = { -1, -1 };
	static const char msg[] = "revsock-mailbox-probe";
	char buf[64];
	uint32_t k0 = 0;
	uint64_t v;
	int ret;

	src = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "revsock_probe", 4, 8, 1, NULL);
	dst = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "revsock_probe", 4, 8, 1, NULL);
	if (src < 0 || dst < 0) {
		ret = -errno;
		say(why, cap, "BPF_MAP_TYPE_SOCKHASH: %s", strerror(-ret));
		goto out;
	} else {
		struct bpf_insn verdict[] = {
			ST_W(BPF_REG_10, -4, 0),
			LD_MAP_FD(BPF_REG_2, dst),
			MOV64_REG(BPF_REG_3, BPF_REG_10),
			ADD64_IMM(BPF_REG_3, -4),
			MOV64_IMM(BPF_REG_4, BPF_F_INGRESS),
			CALL_HELPER(BPF_FUNC_sk_redirect_hash),
			EXIT(),
		};

		vfd = probe_prog(verdict, sizeof(verdict) / sizeof(verdict[0]), NULL, 0);
		if (vfd < 0) {
			ret = vfd;
			say(why, cap, "sk_skb verdict calling bpf_sk_redirect_hash(BPF_F_INGRESS): %s",
			    strerror(-ret));
			goto out;
		}
	}
	if (bpf_prog_attach(parser_fd, src, BPF_SK_SKB_STREAM_PARSER, 0) ||
	    bpf_prog_attach(vfd, src, BPF_SK_SKB_STREAM_VERDICT, 0)) {
		ret = -errno;
		say(why, cap, "sk_skb stream parser/verdict attach to SOCKHASH: %s", strerror(-ret));
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, mb)) {
		ret = -errno;
		say(why, cap, "AF_UNIX socketpair: %s", strerror(-ret));
		goto out;
	}
	v = (uint64_t)mb[0];
	if (bpf_map_update_elem(dst, &k0, &v, BPF_ANY)) {
		ret = -errno;
		say(why, cap, "AF_UNIX stream socket in a SOCKHASH (kernel < 5.15?): %s", strerror(-ret));
		goto out;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) ||
	    (a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(a, (struct sockaddr *)&sin, sizeof(sin)) ||
	    (b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		ret = -errno;
		say(why, cap, "loopback TCP pair for the mailbox probe: %s", strerror(-ret));
		goto out;
	}
	v = (uint64_t)b;
	if (bpf_map_update_elem(src, &k0, &v, BPF_ANY)) {
		ret = -errno;
		say(why, cap, "TCP socket in a SOCKHASH with parser+verdict: %s", strerror(-ret));
		goto out;
	}
	if (write(a, msg, sizeof(msg)) != (ssize_t)sizeof(msg)) {
		ret = -errno ? -errno : -EIO;
		say(why, cap, "mailbox probe write: %s", strerror(-ret));
		goto out;
	} else {
		struct pollfd p = { .fd = mb[0], .events = POLLIN };
		size_t got = 0;

		/* 3 s: TCG guests are slow, the kworker delivers. */
		while (got < sizeof(msg) && poll(&p, 1, 3000) == 1) {
			ssize_t n = recv(mb[0], buf + got, sizeof(buf) - got, MSG_DONTWAIT);

			if (n <= 0 && !(n < 0 && errno == EAGAIN))
				break;
			if (n > 0)
				got += (size_t)n;
		}
		if (got != sizeof(msg) || memcmp(buf, msg, sizeof(msg))) {
			ret = -EOPNOTSUPP;
			say(why, cap, "sk_skb redirect to the ingress of an AF_UNIX socket: %zu of %zu "
			    "bytes arrived", got, sizeof(msg));
			goto out;
		}
	}
	ret = 0;
out:
	for (int i = 0; i < 2; i++)
		if (mb[i] >= 0)
			close(mb[i]);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	if (lfd >= 0)
		close(lfd);
	if (vfd >= 0)
		close(vfd);
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	return ret;
}

static int probe_inner(char *why, size_t cap)
{
	struct bpf_insn parser[] = { LDX_W(BPF_REG_0, BPF_REG_1, offsetof(struct __sk_buff, len)), EXIT() };
	struct bpf_insn verdict[] = { MOV64_IMM(BPF_REG_0, 1), EXIT() };
	int hash = -1, map = -1, pfd = -1, vfd = -1, kfd = -1, ux[2] = { -1, -1 };
	struct btf *vbtf = NULL;
	struct splice *skel = NULL;
	int ret, id;

	hash = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "revsock_probe", 4, 8, 1, NULL);
	if (hash < 0) {
		ret = -errno;
		say(why, cap, "BPF_MAP_TYPE_SOCKHASH: %s%s", strerror(-ret),
		    ret == -EPERM ? " (need root / CAP_BPF+CAP_NET_ADMIN)" : "");
		goto out;
	}
	map = bpf_map_create(BPF_MAP_TYPE_SOCKMAP, "revsock_probe", 4, 8, 1, NULL);
	if (map < 0) {
		ret = -errno;
		say(why, cap, "BPF_MAP_TYPE_SOCKMAP: %s", strerror(-ret));
		goto out;
	}
	pfd = probe_prog(parser, 2, NULL, 0);
	vfd = probe_prog(verdict, 2, NULL, 0);
	if (pfd < 0 || vfd < 0) {
		ret = pfd < 0 ? pfd : vfd;
		say(why, cap, "BPF_PROG_TYPE_SK_SKB load: %s", strerror(-ret));
		goto out;
	}
	if (bpf_prog_attach(pfd, hash, BPF_SK_SKB_STREAM_PARSER, 0) ||
	    bpf_prog_attach(vfd, hash, BPF_SK_SKB_STREAM_VERDICT, 0)) {
		ret = -errno;
		say(why, cap, "sk_skb stream parser/verdict attach to SOCKHASH: %s", strerror(-ret));
		goto out;
	}
	vbtf = btf__load_vmlinux_btf();
	if (!vbtf) {
		ret = -errno ? -errno : -ENOENT;
		say(why, cap, "kernel BTF (/sys/kernel/btf/vmlinux): %s", strerror(-ret));
		goto out;
	}
	id = btf__find_by_name_kind(vbtf, "bpf_cast_to_kern_ctx", BTF_KIND_FUNC);
	if (id < 0) {
		ret = -EOPNOTSUPP;
		say(why, cap, "kfunc bpf_cast_to_kern_ctx: not in kernel BTF (kernel < 6.2)");
		goto out;
	} else {
		struct bpf_insn k[] = { CALL_KFUNC(id), MOV64_IMM(BPF_REG_0, 1), EXIT() };

		kfd = probe_prog(k, 3, NULL, 0);
		if (kfd < 0) {
			ret = kfd;
			say(why, cap, "kfunc bpf_cast_to_kern_ctx in sk_skb: %s", strerror(-ret));
			goto out;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ux)) {
		ret = -errno;
		say(why, cap, "AF_UNIX socketpair: %s", strerror(-ret));
		goto out;
	} else {
		uint32_t k0 = 0;
		uint64_t v = (uint64_t)ux[0];

		if (bpf_map_update_elem(map, &k0, &v, BPF_ANY)) {
			ret = -errno;
			say(why, cap, "AF_UNIX socket in SOCKMAP: %s", strerror(-ret));
			goto out;
		}
	}
	ret = probe_mailbox(pfd, why, cap);
	if (ret)
		goto out;
	skel = splice__open();
	if (!skel) {
		ret = -errno;
		say(why, cap, "engine programs: open: %s", strerror(-ret));
		goto out;
	}
	ret = splice__load(skel);
	if (ret) {
		say(why, cap, "engine programs (revsock_parser/revsock_verdict) rejected: %s",
		    strerror(-ret));
		goto out;
	}
	ret = 0;
out:
	splice__destroy(skel);
	btf__free(vbtf);
	for (int i = 0; i < 2; i++)
		if (ux[i] >= 0)
			close(ux[i]);
	if (kfd >= 0)
		close(kfd);
	if (pfd >= 0)
		close(pfd);
	if (vfd >= 0)
		close(vfd);
	if (map >= 0)
		close(map);
	if (hash >= 0)
		close(hash);
	return ret;
}

int bpf_engine_probe(char *why, size_t cap)
{
	int ret;

	libbpf_setup();
	libbpf_quiet = true;
	ret = probe_inner(why, cap);
	libbpf_quiet = false;
	if (!ret)
		say(why, cap, "ok");
	return ret;
}

/* ---- pins --------------------------------------------------------------- */

static int ensure_bpffs(const char *root, char *why, size_t cap)
{
	char parent[PATH_MAX];
	struct statfs st;
	int ret;
	char *slash;

	snprintf(parent, sizeof(parent), "%s", root);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	if (statfs(parent, &st)) {
		ret = -errno;
		say(why, cap, "statfs %s: %s", parent, strerror(-ret));
		return ret;
	}
	if (st.f_type == BPF_FS_MAGIC)
		return 0;
	/* Like bpftool: mount a bpffs where pins are expected. */
	if (mount("bpf", parent, "bpf", 0, "mode=0700")) {
		ret = -errno;
		say(why, cap, "%s is not a bpffs and mounting one failed: %s", parent, strerror(-ret));
		return ret;
	}
	return 0;
}

/* Unlink every entry of the (locked) instance directory: stale pins. */
static int clear_dir(int dirfd)
{
	int fd = dup(dirfd);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		unlinkat(dirfd, de->d_name, 0);
	}
	closedir(d);
	return 0;
}

static int pin_open(struct bpf_engine *e, const struct bpf_engine_opts *o, char *why, size_t cap)
{
	const char *root = o->pin_root ? o->pin_root : BPF_ENGINE_PIN_ROOT;
	int ret;

	if (!o->instance || !*o->instance)
		return 0;
	if (strchr(o->instance, '/') || !strcmp(o->instance, ".") || !strcmp(o->instance, "..")) {
		say(why, cap, "bad instance name '%s'", o->instance);
		return -EINVAL;
	}
	ret = ensure_bpffs(root, why, cap);
	if (ret)
		return ret;
	if (mkdir(root, 0700) && errno != EEXIST) {
		ret = -errno;
		say(why, cap, "mkdir %s: %s", root, strerror(-ret));
		return ret;
	}
	snprintf(e->pin_dir, sizeof(e->pin_dir), "%s/%s", root, o->instance);
	if (mkdir(e->pin_dir, 0700) && errno != EEXIST) {
		ret = -errno;
		say(why, cap, "mkdir %s: %s", e->pin_dir, strerror(-ret));
		return ret;
	}
	e->pin_dirfd = open(e->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e->pin_dirfd < 0) {
		ret = -errno;
		say(why, cap, "open %s: %s", e->pin_dir, strerror(-ret));
		return ret;
	}
	/* The lock lives as long as the process: a held lock is a live
	 * instance, a free one over existing pins is a crashed run. */
	if (flock(e->pin_dirfd, LOCK_EX | LOCK_NB)) {
		ret = -errno;
		say(why, cap, "%s is in use by a running instance", e->pin_dir);
		close(e->pin_dirfd);
		e->pin_dirfd = -1;
		e->pin_dir[0] = '\0';
		return ret == -EWOULDBLOCK ? -EBUSY : ret;
	}
	return clear_dir(e->pin_dirfd);
}

static int pin_maps(struct bpf_engine *e, char *why, size_t cap)
{
	struct bpf_map *m;
	char path[PATH_MAX + 64];

	if (e->pin_dirfd < 0)
		return 0;
	bpf_object__for_each_map(m, e->skel->obj) {
		const char *name = bpf_map__name(m);

		int ret;

		if (bpf_map__is_internal(m))
			continue; /* .rodata: knobs, frozen, not pinnable */
		snprintf(path, sizeof(path), "%s/%s", e->pin_dir, name);
		ret = bpf_map__pin(m, path);
		if (ret) {
			say(why, cap, "pin %s: %s", path, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static void pin_close(struct bpf_engine *e)
{
	char root[PATH_MAX];
	char *slash;

	if (e->pin_dirfd < 0)
		return;
	clear_dir(e->pin_dirfd);
	rmdir(e->pin_dir);
	snprintf(root, sizeof(root), "%s", e->pin_dir);
	slash = strrchr(root, '/');
	if (slash) {
		*slash = '\0';
		rmdir(root); /* only if empty */
	}
	close(e->pin_dirfd);
	e->pin_dirfd = -1;
}

/* ---- open/close --------------------------------------------------------- */

int bpf_engine_open(const struct bpf_engine_opts *opts, struct bpf_engine **out, char *why, size_t cap)
{
	struct bpf_engine_opts o = opts ? *opts : (struct bpf_engine_opts){ 0 };
	struct bpf_engine *e;
	int ret, tfd;
	long page = sysconf(_SC_PAGESIZE);

	libbpf_setup();
	*out = NULL;
	if (!o.session_bound)
		o.session_bound = REVSOCK_DEFAULT_SESSION_BOUND;
	if (!o.global_bound)
		o.global_bound = REVSOCK_DEFAULT_GLOBAL_BOUND;
	if (o.global_bound < o.session_bound)
		o.global_bound = o.session_bound;
	if (!o.max_tunnels)
		o.max_tunnels = REVSOCK_DEFAULT_MAX_TUNNELS;
	if (!o.max_sessions)
		o.max_sessions = REVSOCK_DEFAULT_MAX_SESSIONS;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->pin_dirfd = -1;
	e->max_slots = o.max_sessions;
	e->max_tunnels = o.max_tunnels;
	e->next_tunnel_id = 1;
	e->slots = MAP_FAILED;
	e->ncpus = libbpf_num_possible_cpus();
	e->free_slots = calloc(e->max_slots, sizeof(*e->free_slots));
	e->tunnels = calloc(e->max_tunnels, sizeof(*e->tunnels));
	e->slot_fd = calloc(e->max_slots, sizeof(*e->slot_fd));
	if (!e->free_slots || !e->tunnels || !e->slot_fd || e->ncpus <= 0) {
		ret = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < e->max_slots; i++)
		e->free_slots[i] = e->max_slots - 1 - i; /* pop gives 0 first */
	e->nfree = e->max_slots;

	ret = pin_open(e, &o, why, cap);
	if (ret)
		goto fail;

	e->skel = splice__open();
	if (!e->skel) {
		ret = -errno;
		say(why, cap, "open BPF object: %s", strerror(-ret));
		goto fail;
	}
	e->skel->rodata->session_bound = o.session_bound;
	e->skel->rodata->global_bound = o.global_bound;
	bpf_map__set_max_entries(e->skel->maps.tunnels, o.max_tunnels);
	bpf_map__set_max_entries(e->skel->maps.tunnel_state, o.max_tunnels);
	bpf_map__set_max_entries(e->skel->maps.mailboxes, o.max_tunnels);
	bpf_map__set_max_entries(e->skel->maps.tunnel_ctl, o.max_tunnels);
	bpf_map__set_max_entries(e->skel->maps.targets, o.max_sessions);
	bpf_map__set_max_entries(e->skel->maps.slots, o.max_sessions);
	bpf_map__set_max_entries(e->skel->maps.sessions, o.max_sessions);
	ret = splice__load(e->skel);
	if (ret) {
		say(why, cap, "load BPF programs: %s (run bpf_engine_probe for the missing feature)",
		    strerror(-ret));
		goto fail;
	}
	tfd = bpf_map__fd(e->skel->maps.tunnels);
	if (bpf_prog_attach(bpf_program__fd(e->skel->progs.revsock_parser), tfd,
			    BPF_SK_SKB_STREAM_PARSER, 0) ||
	    bpf_prog_attach(bpf_program__fd(e->skel->progs.revsock_verdict), tfd,
			    BPF_SK_SKB_STREAM_VERDICT, 0)) {
		ret = -errno;
		say(why, cap, "attach parser/verdict: %s", strerror(-ret));
		goto fail;
	}
	e->slots_len = ((size_t)e->max_slots * sizeof(struct revsock_slot) + page - 1) & ~(size_t)(page - 1);
	e->slots = mmap(NULL, e->slots_len, PROT_READ | PROT_WRITE, MAP_SHARED,
			bpf_map__fd(e->skel->maps.slots), 0);
	if (e->slots == MAP_FAILED) {
		ret = -errno;
		say(why, cap, "mmap slots map: %s", strerror(-ret));
		goto fail;
	}
	ret = pin_maps(e, why, cap);
	if (ret)
		goto fail;
	*out = e;
	return 0;
fail:
	bpf_engine_close(e);
	return ret;
}

void bpf_engine_close(struct bpf_engine *e)
{
	if (!e)
		return;
	pin_close(e);
	if (e->slots != MAP_FAILED)
		munmap(e->slots, e->slots_len);
	splice__destroy(e->skel); /* closing the maps releases every socket */
	for (uint32_t i = 0; e->tunnels && i < e->max_tunnels; i++)
		if (e->tunnels[i].id) {
			close(e->tunnels[i].mbox[0]);
			close(e->tunnels[i].mbox[1]);
		}
	free(e->free_slots);
	free(e->tunnels);
	free(e->slot_fd);
	free(e);
}

const char *bpf_engine_pin_dir(const struct bpf_engine *e)
{
	return e->pin_dirfd >= 0 ? e->pin_dir : "";
}

/* ---- tunnels ------------------------------------------------------------ */

static struct eng_tunnel *tunnel_find(const struct bpf_engine *e, uint32_t id)
{
	for (uint32_t i = 0; id && i < e->max_tunnels; i++)
		if (e->tunnels[i].id == id)
			return &e->tunnels[i];
	return NULL;
}

static int sock_proto(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &l))
		return -errno;
	return v;
}

/* Bytes the socket received in order (tcpi_bytes_received: its FIN counts one,
 * *fin says whether it may be in), and of them those still unread (SIOCINQ),
 * read consistently (no segment arrived in between). */
static int tcp_received(int fd, uint64_t *rcvd, int *inq, int *fin)
{
	for (int tries = 0; tries < 8; tries++) {
		struct tcp_info t1, t2;
		socklen_t l1 = sizeof(t1), l2 = sizeof(t2);
		int q = 0;

		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &t1, &l1) ||
		    (inq && ioctl(fd, SIOCINQ, &q)) ||
		    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &t2, &l2))
			return -errno;
		if (t1.tcpi_bytes_received != t2.tcpi_bytes_received || t1.tcpi_state != t2.tcpi_state)
			continue;
		*rcvd = t1.tcpi_bytes_received;
		if (inq)
			*inq = q;
		if (fin) {
			switch (t1.tcpi_state) {
			case 8:  /* TCP_CLOSE_WAIT (include/net/tcp_states.h) */
			case 9:  /* TCP_LAST_ACK */
			case 11: /* TCP_CLOSING */
			case 6:  /* TCP_TIME_WAIT */
				*fin = 1; /* the peer's FIN is in */
				break;
			case 7:  /* TCP_CLOSE */
				*fin = 2; /* reset or closed: maybe */
				break;
			default:
				*fin = 0;
			}
		}
		return 0;
	}
	return -EAGAIN;
}

static int ctl_set(struct bpf_engine *e, uint32_t index, uint32_t release)
{
	struct revsock_tunnel_ctl c = { .release = release };

	if (bpf_map_update_elem(bpf_map__fd(e->skel->maps.tunnel_ctl), &index, &c, BPF_ANY))
		return -errno;
	return 0;
}

static int mailbox_open(int mb[2])
{
	int sz = MAILBOX_RCVBUF, fl;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, mb))
		return -errno;
	if (setsockopt(mb[0], SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)))
		setsockopt(mb[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)); /* up to rmem_max */
	fl = fcntl(mb[0], F_GETFL);
	if (fl < 0 || fcntl(mb[0], F_SETFL, fl | O_NONBLOCK)) {
		int ret = -errno;

		close(mb[0]);
		close(mb[1]);
		return ret;
	}
	return 0;
}

/*
 * Make the kernel call the socket's sk_data_ready now if it holds data:
 * setting SO_RCVLOWAT (to its current value) runs tcp_data_ready().  Joining
 * the sockhash does not: bytes that arrived before the socket joined would
 * wait for the peer's next segment before the stream parser saw them (a peer
 * that sends its first frames and waits for the answer then waits forever;
 * seen under TCG).  Also used after the socket leaves the sockhash and by
 * the watchdog (bpf_engine_tunnel_kick).  The "lost wakeups after leaving"
 * once blamed on that path were a flaw of the daemon's own check (kpath.c
 * kafter_poll).
 */
static void kick_data_ready(int fd)
{
	int lowat = 1;
	socklen_t l = sizeof(lowat);

	if (getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, &l) < 0 || lowat < 1)
		lowat = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
}

int bpf_engine_tunnel_add(struct bpf_engine *e, int fd, uint32_t *tunnel_id, int *mailbox_fd)
{
	struct revsock_tunnel_state ts = { 0 };
	struct eng_tunnel *t = NULL;
	socklen_t l = sizeof(uint64_t);
	uint64_t cookie, v = (uint64_t)fd, rcvd, mbv;
	int ret, inq, mb[2];
	int sfd = bpf_map__fd(e->skel->maps.tunnel_state);
	int mfd = bpf_map__fd(e->skel->maps.mailboxes);

	if (sock_proto(fd) != IPPROTO_TCP)
		return -EOPNOTSUPP;
	for (uint32_t i = 0; i < e->max_tunnels && !t; i++)
		if (!e->tunnels[i].id)
			t = &e->tunnels[i];
	if (!t)
		return -ENOSPC;
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &l))
		return -errno;
	/* Bytes userspace consumed before the add (normally 0): the parser
	 * sees every byte after them (queued bytes are parsed at insertion). */
	ret = tcp_received(fd, &rcvd, &inq, NULL);
	if (ret)
		return ret;
	ret = mailbox_open(mb);
	if (ret)
		return ret;
	ts.tunnel_id = e->next_tunnel_id;
	ts.ctl_index = (uint32_t)(t - e->tunnels);
	ret = ctl_set(e, ts.ctl_index, 0);
	if (ret) {
		close(mb[0]);
		close(mb[1]);
		return ret;
	}
	mbv = (uint64_t)mb[0];
	/* Mailbox and state first: bytes already queued are parsed at insertion. */
	if (bpf_map_update_elem(mfd, &ts.tunnel_id, &mbv, BPF_NOEXIST)) {
		ret = -errno;
		goto fail_mb;
	}
	if (bpf_map_update_elem(sfd, &cookie, &ts, BPF_NOEXIST)) {
		ret = -errno;
		goto fail_mbmap;
	}
	if (bpf_map_update_elem(bpf_map__fd(e->skel->maps.tunnels), &ts.tunnel_id, &v, BPF_NOEXIST)) {
		ret = -errno;
		bpf_map_delete_elem(sfd, &cookie);
		goto fail_mbmap;
	}
	t->id = ts.tunnel_id;
	t->cookie = cookie;
	t->fd = fd;
	t->mbox[0] = mb[0];
	t->mbox[1] = mb[1];
	t->rcvd0 = rcvd - (uint64_t)inq;
	t->unhooked = t->released = false;
	t->mbox_total = 0;
	if (++e->next_tunnel_id == 0)
		e->next_tunnel_id = 1;
	*tunnel_id = t->id;
	*mailbox_fd = mb[0];
	kick_data_ready(fd); /* bytes already queued reach the parser now */
	return 0;
fail_mbmap:
	bpf_map_delete_elem(mfd, &ts.tunnel_id);
fail_mb:
	close(mb[0]);
	close(mb[1]);
	return ret;
}

int bpf_engine_tunnel_remove(struct bpf_engine *e, uint32_t tunnel_id)
{
	struct eng_tunnel *t = tunnel_find(e, tunnel_id);

	if (!t)
		return -ENOENT;
	for (uint32_t i = 0; i < e->max_slots; i++)
		if (load_u32(&e->slots[i].mode) != REVSOCK_SLOT_FREE && e->slots[i].tunnel_id == tunnel_id)
			bpf_engine_session_detach(e, i, true);
	bpf_map_delete_elem(bpf_map__fd(e->skel->maps.tunnels), &tunnel_id);
	bpf_map_delete_elem(bpf_map__fd(e->skel->maps.tunnel_state), &t->cookie);
	bpf_map_delete_elem(bpf_map__fd(e->skel->maps.mailboxes), &tunnel_id);
	ctl_set(e, (uint32_t)(t - e->tunnels), 0);
	close(t->mbox[0]);
	close(t->mbox[1]);
	t->id = 0;
	return 0;
}

int bpf_engine_tunnel_release_begin(struct bpf_engine *e, uint32_t tunnel_id)
{
	struct eng_tunnel *t = tunnel_find(e, tunnel_id);

	if (!t)
		return -ENOENT;
	return ctl_set(e, (uint32_t)(t - e->tunnels), 1);
}

/* Bytes of the tunnel the kernel consumed (received, minus the FIN, minus what is
 * still queued, minus what userspace read before the add), and, read afterwards,
 * the tunnel state.  fin == 2 (closed): the FIN may or may not be in. */
static int tunnel_snapshot(const struct bpf_engine *e, const struct eng_tunnel *t, bool with_inq,
			   uint64_t *rcvd, int *fin, struct revsock_tunnel_state *ts)
{
	int ret, inq = 0;

	ret = tcp_received(t->fd, rcvd, with_inq ? &inq : NULL, fin);
	if (ret)
		return ret;
	*rcvd -= t->rcvd0 + (uint64_t)inq;
	if (bpf_map_lookup_elem(bpf_map__fd(e->skel->maps.tunnel_state), &t->cookie, ts))
		return -errno;
	return 0;
}

static bool all_through(uint64_t in, uint64_t rcvd, int fin)
{
	return in == rcvd || (fin && in + 1 == rcvd);
}

int bpf_engine_tunnel_release_poll(struct bpf_engine *e, uint32_t tunnel_id, uint64_t *mailbox_total)
{
	struct eng_tunnel *t = tunnel_find(e, tunnel_id);
	struct revsock_tunnel_state ts;
	uint64_t rcvd;
	int ret, fin;

	if (!t)
		return -ENOENT;
	if (t->released) {
		*mailbox_total = t->mbox_total;
		return 1;
	}
	if (!t->unhooked) {
		/* A frame boundary: the parser went raw (every later message
		 * is complete at once), or it is idle at one (every received
		 * byte through the verdict, no payload pending): a parse
		 * that starts now sees the request and goes raw. */
		ret = tunnel_snapshot(e, t, false, &rcvd, &fin, &ts);
		if (ret)
			return ret;
		if (ts.error == REVSOCK_TUNNEL_MAILBOX)
			return -EIO;
		if (!ts.released && !ts.error && !(all_through(ts.in_bytes, rcvd, fin) && !ts.p_expect_pay))
			return 0;
		/* Out of the sockhash: strparser stops, the socket gets its
		 * own protocol back; unparsed bytes stay in its queue. */
		if (bpf_map_delete_elem(bpf_map__fd(e->skel->maps.tunnels), &tunnel_id) && errno != ENOENT)
			return -errno;
		t->unhooked = true;
		kick_data_ready(t->fd); /* may wake epoll for bytes the stopping parser left */
	}
	/* A parse that was running when the socket left the map may still
	 * deliver: done when every byte gone from the TCP queue went through
	 * the verdict. */
	ret = tunnel_snapshot(e, t, true, &rcvd, &fin, &ts);
	if (ret)
		return ret;
	if (ts.error == REVSOCK_TUNNEL_MAILBOX)
		return -EIO;
	if (!all_through(ts.in_bytes, rcvd, fin))
		return 0;
	if (bpf_map_lookup_elem(bpf_map__fd(e->skel->maps.tunnel_state), &t->cookie, &ts))
		return -errno;
	t->mbox_total = ts.mailbox_bytes;
	t->released = true;
	*mailbox_total = t->mbox_total;
	return 1;
}

int64_t bpf_engine_tunnel_mailbox_bytes(const struct bpf_engine *e, uint32_t tunnel_id)
{
	const struct eng_tunnel *t = tunnel_find(e, tunnel_id);
	struct revsock_tunnel_state ts;

	if (!t)
		return -ENOENT;
	if (bpf_map_lookup_elem(bpf_map__fd(e->skel->maps.tunnel_state), &t->cookie, &ts))
		return -errno;
	return (int64_t)ts.mailbox_bytes;
}

int bpf_engine_tunnel_progress(const struct bpf_engine *e, uint32_t tunnel_id,
			       struct bpf_engine_tunnel_progress *p)
{
	const struct eng_tunnel *t = tunnel_find(e, tunnel_id);
	struct revsock_tunnel_state ts;
	uint64_t rcvd;
	int ret, fin = 0;

	if (!t)
		return -ENOENT;
	/* received first, then the verdict's counts: parsed <= received */
	ret = tcp_received(t->fd, &rcvd, NULL, &fin);
	if (ret)
		return ret;
	if (bpf_map_lookup_elem(bpf_map__fd(e->skel->maps.tunnel_state), &t->cookie, &ts))
		return -errno;
	p->received = rcvd - t->rcvd0;
	p->parsed = ts.in_bytes;
	p->mailbox = ts.mailbox_bytes;
	p->fin = fin == 1;
	p->error = ts.error;
	return 0;
}

int bpf_engine_tunnel_kick(const struct bpf_engine *e, uint32_t tunnel_id)
{
	const struct eng_tunnel *t = tunnel_find(e, tunnel_id);

	if (!t)
		return -ENOENT;
	kick_data_ready(t->fd);
	return 0;
}

int bpf_engine_tunnel_drained(const struct bpf_engine *e, uint32_t tunnel_id, uint64_t mailbox_read)
{
	const struct eng_tunnel *t = tunnel_find(e, tunnel_id);
	struct revsock_tunnel_state ts;
	int sfd = bpf_map__fd(e->skel->maps.tunnel_state);
	uint64_t rcvd, in, mb;
	int ret, fin;

	if (!t)
		return -ENOENT;
	/* Order: bytes received, then in_bytes, then mailbox_bytes (the
	 * verdict adds mailbox_bytes before in_bytes, with atomic adds): when
	 * in_bytes covers every received byte, mailbox_bytes read afterwards
	 * covers every byte those messages put in the mailbox. */
	ret = tcp_received(t->fd, &rcvd, NULL, &fin);
	if (ret)
		return ret;
	if (bpf_map_lookup_elem(sfd, &t->cookie, &ts))
		return -errno;
	if (ts.error)
		return -EIO;
	in = ts.in_bytes;
	rcvd -= t->rcvd0;
	if (in != rcvd && !(fin && in + 1 == rcvd))
		return 0; /* bytes not through the parser yet (TCP queue or an incomplete frame) */
	if (bpf_map_lookup_elem(sfd, &t->cookie, &ts))
		return -errno;
	if (ts.error)
		return -EIO;
	mb = ts.mailbox_bytes;
	return mailbox_read == mb;
}

/* ---- sessions ----------------------------------------------------------- */

static struct revsock_slot *slot_get(const struct bpf_engine *e, uint32_t slot)
{
	if (slot >= e->max_slots || load_u32(&e->slots[slot].mode) == REVSOCK_SLOT_FREE)
		return NULL;
	return &e->slots[slot];
}

int bpf_engine_session_attach(struct bpf_engine *e, uint32_t tunnel_id, uint16_t sid,
			      int target_fd, uint32_t consumed, uint32_t *slotp)
{
	struct revsock_session_key key = { .tunnel_id = tunnel_id, .sid = sid };
	struct revsock_slot *s;
	uint64_t v = (uint64_t)target_fd;
	uint32_t slot;
	int ret;

	if (sid == 0 || sid == 1)
		return -EINVAL;
	if (!tunnel_find(e, tunnel_id))
		return -ENOENT;
	if (sock_proto(target_fd) != IPPROTO_TCP)
		return -EOPNOTSUPP;
	if (!e->nfree)
		return -ENOSPC;
	slot = e->free_slots[e->nfree - 1];
	s = &e->slots[slot];
	memset(s, 0, sizeof(*s));
	s->tunnel_id = tunnel_id;
	s->sid = sid;
	s->arm_seq = consumed;
	if (bpf_map_update_elem(bpf_map__fd(e->skel->maps.targets), &slot, &v, BPF_ANY)) {
		ret = -errno; /* EOPNOTSUPP: half-closed or not established */
		return ret;
	}
	__atomic_store_n(&s->mode, REVSOCK_SLOT_ARMED, __ATOMIC_SEQ_CST);
	if (bpf_map_update_elem(bpf_map__fd(e->skel->maps.sessions), &key, &slot, BPF_NOEXIST)) {
		ret = -errno;
		__atomic_store_n(&s->mode, REVSOCK_SLOT_FREE, __ATOMIC_SEQ_CST);
		bpf_map_delete_elem(bpf_map__fd(e->skel->maps.targets), &slot);
		return ret;
	}
	e->nfree--;
	e->slot_fd[slot] = target_fd;
	*slotp = slot;
	return 0;
}

int bpf_engine_session_arm(struct bpf_engine *e, uint32_t slot, uint32_t consumed)
{
	struct revsock_slot *s = slot_get(e, slot);
	uint32_t m;

	if (!s)
		return -ENOENT;
	__atomic_store_n(&s->arm_seq, consumed, __ATOMIC_SEQ_CST);
	m = load_u32(&s->mode);
	for (;;) {
		/* ENDED: the verdict already saw New/End of the id; frames
		 * userspace still reads precede it.  Nothing to arm. */
		if (m == REVSOCK_SLOT_ARMED || m == REVSOCK_SLOT_REDIRECT || m == REVSOCK_SLOT_ENDED)
			return 0;
		if (__atomic_compare_exchange_n(&s->mode, &m, REVSOCK_SLOT_ARMED, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return 0;
	}
}

int bpf_engine_session_mode(const struct bpf_engine *e, uint32_t slot)
{
	const struct revsock_slot *s = slot_get(e, slot);

	return s ? (int)load_u32(&s->mode) : -ENOENT;
}

int bpf_engine_session_stop(struct bpf_engine *e, uint32_t slot)
{
	struct revsock_slot *s = slot_get(e, slot);
	uint32_t m;

	if (!s)
		return -ENOENT;
	m = load_u32(&s->mode);
	while (m != REVSOCK_SLOT_PASS && m != REVSOCK_SLOT_ENDED && m != REVSOCK_SLOT_PAUSED)
		if (__atomic_compare_exchange_n(&s->mode, &m, REVSOCK_SLOT_PASS, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			break;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

/* Bytes written into the target's TCP stream so far: bytes_acked + SIOCOUTQ. */
static int target_written(int fd, uint64_t *written, uint64_t *acked_out)
{
	for (int tries = 0; tries < 8; tries++) {
		struct tcp_info ti1, ti2;
		socklen_t l1 = sizeof(ti1), l2 = sizeof(ti2);
		int outq;

		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti1, &l1) ||
		    ioctl(fd, SIOCOUTQ, &outq) ||
		    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti2, &l2))
			return -errno;
		if (ti1.tcpi_bytes_acked != ti2.tcpi_bytes_acked)
			continue; /* an ACK moved bytes between the two reads */
		*written = ti1.tcpi_bytes_acked + (uint64_t)outq;
		if (acked_out)
			*acked_out = ti1.tcpi_bytes_acked;
		return 0;
	}
	return -EAGAIN;
}

int bpf_engine_session_drained(const struct bpf_engine *e, uint32_t slot)
{
	const struct revsock_slot *s = slot_get(e, slot);
	uint64_t redir, base, written;
	uint32_t m;
	int ret;

	if (!s)
		return -ENOENT;
	m = load_u32(&s->mode);
	if (m == REVSOCK_SLOT_REDIRECT)
		return -EBUSY;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (load_u32(&s->busy))
		return 0; /* a redirect decision's payload is still to come */
	redir = load_u64(&s->redir_bytes);
	if (!redir)
		return 1;
	base = load_u64(&s->base);
	ret = target_written(e->slot_fd[slot], &written, NULL);
	if (ret)
		return ret;
	/* Userspace may have written after the last drain (PAUSED -> ARMED
	 * before the next switch): those bytes count on top. */
	return written >= base + redir;
}

int bpf_engine_session_wait_drained(const struct bpf_engine *e, uint32_t slot, int timeout_ms)
{
	struct timespec t0, now, nap = { 0, 200000 };
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ret = bpf_engine_session_drained(e, slot);
		if (ret)
			return ret < 0 ? ret : 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&nap, NULL);
	}
}

void bpf_engine_session_release_held(struct bpf_engine *e, uint32_t slot)
{
	struct revsock_slot *s = slot_get(e, slot);
	uint64_t h;

	if (!s)
		return;
	/* The program writes held_est only in REDIRECT (and at the ARMED ->
	 * REDIRECT switch, which only follows userspace's arm): in these modes
	 * it cannot race us. */
	switch (load_u32(&s->mode)) {
	case REVSOCK_SLOT_PASS:
	case REVSOCK_SLOT_PAUSED:
	case REVSOCK_SLOT_ENDED:
	case REVSOCK_SLOT_FREE:
		break;
	default:
		return;
	}
	h = __atomic_exchange_n(&s->held_est, 0, __ATOMIC_SEQ_CST);
	if (h)
		__atomic_fetch_sub(&e->skel->bss->held_total, h, __ATOMIC_SEQ_CST);
}

uint64_t bpf_engine_held_total(const struct bpf_engine *e)
{
	return __atomic_load_n(&e->skel->bss->held_total, __ATOMIC_SEQ_CST);
}

int bpf_engine_session_detach(struct bpf_engine *e, uint32_t slot, bool force)
{
	struct revsock_slot *s = slot_get(e, slot);
	struct revsock_session_key key;
	int ret;

	if (!s)
		return -ENOENT;
	bpf_engine_session_stop(e, slot);
	if (!force) {
		ret = bpf_engine_session_drained(e, slot);
		if (ret <= 0)
			return ret ? ret : -EBUSY;
	}
	key.tunnel_id = s->tunnel_id;
	key.sid = s->sid;
	bpf_map_delete_elem(bpf_map__fd(e->skel->maps.sessions), &key);
	bpf_map_delete_elem(bpf_map__fd(e->skel->maps.targets), &slot);
	/* The verdict ignores a slot whose tunnel/sid do not match its key. */
	__atomic_store_n(&s->tunnel_id, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->mode, REVSOCK_SLOT_FREE, __ATOMIC_SEQ_CST);
	bpf_engine_session_release_held(e, slot);
	e->slot_fd[slot] = -1;
	e->free_slots[e->nfree++] = slot;
	/* No slot attached: no redirect can be counted (a forced detach may have
	 * raced one frame's count in): start the sum afresh. */
	if (e->nfree == e->max_slots)
		__atomic_store_n(&e->skel->bss->held_total, 0, __ATOMIC_SEQ_CST);
	return 0;
}

int bpf_engine_session_info(const struct bpf_engine *e, uint32_t slot, struct revsock_slot *out)
{
	const struct revsock_slot *s = slot_get(e, slot);

	if (!s)
		return -ENOENT;
	memcpy(out, s, sizeof(*out));
	return 0;
}

int bpf_engine_session_backlog(const struct bpf_engine *e, uint32_t slot, int64_t *held, uint32_t *outq)
{
	const struct revsock_slot *s = slot_get(e, slot);
	uint64_t written, acked, redir, base;
	int ret;

	if (!s)
		return -ENOENT;
	redir = load_u64(&s->redir_bytes);
	base = load_u64(&s->base);
	ret = target_written(e->slot_fd[slot], &written, &acked);
	if (ret)
		return ret;
	*outq = (uint32_t)(written - acked);
	*held = !redir || written >= base + redir ? 0 : (int64_t)(base + redir - written);
	return 0;
}

int64_t bpf_engine_session_held(const struct bpf_engine *e, uint32_t slot)
{
	int64_t held;
	uint32_t outq;
	int ret = bpf_engine_session_backlog(e, slot, &held, &outq);

	return ret ? ret : held;
}

int bpf_engine_counters(const struct bpf_engine *e, struct revsock_counters *sum)
{
	struct revsock_counters *v;
	uint32_t zero = 0;
	int ret = 0;

	v = calloc(e->ncpus, sizeof(*v));
	if (!v)
		return -ENOMEM;
	memset(sum, 0, sizeof(*sum));
	if (bpf_map_lookup_elem(bpf_map__fd(e->skel->maps.counters), &zero, v)) {
		ret = -errno;
		goto out;
	}
	for (int c = 0; c < e->ncpus; c++) {
		uint64_t *d = (uint64_t *)sum;
		const uint64_t *src = (const uint64_t *)&v[c];

		for (size_t i = 0; i < sizeof(*sum) / sizeof(uint64_t); i++)
			d[i] += src[i];
	}
out:
	free(v);
	return ret;
}
