#!/bin/bash
# tests/vm/kernel.sh KERNEL
#
# Makes a Debian kernel ready to boot in the test VM, without installing anything on the
# host, and prints the directory that holds it:
#
#   DIR/vmlinuz            the kernel image as packaged
#   DIR/vmlinux            the uncompressed ELF kernel, when it could be extracted (boots ~3 s
#                          faster under TCG: no decompression in the guest)
#   DIR/modules/KVER/      its modules, depmod'ed (shared into the guest as /lib/modules/KVER)
#   DIR/kver               the kernel release (uname -r)
#
# KERNEL is one of
#   6.1, 6.12, ...         newest Debian linux-image-amd64 whose version is 6.1.*, 6.12.* ...
#                          (bookworm has 6.1, bookworm-backports has 6.12)
#   6.1.0-41-amd64 ...     that exact Debian kernel release (package linux-image-<it>)
#   PATH.deb               a linux-image .deb
#   PATH/                  a tree with boot/vmlinuz-* and lib/modules/* (e.g. dpkg -x output)
#   PATH                   a kernel image (bzImage/vmlinuz); modules from VM_MODULES=DIR if set
#
# Packages are fetched with apt-get download through a private apt configuration (own
# sources list with bookworm-backports, own lists and caches) under $VM_CACHE/apt: the
# host's apt state is not touched. A version that is already in the cache is used without
# touching the network unless VM_REFRESH=1.
#
# Environment: VM_CACHE (default <repo>/build/vm-cache), VM_DEBIAN_MIRROR
# (default http://deb.debian.org/debian), VM_DEBIAN_SUITES, VM_REFRESH.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
VM_CACHE=${VM_CACHE:-$repo/build/vm-cache}
mirror=${VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${VM_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suites=${VM_DEBIAN_SUITES:-bookworm bookworm-updates bookworm-backports}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "vm-kernel: $*" >&2; exit 1; }
say() { echo "vm-kernel: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 KERNEL (6.1 | 6.12 | <debian kernel release> | path)"
want=$1
kroot=$VM_CACHE/kernels
mkdir -p "$kroot"

# ---------------------------------------------------------------- private apt
apt_dir=$VM_CACHE/apt
apt_opts=()
apt_setup() {
	mkdir -p "$apt_dir"/lists/partial "$apt_dir"/cache/archives/partial "$apt_dir"/parts \
		"$apt_dir"/prefs "$apt_dir"/debs
	local list=$apt_dir/sources.list s
	: >"$list.new"
	for s in $suites; do
		echo "deb [signed-by=$keyring] $mirror $s main" >>"$list.new"
	done
	echo "deb [signed-by=$keyring] $security bookworm-security main" >>"$list.new"
	mv "$list.new" "$list"
	apt_opts=(-q -o "Dir::Etc::sourcelist=$list" -o "Dir::Etc::sourceparts=$apt_dir/parts"
		-o "Dir::Etc::preferences=$apt_dir/prefs/none" -o "Dir::Etc::preferencesparts=$apt_dir/prefs"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
		-o "Dir::Cache::archives=$apt_dir/cache/archives"
		-o "Dir::State::status=/var/lib/dpkg/status"
		-o "APT::Sandbox::User=root" -o "Acquire::Languages=none"
		-o "APT::Get::List-Cleanup=false")
}
apt_update_done=
apt_update() {
	[ -n "$apt_update_done" ] && return 0
	# lists fetched within the last 6 hours (e.g. for the previous kernel of the matrix) do
	local fresh
	fresh=$(find "$apt_dir/lists" -maxdepth 1 -name '*_InRelease' -mmin -360 2>/dev/null | wc -l)
	if [ -z "${VM_REFRESH:-}" ] && [ "$fresh" -ge $(($(echo $suites | wc -w) + 1)) ]; then
		apt_update_done=1
		return 0
	fi
	say "updating private package lists ($suites)"
	apt-get "${apt_opts[@]}" update >"$apt_dir/update.log" 2>&1 ||
		{ cat "$apt_dir/update.log" >&2; die "apt-get update (private lists) failed"; }
	apt_update_done=1
}

# Package name of the newest linux-image-<release> that linux-image-amd64 points at for
# kernel version prefix $1 (e.g. 6.1 -> linux-image-6.1.0-41-amd64).
resolve_series() {
	local series=$1 best="" bestdep="" v dep
	while IFS='|' read -r v dep; do
		case $v in "$series".*|"$series"-*) ;; *) continue ;; esac
		if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then
			best=$v bestdep=$dep
		fi
	done < <(apt-cache "${apt_opts[@]}" show linux-image-amd64 2>/dev/null |
		awk '/^Version:/{v=$2} /^Depends:/{d=$2} /^$/{if(v!="")print v"|"d; v=""; d=""} END{if(v!="")print v"|"d}')
	[ -n "$bestdep" ] || return 1
	echo "$bestdep"
}

