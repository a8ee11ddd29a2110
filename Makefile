# revsock: V2Ray-compatible reverse proxy with a userspace and an eBPF data path.
#
#   make            build build/revsock
#   make demo       portal + bridge + demo service on loopback, one request, stop
#   make test       every test (unit, integration; root for the namespace/BPF ones)
#   make bench      the benchmark (root), BENCH_QUICK=1 for a one-minute smoke run
#   make vmtest     the integration suite in VMs on kernels 6.1 and 6.12 (KERNEL=... for one)
#   make deps       install the Debian packages the build and tests need (no-op when present)

CC      ?= cc
BUILD   := build
GEN     := $(BUILD)/gen
OBJDIR  := $(BUILD)/obj

PKGS    := jansson libprotobuf-c libmnl libcrypto
CFLAGS  ?= -O2 -g
# override: a CFLAGS given on the command line (e.g. sanitizers) keeps these
override CFLAGS += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
           -Wno-missing-field-initializers -fno-strict-aliasing \
           -Iuser -Iinclude -I$(GEN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lanl

# Debian packages: build, tests, reference peer, benchmark.
DEPS := build-essential pkg-config clang llvm libbpf-dev libelf-dev zlib1g-dev \
        libjansson-dev libprotobuf-c-dev protobuf-c-compiler libmnl-dev libssl-dev \
        uthash-dev libcmocka-dev bpftool iproute2 python3 v2ray iperf3 gnuplot-nox \
        procps psmisc

# Area fragments may append to EXTRA_OBJS / EXTRA_LDLIBS and add targets:
# bpf/bpf.mk (kernel engine), tests/bench/bench.mk, tests/vm/vm.mk.
.DEFAULT_GOAL := all
EXTRA_OBJS :=
EXTRA_LDLIBS :=
-include bpf/bpf.mk

USER_SRCS  := $(wildcard user/*.c)
USER_OBJS  := $(patsubst user/%.c,$(OBJDIR)/%.o,$(USER_SRCS)) $(OBJDIR)/reverse.pb-c.o $(EXTRA_OBJS)
LIB_OBJS   := $(filter-out $(OBJDIR)/main.o,$(USER_OBJS))
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
BPF_TEST_BINS := $(patsubst tests/bpf/%.c,$(BUILD)/tests/bpf/%,$(wildcard tests/bpf/*.c))
TOOL_SRCS  := $(wildcard tests/tools/*.c)
TOOL_BINS  := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))

.PHONY: all print-deps deps demo test unit integration bench clean
all: $(BUILD)/revsock $(TOOL_BINS)

print-deps:
	@echo $(DEPS) $(VM_DEPS)

# $(call install-missing,NAME,PACKAGES): apt-get install what is not installed; a no-op otherwise.
define install-missing
	@missing=""; for p in $(2); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "$(1): installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "$(1): need root to install$$missing" >&2; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install-missing,deps,$(DEPS))

$(GEN)/reverse.pb-c.c $(GEN)/reverse.pb-c.h: proto/reverse.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) proto/reverse.proto

$(OBJDIR)/reverse.pb-c.o: $(GEN)/reverse.pb-c.c
	@mkdir -p $(OBJDIR)
	$(CC) $(CFLAGS) -Wno-unused -c -o $@ $<

$(OBJDIR)/%.o: user/%.c $(GEN)/reverse.pb-c.h | $(OBJDIR)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(OBJDIR):
	@mkdir -p $@

$(BUILD)/revsock: $(USER_OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(EXTRA_LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS) $(EXTRA_LDLIBS) -lcmocka

$(BUILD)/tests/bpf/%: tests/bpf/%.c $(LIB_OBJS)
	@mkdir -p $(BUILD)/tests/bpf
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS) $(EXTRA_LDLIBS) -lcmocka

$(BUILD)/tools/%: tests/tools/%.c
	@mkdir -p $(BUILD)/tools
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS) -lpthread

demo: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/revsock demo

unit: $(UNIT_BINS)
	@tests/run_unit.sh $(UNIT_BINS)

integration: all
	@python3 tests/integration/run.py

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(BPF_TEST_BINS)
	@tests/run_all.sh

clean:
	rm -rf $(BUILD)

-include tests/bench/bench.mk
-include tests/vm/vm.mk
-include $(wildcard $(OBJDIR)/*.d)
