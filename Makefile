# transports: the two commands of the README, and the build steps behind them.
#   make run    installs what is missing, builds, starts `transportsd --demo` on
#               127.0.0.1:8080 (the guide's alice, bob and shared roadmap; Ctrl-C stops it)
#               and prints the demo page's URL
#   make test   installs what is missing, builds, runs every test (plain, then
#               under AddressSanitizer and UndefinedBehaviorSanitizer)
#   make bench  builds and runs the benchmarks (figures, not pass/fail), and prints the
#               JavaScript client's minified and gzipped size
#   make bench-cluster  builds and runs bench/cluster.sh (issue 18, about 3 minutes): transportsd
#               nodes on one redis-server it starts (W1 over 1, 2 and 3 nodes, W2 on 1 and 3),
#               beside one node in memory and on SQLite FULL; not part of make bench
#   make fuzz   builds the libFuzzer targets with clang in build-fuzz/ and runs each for
#               FUZZ_SECONDS (tests/fuzz/README.md); not part of make test
#   make test-rfc-strict  builds and runs tests/integration/strict_rfc6455.py: RFC 6455 read
#               strictly where libwebsockets 4.1.6 falls short, so expected to fail with
#               Debian 12's lws (tests/integration/README.md); not part of make test
#   make test-crash-stress  builds and runs tests/integration/test_crash.py with 200 SIGKILLs
#               (make test runs it with 8; TP_CRASH_SEED=N repeats a run's kill moments);
#               not part of make test
#   make test-history-stress  builds and runs tests/integration/test_history_single_node.py with
#               60 SIGKILLs under writes (make test runs it with 4; TP_HISTORY_SEED=N repeats a
#               run's kill moments), the history checker of issue 18 on the result; bounded
#               to 10 minutes; not part of make test
#   make test-client-stress  the client's tests with the long stress (five in-process server
#               restarts under 1500 writes a writer); not part of make test
#   make test-limits-stress  issue 11's bounds at the issue's own figures against the daemon:
#               tests/integration/stress_limits.py (one address opens 10 000 connections, 15 000
#               half-open handshakes, and holds what it can: unfinished messages, slow readers;
#               prints the daemon's RSS), then a 900 KB model's resume attack on 8 connections at
#               once and 1024 client ids with 256 writes each (each part bounded to 15 minutes,
#               a few minutes in all); not part of make test
#   make test-pydantic  runs tests/cases/pydantic/check.py: every value the library acks for
#               the 47 models, read back and validated by pydantic itself (needs pydantic 2 in
#               PYDANTIC_PYTHON, default python3); not part of make test, which replays the
#               committed read-backs without pydantic

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYDANTIC_PYTHON ?= python3
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan run test test-plain test-asan test-rfc-strict test-crash-stress test-history-stress test-client-stress test-limits-stress test-pydantic bench bench-cluster fuzz install clean format

all: build

deps:
	@./scripts/install-deps.sh
	@# The OpenAPI validator of the host API's document (tests/openapi/, its lockfile pinned).
	@[ -x tests/openapi/node_modules/.bin/validate-api ] || \
	    (cd tests/openapi && npm ci --no-audit --no-fund --silent)

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_BUILD_BENCH=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j $(JOBS)

build-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTP_SANITIZE=ON -DTP_BUILD_BENCH=OFF \
	    $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)

run: build
	@echo "make run: open http://127.0.0.1:8080/ (alice and bob side by side: ?as=alice, ?as=bob)"
	./build/transportsd --demo

test-plain: build
	ctest --test-dir build --output-on-failure -j $(JOBS)

# detect_leaks: LeakSanitizer fails a test that leaks; halt_on_error: the first report fails it.
test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure -j $(JOBS)

test: test-plain test-asan

# Not part of make test: fails with libwebsockets 4.1.6 (tests/integration/README.md).
test-rfc-strict: build
	cd tests/integration && TRANSPORTSD=$(CURDIR)/build/transportsd TP_SANITIZE=0 PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m unittest -v strict_rfc6455