# ---------------------------------------------------------------- unpacking
# extract-vmlinux (as in the kernel's scripts/): find a compressed payload, check it is ELF.
extract_vmlinux() {
	local img=$1 out=$2 tmp=$2.tmp
	try() { # magic, tag, decompressor...
		local magic=$1 tag=$2; shift 2
		local pos
		for pos in $(tr "$magic\n$tag" "\n$tag=" <"$img" | grep -abo "^$tag" | cut -d: -f1); do
			pos=${pos%%:*}
			tail -c+"$pos" "$img" | "$@" >"$tmp" 2>/dev/null || true
			if readelf -h "$tmp" >/dev/null 2>&1; then mv "$tmp" "$out"; return 0; fi
		done
		return 1
	}
	try '\3757zXZ\000' xy xz -dc && return 0
	try '(\265/\375' xy zstd -dc && return 0
	try '\037\213\010' xy gzip -dc && return 0
	try '\002!L\030' xxx lz4 -dc && return 0
	rm -f "$tmp"
	return 1
}

# finish DIR KVER VMLINUZ MODSRC: lay out DIR from an unpacked kernel.
finish() {
	local dir=$1 kver=$2 img=$3 mods=$4
	cp "$img" "$dir/vmlinuz.new" && mv "$dir/vmlinuz.new" "$dir/vmlinuz"
	if [ -n "$mods" ] && [ -d "$mods" ]; then
		rm -rf "$dir/modules"
		mkdir -p "$dir/modules/$kver"
		cp -a "$mods/." "$dir/modules/$kver/"
	else
		mkdir -p "$dir/modules/$kver"
	fi
	# depmod wants BASE/lib/modules/KVER
	mkdir -p "$dir/depmod/lib"
	ln -sfn ../../modules "$dir/depmod/lib/modules"
	depmod -b "$dir/depmod" "$kver" || die "depmod failed for $kver"
	if extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux"; then
		:
	else
		say "could not extract an uncompressed vmlinux from $img (booting the compressed image)"
		rm -f "$dir/vmlinux"
	fi
	echo "$kver" >"$dir/kver"
}

