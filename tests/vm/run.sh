#!/bin/bash
# tests/vm/run.sh [-k KERNEL] [-t SECONDS] [-C DIR] [-e NAME]... [--] COMMAND [ARG...]
#
# Boots KERNEL (see kernel.sh: 6.1, 6.12, a Debian kernel release or a path) in a QEMU VM
# whose root is the host's root filesystem (9p, read-only, under a tmpfs overlay), with DIR
# (default: the current directory) shared read-write at its own path. Runs COMMAND there as
# root (one argument: a shell command line; several: a command and its arguments), powers
# off, and exits with COMMAND's exit status:
#   124  COMMAND (or the boot) did not finish within the timeout; the VM was killed
#   125  the VM stopped without reporting an exit status (failed boot, kernel panic, ...)
# The command's output (stdout and stderr, merged) is the VM's serial console, on stdout.
# In the guest, VM_GUEST_ACCEL (kvm|tcg) and VM_GUEST_KVER are set for the command.
#
# Options / environment:
#   -k KERNEL   VM_KERNEL   kernel to boot (default 6.1)
#   -t SECONDS  VM_TIMEOUT  wall-clock limit for boot + command + power-off (default 600)
#   -C DIR      VM_SHARE    directory shared read-write (default: current directory)
#   -e NAME                 pass the host's environment variable NAME into the guest
#                           (REVSOCK_* and the names in VM_ENV always are)
#   VM_ACCEL=auto|kvm|tcg   auto: TCG when /dev/kvm is missing or inaccessible, or when
#                           neither kvm_intel nor kvm_amd is loaded (e.g. a kvm_pvm host,
#                           which cannot run stock kernels); else one probe boot under KVM
#                           (result cached per host kernel and QEMU version) decides
#   VM_SMP (2), VM_MEM (1G), VM_APPEND (extra kernel command line), VM_CACHE,
#   VM_VERBOSE=1 (kernel messages on the console), VM_KEEP=1 (keep the exchange directory)
set -uo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export VM_CACHE=${VM_CACHE:-$repo/build/vm-cache}

kernel=${VM_KERNEL:-6.1}
timeout_s=${VM_TIMEOUT:-600}
share=${VM_SHARE:-$PWD}
smp=${VM_SMP:-2}
mem=${VM_MEM:-1G}
accel=${VM_ACCEL:-auto}
pass_env=()

say() { echo "vm: $*" >&2; }
die() { echo "vm: $*" >&2; exit 125; }

while getopts "k:t:C:e:h" o; do
	case $o in
	k) kernel=$OPTARG ;;
	t) timeout_s=$OPTARG ;;
	C) share=$OPTARG ;;
	e) pass_env+=("$OPTARG") ;;
	h) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) exit 125 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || die "no command (usage: $0 [-k KERNEL] [-t SECONDS] [-C DIR] [-e NAME]... [--] COMMAND [ARG...])"

share=$(cd "$share" 2>/dev/null && pwd -P) || die "cannot enter the share directory"
[ "$share" != / ] || die "the share directory cannot be /"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (make vmdeps)"
[ -x /bin/busybox ] || die "/bin/busybox not found (make vmdeps)"

# ------------------------------------------------------------------ kernel
kdir=$("$here/kernel.sh" "$kernel") || die "kernel $kernel is not available"
kver=$(cat "$kdir/kver")
image=$kdir/vmlinux
[ -f "$image" ] || image=$kdir/vmlinuz

# ------------------------------------------------------------------ initramfs
# busybox, init, stage2 and the modules needed to mount the 9p shares and the overlay,
# uncompressed (modules and archive), in dependency order. Rebuilt when an input changes.
initramfs() {
	local key out tmp n=0 m seen=" " name
	local mods
	mods=$(modprobe -d "$kdir/depmod" -S "$kver" --show-depends -a virtio_pci 9pnet_virtio 9p overlay 2>/dev/null |
		awk '$1 == "insmod" { print $2 }')
	key=$( (cat "$here/init" "$here/stage2"; stat -c %s.%Y /bin/busybox; echo "$mods") | sha1sum | cut -c1-12)
	out=$kdir/initramfs-$key.cpio
	if [ ! -f "$out" ]; then
		tmp=$(mktemp -d "$VM_CACHE/.initramfs.XXXXXX") || return 1
		mkdir -p "$tmp"/{bin,mods,dev,proc,sys,tmp}
		cp /bin/busybox "$tmp/bin/busybox"
		for a in sh mount insmod mkdir stty poweroff switch_root cp cat echo sleep; do
			ln -s busybox "$tmp/bin/$a"
		done
		cp "$here/init" "$tmp/init" && chmod 755 "$tmp/init"
		cp "$here/stage2" "$tmp/stage2"
		for m in $mods; do
			case $seen in *" $m "*) continue ;; esac
			seen="$seen$m "
			n=$((n + 1))
			name=$(printf '%02d-%s' $n "$(basename "$m")")
			case $m in
			*.ko.xz) xz -dc "$m" >"$tmp/mods/${name%.xz}" ;;
			*.ko.zst) zstd -qdc "$m" >"$tmp/mods/${name%.zst}" ;;
			*.ko.gz) gzip -dc "$m" >"$tmp/mods/${name%.gz}" ;;
			*) cp "$m" "$tmp/mods/$name" ;;
			esac || { rm -rf "$tmp"; return 1; }
		done
		(cd "$tmp" && find . | sort | cpio -o -H newc --quiet) >"$out.tmp" && mv "$out.tmp" "$out"
		rm -rf "$tmp"
		rm -f $(ls -1 "$kdir"/initramfs-*.cpio | grep -v "$out")
	fi
	echo "$out"
}
initrd=$(initramfs) || die "cannot build the initramfs for $kver"

