# Lattice mail ingest — the front door.
#   make            build (installs nothing: `make deps` does, and demo/test call it)
#   make deps       install the Debian packages the build, tests and stack need, if missing
#   make demo       install what is missing, build, start the local stack + the two-inbox demo (docs/runbooks/demo-two-inboxes.md)
#   make test       install what is missing, build, start the local stack (real servers on 127.0.0.1) + ctest
#   make test-asan  the same tests, built with AddressSanitizer + UBSan
#   make test-valgrind  the same tests in build-valgrind/ (-O1 -g), each test and every program it starts under valgrind memcheck (docs/sanitizers.md; hours, not in CI)
#   make crash      kill -9 crash campaign: 5000 messages, 20 kills (CRASH_MESSAGES, CRASH_KILLS, CRASH_SEED)
#   make crash-changes  the same with flags, expunges and moves between and during the kills
#   make faults     fault campaign around 2 workers: Kafka, Postgres, MinIO, network, disk, clock
#                   (private servers behind Toxiproxy; docs/faults.md): FAULTS_PER_KIND (50),
#                   FAULTS_MESSAGES (10000), FAULTS_KINDS (kafka,pg,s3,net,disk,clock,mixed),
#                   FAULTS_SEED, FAULTS_FLAGS (more campaign flags, see tests/faults/fault-campaign --help)
#   make stack-up | stack-down | stack-status
#   make fuzz       the libFuzzer targets (clang, ASan + UBSan, whole project instrumented) in build-fuzz/
#   make fuzz-run TARGET=fuzz_mime SECONDS=600   fuzz one target, merge its corpus, append to the ledger (docs/fuzzing.md);
#                   JOBS=4: libFuzzer's fork mode, for a target that mostly waits (fuzz_imap_client)
#   make fuzz-all SECONDS=60   fuzz-run of every target in turn, then render docs/fuzzing.md
#   make env-example   regenerate .env.example from the settings table
#   make seed       the local tenant "personal" (personal-gmail, workmail-imap) via lattice-seed
#   make bench-scheduler  lattice-scheduler --once over 100k accounts (docs/benchmarks.md)
#   make bench-watcher  lattice-watcher: APPEND-to-event latency, 1,000 IDLE accounts (docs/benchmarks.md)
#   make bench-gmail  Gmail connector vs the 50 msg/s/account quota ceiling, 1/4/16 accounts (docs/benchmarks.md)
#   make bench-imap  IMAP full sync of a 20k-message folder: lattice-worker vs mbsync vs mbsync + rclone (docs/benchmarks.md)
#   make bench-imap-changes  a quiet incremental sync of a 100k-message folder by change-tracking mode (docs/benchmarks.md)
#   make bench  every benchmark with short settings, one summary table in bench/out/ (docs/benchmarks.md)
#   make test-imap-10k  the worker IMAP edge-case test with a 10,000-message folder (make test uses 2,000)
#   make soak       1-hour soak: 20 IMAP (IDLE) + 4 Gmail (push) accounts, new mail every second; RSS/fds/threads of each program (docs/soak.md; SOAK_FLAGS="--minutes 10")
#   make image      build deploy/docker/Dockerfile with buildah: OCI archive + digest in build-image/ (docs/operations.md)
#   make image-check  make image, then run lattice-migrate and the two-inbox demo's programs from the image against the stack
#   make validate-deploy  render + validate deploy/ offline (k8s schemas, KEDA CRDs, Dockerfile, secrets)
#   make airflow    the pinned Airflow venv for the command DAGs (.cache/airflow-venv; docs/airflow.md)
SHELL := /bin/bash
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_VALGRIND ?= build-valgrind
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure
STACK := deploy/local/stack

.PHONY: demo image image-deps image-check bench bench-imap bench-imap-changes test-imap-10k bench-gmail bench-scheduler bench-watcher seed airflow validate-deploy all deps build test test-unit test-asan test-valgrind stack-up stack-down stack-status stack-smoke env-example fuzz fuzz-run fuzz-target fuzz-all clean crash crash-changes faults soak

all: build

deps:
	@deploy/local/install-deps

$(BUILD)/build.ninja:
	@command -v cmake >/dev/null && command -v ninja >/dev/null || \
	  { echo 'make: cmake or ninja missing: run `make deps` first (installs the Debian packages)' >&2; exit 1; }
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD)

stack-up: deps build
	@$(STACK) up

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

stack-smoke: stack-up
	@$(STACK) smoke

demo: deps build stack-up
	@deploy/local/demo $(DEMO_FLAGS)

test: deps build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  ctest --test-dir $(BUILD) $(CTEST_FLAGS)

test-unit: build
	ctest --test-dir $(BUILD) -L 'unit|fuzz' $(CTEST_FLAGS)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DLT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)

test-asan: deps $(BUILD_ASAN)/build.ninja stack-up
	cmake --build $(BUILD_ASAN)
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD_ASAN) $(CTEST_FLAGS)

$(BUILD_VALGRIND)/build.ninja:
	cmake -S . -B $(BUILD_VALGRIND) -G Ninja -DLT_VALGRIND=ON -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_FLAGS_DEBUG='-O1 -g' $(CMAKE_FLAGS)