# from_tree TREE [DIR]: TREE has boot/vmlinuz-* and (usr/)lib/modules/*; lays out DIR
# (default: $kroot/local/<release>-<image hash>; an existing ready DIR is reused).
from_tree() {
	local tree=$1 dir=${2:-} img kver mods
	img=$(ls -1 "$tree"/boot/vmlinuz-* 2>/dev/null | head -n1) || true
	[ -n "$img" ] || die "no boot/vmlinuz-* in $tree"
	kver=${img##*/vmlinuz-}
	mods=$tree/lib/modules/$kver
	[ -d "$mods" ] || mods=$tree/usr/lib/modules/$kver
	if [ -z "$dir" ]; then
		dir=$kroot/local/$kver-$(sha1sum "$img" | cut -c1-12)
		if ready "$dir"; then echo "$dir"; return 0; fi
	fi
	mkdir -p "$dir"
	finish "$dir" "$kver" "$img" "$mods"
	echo "$dir"
}

# from_deb DEB [DIR]
from_deb() {
	local deb=$1 tmp out
	tmp=$(mktemp -d "$kroot/.unpack.XXXXXX")
	dpkg -x "$deb" "$tmp" || { rm -rf "$tmp"; die "dpkg -x $deb failed"; }
	out=$(from_tree "$tmp" "${2:-$kroot/local/deb-$(sha1sum "$deb" | cut -c1-12)}") || { rm -rf "$tmp"; exit 1; }
	rm -rf "$tmp"
	echo "$out"
}

ready() { [ -f "$1/kver" ] && [ -f "$1/vmlinuz" ] && [ -f "$1/modules/$(cat "$1/kver")/modules.dep" ]; }

# ---------------------------------------------------------------- main
case $want in
*/* | *.deb)
	[ -e "$want" ] || die "$want: no such file or directory"
	if [ -d "$want" ]; then
		from_tree "$(cd "$want" && pwd)"
	elif [ "${want%.deb}" != "$want" ]; then
		d=$kroot/local/deb-$(sha1sum "$want" | cut -c1-12)
		if ready "$d"; then echo "$d"; else from_deb "$want" "$d"; fi
	else
		# A bare kernel image: its release from the version string in the image.
		kver=$(strings -n 8 "$want" 2>/dev/null | grep -m1 -oE '^[0-9]+\.[0-9]+[^ ]* \(' | cut -d' ' -f1) || true
		[ -n "$kver" ] || kver=custom-$(sha1sum "$want" | cut -c1-12)
		dir=$kroot/local/$kver-$(sha1sum "$want" | cut -c1-12)
		# modules come from VM_MODULES: refresh them each time (they may have been rebuilt)
		mkdir -p "$dir"
		finish "$dir" "$kver" "$want" "${VM_MODULES:-}"
		echo "$dir"
	fi
	;;
[0-9]*.[0-9]*)
	if [[ $want =~ ^[0-9]+\.[0-9]+$ ]]; then
		# A series: reuse the newest cached one unless asked to refresh.
		if [ -z "${VM_REFRESH:-}" ]; then
			for d in $(ls -1d "$kroot/$want".* "$kroot/$want"-* 2>/dev/null | sort -V -r); do
				if ready "$d"; then echo "$d"; exit 0; fi
			done
		fi
		apt_setup
		apt_update
		pkg=$(resolve_series "$want") || die "no linux-image-amd64 $want.* in $suites"
	else
		# An exact Debian kernel release.
		if [ -z "${VM_REFRESH:-}" ] && ready "$kroot/$want"; then echo "$kroot/$want"; exit 0; fi
		apt_setup
		apt_update
		pkg=linux-image-$want
		# linux-image-X-amd64 may exist only as the -unsigned variant
		apt-cache "${apt_opts[@]}" show "$pkg" >/dev/null 2>&1 || pkg=$pkg-unsigned
	fi
	kver=${pkg#linux-image-}
	kver=${kver%-unsigned}
	if [ -z "${VM_REFRESH:-}" ] && ready "$kroot/$kver"; then echo "$kroot/$kver"; exit 0; fi
	say "downloading $pkg"
	(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "$pkg" >"$apt_dir/download.log" 2>&1) ||
		{ cat "$apt_dir/download.log" >&2; die "apt-get download $pkg failed"; }
	deb=$(ls -1t "$apt_dir/debs/${pkg}_"*.deb | head -n1)
	say "unpacking $(basename "$deb")"
	dir=$(from_deb "$deb" "$kroot/$kver")
	rm -f "$deb"
	echo "$dir"
	;;
*)
	die "unknown kernel '$want' (use 6.1, 6.12, a Debian kernel release, or a path)"
	;;
esac
