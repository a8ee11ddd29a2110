#!/bin/bash
# tests/vm/matrix.sh KERNEL...   (what `make vmtest` runs)
#
# For each kernel, one VM (tests/vm/run.sh) running tests/vm/guest-suite.sh: the kernel's
# feature probe, the engine `auto` picks, smoke checks of the VM, the integration suite.
# VMs run one after the other. Full output goes to the terminal and to
# build/vm-logs/<kernel>.log; a summary per kernel and a closing
# "vmtest: N passed, N failed, N skipped" line (all kernels added up) follow.
# Exit 0 only when every kernel's run exited 0.
#
# Env: VMTEST_TIMEOUT (seconds per kernel, boot included; default 900), and everything
# run.sh and guest-suite.sh take (VM_ACCEL, VM_SMP, VM_MEM, REVSOCK_TEST_MIB, ...).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo" || exit 1
[ $# -ge 1 ] || { echo "usage: $0 KERNEL..." >&2; exit 2; }
timeout_s=${VMTEST_TIMEOUT:-900}
logs=$repo/build/vm-logs
mkdir -p "$logs"

summary=()
tp=0 tf=0 ts=0 bad=0
t0=$(date +%s)
for k in "$@"; do
	name=$(echo "$k" | tr '/' '_' | sed 's/^_*//')
	log=$logs/$name.log
	echo "==== vmtest: kernel $k (timeout ${timeout_s}s)"
	start=$(date +%s)
	tests/vm/run.sh -k "$k" -t "$timeout_s" -e VM_SUITE -e VM_SOCKMAP_SUITE tests/vm/guest-suite.sh 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	secs=$(($(date +%s) - start))

	kver=$(sed -n 's/^vm-guest: kernel \([^ ]*\).*/\1/p' "$log" | head -n1)
	accel=$(sed -n 's/^vm: kernel [^ ]*, accel \(.*\)$/\1/p' "$log" | head -n1)
	probe=$(sed -n 's/^vm-guest: feature probe (bpftool): //p' "$log" | head -n1)
	engine=$(sed -n 's/^vm-guest: engine auto: //p' "$log" | head -n1)
	smoke=$(sed -n 's/^vm-guest: smoke: //p' "$log" | tail -n1)
	bpfeng=$(sed -n 's/^vm-guest: bpf engine: //p' "$log" | tail -n1)
	ksuite=$(sed -n 's/^integration-sockmap: //p' "$log" | tail -n1)
	counts=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
	p=0 f=0 s=0
	if [ -n "$counts" ]; then
		p=$(echo "$counts" | sed -E 's/.* ([0-9]+) passed.*/\1/')
		f=$(echo "$counts" | sed -E 's/.* ([0-9]+) failed.*/\1/')
		s=$(echo "$counts" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
		s=${s:-0}
	fi
	for extra in "$smoke" "$bpfeng" "$ksuite"; do
		echo "$extra" | grep -qE '^[0-9]+ passed, [0-9]+ failed' || continue
		p=$((p + $(echo "$extra" | sed -E 's/^([0-9]+) passed.*/\1/')))
		f=$((f + $(echo "$extra" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')))
		s=$((s + $(echo "$extra" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p' | grep . || echo 0)))
	done
	case $rc in
	0) verdict=ok ;;
	124) verdict="TIMEOUT after ${timeout_s}s" ;;
	125) verdict="NO EXIT STATUS from the VM" ;;
	*) verdict="FAILED (exit $rc)" ;;
	esac
	if [ "$rc" != 0 ]; then
		bad=$((bad + 1))
		# a run that failed without counting a failure still counts as one
		[ "$f" -gt 0 ] || f=1
	fi
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
	summary+=("kernel $k: ${kver:-?} - $verdict, ${secs}s boot+run (log: ${log#"$repo"/})"
		"  accel:          ${accel:-?}"
		"  feature probe:  ${probe:-?}"
		"  engine auto:    ${engine:-?}"
		"  smoke:          ${smoke:-?}"
		"  bpf engine:     ${bpfeng:-?}"
		"  integration:    ${counts#integration: } (datapath auto)"
		"  integration:    ${ksuite:-(not run: VM_SOCKMAP_SUITE=1 runs it)} (datapath sockmap)")
	[ -n "$counts" ] || summary[${#summary[@]} - 2]="  integration:    (no result line) (datapath auto)"
done

echo "==== vmtest summary ($(($(date +%s) - t0))s)"
printf '%s\n' "${summary[@]}"
echo "vmtest: $tp passed, $tf failed, $ts skipped"
[ $bad = 0 ]
