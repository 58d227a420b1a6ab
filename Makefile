# transports: the two commands of the README, and the build steps behind them.
#   make test   installs what is missing, builds, runs every test (plain, then
#               under AddressSanitizer and UndefinedBehaviorSanitizer)
#   make bench  builds and runs the benchmarks (figures, not pass/fail)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan test test-plain test-asan bench install clean format

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_BUILD_BENCH=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j $(JOBS)

build-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTP_SANITIZE=ON -DTP_BUILD_BENCH=OFF \
	    $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)

test-plain: build
	ctest --test-dir build --output-on-failure -j $(JOBS)

# detect_leaks: LeakSanitizer fails a test that leaks; halt_on_error: the first report fails it.
test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure -j $(JOBS)

test: test-plain test-asan

bench: build
	./build/bench/core_bench

install: build
	cmake --install build --prefix $(PREFIX)

format:
	clang-format -i include/*.h src/*/*.[ch] tests/unit/*/*.c tests/support/*.[ch] bench/*.c

clean:
	rm -rf build build-asan
