# bpf/bpf.mk: the kernel engine (sk_skb programs), included by the top-level
# Makefile before it computes its object lists.
#
#   make vmlinux      regenerate vmlinux/vmlinux.h from the running kernel's BTF
#   build/gen/splice.skel.h    skeleton of bpf/splice.bpf.c (bpftool gen skeleton)
#
# The skeleton embeds the BPF object: build/revsock carries its programs.

BPF_CLANG   ?= clang
BPF_STRIP   ?= llvm-strip
BPFTOOL     ?= bpftool
BPF_CFLAGS  := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Wall -Wno-unused-function \
               -Ivmlinux -Iinclude
BPF_PROGS   := splice
BPF_SKELS   := $(patsubst %,$(GEN)/%.skel.h,$(BPF_PROGS))

EXTRA_LDLIBS += $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf -lelf -lz)

.PHONY: vmlinux bpf
vmlinux:
	@mkdir -p vmlinux
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/vmlinux.h.tmp
	mv vmlinux/vmlinux.h.tmp vmlinux/vmlinux.h

bpf: $(BPF_SKELS)

$(GEN)/%.bpf.o: bpf/%.bpf.c include/revsock_bpf.h vmlinux/vmlinux.h
	@mkdir -p $(GEN)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(BPF_STRIP) -g $@.tmp -o $@
	@rm -f $@.tmp

$(GEN)/%.skel.h: $(GEN)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $* > $@.tmp
	mv $@.tmp $@

# The engine includes the skeleton; so do the tests that use it.
$(OBJDIR)/engine_bpf.o: $(GEN)/splice.skel.h

# The engine's own tests (root + BPF), tests/bpf/*.c, built by the Makefile and
# run by `make test` (tests/run_all.sh) and, in each VM, by `make vmtest`.
$(BUILD)/tests/bpf/test_bpf_engine: $(GEN)/splice.skel.h

.PHONY: bpftest
bpftest: $(BPF_TEST_BINS)
	@REVSOCK_BPF_BENCH_MB=$${REVSOCK_BPF_BENCH_MB:-0} tests/run_unit.sh $(BPF_TEST_BINS)

.SECONDARY: $(patsubst %,$(GEN)/%.bpf.o,$(BPF_PROGS))
