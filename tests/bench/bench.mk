# tests/bench/bench.mk — included by the top-level Makefile.
#
#   make bench                 full run (root, loopback only, ~10 min): build/bench/results.md, bench.png
#   BENCH_QUICK=1 make bench   ~1 min smoke run (CI): the load generator's checks are tested against a
#                              relay that corrupts bytes, then every configuration must move correct bytes
#   BENCH_ARGS="--configs direct,v2ray --rounds 5" make bench   options for the driver
#
# Exits non-zero when a measured configuration failed a data check; speed is reported, not judged.
# deps first, then all (as `make test` does: a parallel make must not build before the packages exist).
BENCH_ARGS ?=
BENCH_QUICK_ON = $(filter-out 0,$(BENCH_QUICK))

bench: deps
	@$(MAKE) --no-print-directory all
	$(if $(BENCH_QUICK_ON),@python3 tests/bench/selftest.py)
	@python3 tests/bench/bench.py $(if $(BENCH_QUICK_ON),--quick) $(BENCH_ARGS)
