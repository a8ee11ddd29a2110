#!/bin/sh
# Run cmocka unit test binaries; sum their test counts into one
# "unit: N passed, N failed" line.
pass=0; fail=0
for t in "$@"; do
	out=$("$t" 2>&1); rc=$?
	printf '%s\n' "$out" | grep -E '^\[  (PASSED|FAILED)  \]|^\[==========\]|FAILED|ERROR' 
	p=$(printf '%s\n' "$out" | sed -nE 's/^\[  PASSED  \] ([0-9]+) test.*/\1/p' | tail -n 1)
	f=$(printf '%s\n' "$out" | sed -nE 's/^\[  FAILED  \] ([0-9]+) test.*/\1/p' | tail -n 1)
	pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
	if [ "$rc" != 0 ] && [ -z "$f" ]; then
		echo "FAILED: $t exited $rc"; fail=$((fail + 1))
	fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" = 0 ]