# ------------------------------------------------------------------ accelerator
accel_args=()
set_accel() {
	case $1 in
	kvm) accel_args=(-accel kvm -cpu host) ;;
	tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
	esac
}
accel_why=""
case $accel in
kvm | tcg) accel_why="VM_ACCEL=$accel" ;;
auto)
	if [ ! -e /dev/kvm ]; then
		accel=tcg accel_why="no /dev/kvm"
	elif ! { : <>/dev/kvm; } 2>/dev/null; then
		accel=tcg accel_why="/dev/kvm not accessible"
	elif [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
		# e.g. kvm_pvm only (a PVM host): it runs PVM-enabled guest kernels, not Debian's
		accel=tcg accel_why="KVM without kvm_intel/kvm_amd ($(cd /sys/module && echo kvm_* | tr ' ' ','): cannot run a stock guest kernel)"
	else
		probe=$VM_CACHE/kvm-probe-$(uname -r)-$(qemu-system-x86_64 --version | head -n1 | sha1sum | cut -c1-8)
		if [ ! -f "$probe" ]; then
			say "probing KVM (one boot under KVM, result cached in ${probe#"$repo"/})"
			VM_ACCEL=kvm VM_TIMEOUT=30 VM_KEEP= VM_QUIET=1 "$0" -k "$kernel" -C "$share" true \
				>"$probe.log" 2>&1
			prc=$?
			if [ $prc = 0 ]; then
				echo "ok" >"$probe"
			else
				why=$(grep -m1 -iE 'error|assert|fail' "$probe.log" || true)
				[ $prc = 124 ] && why="no exit status within 30s"
				echo "failed: probe boot exit $prc${why:+: $why}" >"$probe"
			fi
		fi
		if [ "$(cat "$probe")" = ok ]; then
			accel=kvm accel_why="KVM probe boot succeeded"
		else
			accel=tcg accel_why="KVM probe $(cat "$probe")"
		fi
	fi
	;;
*) die "VM_ACCEL must be auto, kvm or tcg" ;;
esac
set_accel "$accel"
[ -n "${VM_QUIET:-}" ] || say "kernel $kver, accel $accel ($accel_why)"

# ------------------------------------------------------------------ exchange directory
mkdir -p "$VM_CACHE/run"
xfer=$(mktemp -d "$VM_CACHE/run/XXXXXX") || die "cannot create the exchange directory"
qemu_pid=""
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null
		sleep 1
		kill -KILL "$qemu_pid" 2>/dev/null
	fi
	[ -n "${VM_KEEP:-}" ] || rm -rf "$xfer"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

q() { printf '%q' "$1"; }
{
	echo "VM_KVER=$(q "$kver")"
	echo "VM_SHARE=$(q "$share")"
	echo "VM_HOSTNAME=vm-$(q "${kver%%-*}")"
} >"$xfer/config"

cwd=$(pwd -P)
case $cwd/ in "$share"/*) ;; *) cwd=$share ;; esac
{
	echo "# written by tests/vm/run.sh"
	for v in $(compgen -v | grep -E '^REVSOCK_') ${VM_ENV:-} "${pass_env[@]}"; do
		[ -n "${!v+x}" ] && echo "export $v=$(q "${!v}")"
	done
	# lets a command know it runs in this VM and how slow it may be (tcg: ~5-10x slower)
	echo "export VM_GUEST_ACCEL=$accel VM_GUEST_KVER=$(q "$kver")"
	echo "cd $(q "$cwd") || exit 125"
	if [ $# -eq 1 ]; then
		printf '%s\n' "$1"
	else
		printf '%q ' "$@"
		echo
	fi
} >"$xfer/cmd"

# ------------------------------------------------------------------ boot
append="console=ttyS0 panic=-1 rdinit=/init mitigations=off nokaslr tsc=reliable no_timer_check"
append+=" i8042.noaux i8042.nopnp cryptomgr.notests"
if [ -n "${VM_VERBOSE:-}" ]; then append+=" loglevel=7 vm.verbose=1"; else append+=" quiet loglevel=1"; fi
append+=" ${VM_APPEND:-}"

fs() { # id path ro|rw
	local ro=""
	[ "$3" = ro ] && ro=",readonly=on"
	echo "-fsdev local,id=$1,path=$2,security_model=none,multidevs=remap$ro"
	echo "-device virtio-9p-pci,fsdev=$1,mount_tag=$1"
}
args=(-nodefaults -no-user-config -display none -no-reboot -M pc "${accel_args[@]}"
	-smp "$smp" -m "$mem" -kernel "$image" -initrd "$initrd" -append "$append"
	-chardev stdio,id=con,signal=off -serial chardev:con
	$(fs hostroot / ro) $(fs vmshare "$share" rw) $(fs vmmods "$kdir/modules/$kver" ro) $(fs vmxfer "$xfer" rw))

start=$(date +%s.%N)
timeout -k 5 "$timeout_s" qemu-system-x86_64 "${args[@]}" </dev/null &
qemu_pid=$!
wait $qemu_pid
qrc=$?
qemu_pid=""
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	if [ -f "$xfer/booted" ]; then
		say "timeout: the command did not finish within ${timeout_s}s (VM killed)"
	else
		say "timeout: the VM did not boot within ${timeout_s}s (VM killed)"
	fi
	exit 124
fi
if [ ! -f "$xfer/status" ]; then
	say "the VM stopped without reporting an exit status (qemu exit $qrc, ${secs}s; VM_VERBOSE=1 shows the kernel log)"
	exit 125
fi
rc=$(cat "$xfer/status")
[ -n "${VM_QUIET:-}" ] || say "kernel $kver: exit $rc after ${secs}s (boot + command + power-off)"
exit "$rc"
