# VM tests (included by the top-level Makefile). See tests/vm/README.md.
#
#   make vmtest                    the integration suite in a VM per kernel of VM_KERNELS
#   make vmtest KERNEL=6.12        one kernel: 6.1, 6.12, a Debian kernel release, or a path
#   make vmdeps                    the host packages the VMs need (no-op when present)

VM_KERNELS ?= 6.1 6.12
VM_DEPS := qemu-system-x86 busybox-static cpio kmod xz-utils zstd binutils bpftool \
           iproute2 python3 util-linux coreutils

.PHONY: vmtest vmdeps
vmdeps:
	$(call install-missing,vmdeps,$(VM_DEPS))

vmtest: deps vmdeps
	@$(MAKE) --no-print-directory all $(BPF_TEST_BINS)
	@tests/vm/matrix.sh $(or $(KERNEL),$(VM_KERNELS))