# One test at a time (valgrind serialises each program's threads; -j2 halves
# the wall time on an idle machine): VALGRIND_CTEST_FLAGS='-j2 -R worker_imap'.
VALGRIND_CTEST_FLAGS ?=
test-valgrind: deps $(BUILD_VALGRIND)/build.ninja stack-up
	cmake --build $(BUILD_VALGRIND)
	@rm -f $(BUILD_VALGRIND)/tests/valgrind-runs.tsv; set -a; eval "$$($(STACK) env)"; set +a; \
	  rc=0; ctest --test-dir $(BUILD_VALGRIND) $(CTEST_FLAGS) $(VALGRIND_CTEST_FLAGS) || rc=$$?; \
	  awk -F'\t' '{ t++; p += $$4; b += $$5; if ($$5) e++ } END { printf "valgrind: %d tests, %d program runs, %d with errors (in %d tests)\n", t, p, b, e }' \
	    $(BUILD_VALGRIND)/tests/valgrind-runs.tsv; exit $$rc

CRASH_MESSAGES ?= 5000
CRASH_KILLS ?= 20
CRASH_SEED ?=
crash: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  tests/crash/crash-campaign --build $(BUILD) --messages $(CRASH_MESSAGES) --kills $(CRASH_KILLS) \
	    $(if $(CRASH_SEED),--seed $(CRASH_SEED))

crash-changes: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  tests/crash/crash-campaign --build $(BUILD) --messages $(CRASH_MESSAGES) --kills $(CRASH_KILLS) \
	    --changes $(if $(CRASH_SEED),--seed $(CRASH_SEED))

FAULTS_PER_KIND ?= 50
FAULTS_MESSAGES ?= 10000
FAULTS_KINDS ?= kafka,pg,s3,net,disk,clock,mixed
FAULTS_SEED ?=
FAULTS_FLAGS ?=
faults: deps build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  tests/faults/fault-campaign --build $(BUILD) --messages $(FAULTS_MESSAGES) \
	    --faults-per-kind $(FAULTS_PER_KIND) --kinds $(FAULTS_KINDS) \
	    $(if $(FAULTS_SEED),--seed $(FAULTS_SEED)) $(FAULTS_FLAGS)

soak: build stack-up
	bench/soak/run --build $(BUILD) $(SOAK_FLAGS)

BUILD_FUZZ ?= build-fuzz
SECONDS ?= 60
FUZZ_TARGETS := $(sort $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c))))

fuzz: deps
	cmake -S . -B $(BUILD_FUZZ) -G Ninja -DLT_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD_FUZZ)

# One fuzzer at a time (one process): the corpus is merged back into
# tests/fuzz/corpus/<target>/ and the run appended to tests/fuzz/ledger.tsv.
fuzz-run: fuzz-target fuzz
	@rc=0; tests/fuzz/fuzz-run --build $(BUILD_FUZZ) --target $(TARGET) --seconds $(SECONDS) $(if $(JOBS),--jobs $(JOBS)) || rc=$$?; \
	  tests/fuzz/render-doc; exit $$rc

fuzz-target:
	@test -n "$(TARGET)" || { echo 'make fuzz-run TARGET=fuzz_<name> SECONDS=<n>; targets: $(FUZZ_TARGETS)' >&2; exit 2; }

# Every target in turn; a crash does not stop the others (make reports it at the end).
fuzz-all: fuzz
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  tests/fuzz/fuzz-run --build $(BUILD_FUZZ) --target $$t --seconds $(SECONDS) || failed="$$failed $$t"; \
	done; tests/fuzz/render-doc; \
	if [ -n "$$failed" ]; then echo "fuzz-all: crashes or failures in:$$failed" >&2; exit 1; fi

airflow:
	@deploy/airflow/install

# lattice-scheduler --once over 100k accounts (throwaway schema and topic): docs/benchmarks.md
bench-scheduler: build stack-up
	bench/scheduler 100000 $(BUILD)

# lattice-watcher: latency over 200 messages, then 1,000 accounts on a private Dovecot: docs/benchmarks.md
bench-watcher: build stack-up
	bench/watcher latency 200 $(BUILD)
	bench/watcher scale 1000 $(BUILD)

# Gmail connector vs the quota ceiling (own emulator with 50 ms latency): docs/benchmarks.md
bench-gmail: build stack-up
	bench/gmail $(BUILD)

# IMAP full sync, lattice-worker vs mbsync vs mbsync + rclone, alternating
# (BENCH_COUNT, BENCH_RUNS, BENCH_TOOLS): docs/benchmarks.md
bench-imap: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; bench/imap-vs-mbsync $(BUILD)

# A quiet IMAP incremental sync by change-tracking mode (BENCH_COUNT, BENCH_REPEAT): docs/benchmarks.md
bench-imap-changes: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; bench/imap-changes $(BUILD)

# every benchmark with short settings, one summary table: docs/benchmarks.md
bench: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; bench/all $(BUILD)

test-imap-10k: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  EDGE_BULK_COUNT=10000 bash tests/integration/test_worker_imap_edge.sh $(BUILD)

# tenant personal: personal-gmail + workmail-imap (LATTICE_SEED_* settings; references to secrets only)
seed: build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; $(BUILD)/tools/lattice-seed

env-example: build
	$(BUILD)/tools/lattice-config env-example > .env.example

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_VALGRIND) build-fuzz

validate-deploy: build
	deploy/validate $(BUILD)

# buildah (and debootstrap, for the base roots where no registry is reachable), only when missing
image-deps:
	@missing=""; for c in buildah debootstrap; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	  if [ -n "$$missing" ]; then \
	    SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	    echo "image-deps: installing$$missing" >&2; \
	    $$SUDO apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing >&2; \
	  fi

image: image-deps
	deploy/docker/image build

image-check: image-deps build stack-up
	@set -a; eval "$$($(STACK) env)"; set +a; deploy/docker/image check