# Not part of make test: the crash test of issue 5 with 200 kills instead of 8 (about a minute).
TP_CRASH_KILLS ?= 200
test-client-stress: build
	./build/tests/client_stress_transport --jobs=1

# Not part of make test: each module bounds its run (timeouts of its own, well under 10 minutes).
# Not part of make test: the expensive variants of test_limits.py, test_resume_bounds.py and
# test_client_records_bound.py (issue 11), each bounded in time.
test-limits-stress: build
	cd tests/integration && TRANSPORTSD=$(CURDIR)/build/transportsd TP_SANITIZE=0 PYTHONDONTWRITEBYTECODE=1 timeout 900 /usr/bin/python3 -m unittest -v stress_limits
	cd tests/integration && TRANSPORTSD=$(CURDIR)/build/transportsd TP_SANITIZE=0 TP_LIMITS_STRESS=1 PYTHONDONTWRITEBYTECODE=1 timeout 900 /usr/bin/python3 -m unittest -v test_resume_bounds test_client_records_bound

test-crash-stress: build
	cd tests/integration && TRANSPORTSD=$(CURDIR)/build/transportsd TP_SANITIZE=0 TP_CRASH_KILLS=$(TP_CRASH_KILLS) PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m unittest -v test_crash

# Not part of make test: the history checker's test with 60 kills instead of 4 (about a minute).
TP_HISTORY_KILLS ?= 60
test-history-stress: build
	cd tests/integration && TRANSPORTSD=$(CURDIR)/build/transportsd TP_SANITIZE=0 TP_HISTORY_KILLS=$(TP_HISTORY_KILLS) PYTHONDONTWRITEBYTECODE=1 timeout 600 /usr/bin/python3 -m unittest -v test_history_single_node

test-pydantic: build
	$(PYDANTIC_PYTHON) tests/cases/pydantic/check.py --build build

# A quick run: core_bench, auth_bench, pattern_bench, then bench/run.sh --quick (W1 and W3 against
# transportsd, the floor and the Node peers when bench/peers is installed). bench/run.sh alone
# runs everything.
bench: build
	./build/bench/core_bench --quick
	./build/bench/auth_bench --quick
	./build/bench/pattern_bench --quick
	/usr/bin/python3 bench/handshake_bench.py --build build --count 2000
	BUILD_DIR=$(CURDIR)/build ./bench/run.sh --quick
	cd clients/js && node bench/size.js

# Not part of make bench: the cluster's benchmark starts a redis-server and three nodes per case.
bench-cluster: build
	BUILD_DIR=$(CURDIR)/build ./bench/cluster.sh

# Fuzzing needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev), which make test does
# not. New inputs go to build-fuzz/corpus/<target>/, findings to build-fuzz/artifacts/<target>/;
# the committed corpus is only read.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = fuzz_conn fuzz_schema fuzz_patch fuzz_client fuzz_jwt fuzz_envelope
FUZZ_FLAGS ?=

fuzz: deps
	@command -v clang >/dev/null || { echo "make fuzz: clang is missing (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DTP_SANITIZE=ON -DTP_FUZZ=ON -DTP_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target $(FUZZ_TARGETS)
	@rc=0; for t in $(FUZZ_TARGETS); do \
	    case $$t in fuzz_conn|fuzz_client) len=8192;; fuzz_jwt) len=9000;; *) len=4096;; esac; \
	    mkdir -p build-fuzz/corpus/$$t build-fuzz/artifacts/$$t; \
	    echo "make fuzz: $$t for $(FUZZ_SECONDS) s"; \
	    ./build-fuzz/tests/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	        -max_len=$$len -dict=tests/fuzz/$$t.dict -artifact_prefix=build-fuzz/artifacts/$$t/ \
	        -print_final_stats=1 $(FUZZ_FLAGS) build-fuzz/corpus/$$t tests/fuzz/corpus/$$t || rc=1; \
	done; exit $$rc

install: build
	cmake --install build --prefix $(PREFIX)

format:
	clang-format -i include/*.h src/*/*.[ch] tests/unit/*/*.c tests/support/*.[ch] bench/*.c

clean:
	rm -rf build build-asan
