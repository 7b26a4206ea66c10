# Syncbit build. `make` builds bin/syncbit; `make test` runs the unit,
# integration and chaos tests, then all three suites again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz smoke.

CC      ?= cc
PKGS    := libuv lmdb libprotobuf-c libsodium libcurl libxxhash yaml-0.1 jansson libcrypto
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1 -g
else
BUILD   := build
SANFLAGS :=
OPT     := -O2 -g
endif
BIN     := $(if $(filter 1,$(SAN)),$(BUILD)/bin,bin)

# pkg-config runs when a recipe first needs its answer, not when the Makefile
# is read: `make demo` on a bare machine installs the libraries (deps) first.
CFLAGS_PKG = $(eval CFLAGS_PKG := $(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(CFLAGS_PKG)
LIBS_PKG   = $(eval LIBS_PKG := $(shell pkg-config --libs $(PKGS) 2>/dev/null))$(LIBS_PKG)
CFLAGS  += -std=gnu11 $(OPT) -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -I. -I$(BUILD)/gen -include common/banned.h $(CFLAGS_PKG) $(SANFLAGS) -MMD -MP
LDLIBS  += $(LIBS_PKG) -lhttp_parser -lpthread -lm
LDFLAGS += $(SANFLAGS)

PROTO_SRC := $(wildcard proto/*.proto)
PROTO_C   := $(patsubst proto/%.proto,$(BUILD)/gen/proto/%.pb-c.c,$(PROTO_SRC))
PROTO_H   := $(PROTO_C:.c=.h)
LIB_SRC   := $(wildcard common/*.c common/net/*.c common/source/*.c agent/*.c scheduler/*.c) $(filter-out cli/main.c,$(wildcard cli/*.c))
LIB_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC)) $(PROTO_C:.c=.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps build-deps test test-build check unit integration chaos demo demo-pull image clean format lint fuzz fuzz-smoke bench bench-deps bench-sim man sched-scale FORCE
all: $(BIN)/syncbit

# Install the Debian packages once per machine: build-deps what `make` and
# `make demo` need, deps that plus what the tests run.
deps:
	@./tests/deps.sh test

build-deps:
	@./tests/deps.sh build

# Every object waits for this check: a machine without the libraries gets
# one line saying what to run instead of a page of missing headers.
$(BUILD)/.pkgs-ok:
	@pkg-config --exists $(PKGS) || { echo "syncbit: build libraries missing ($$(for p in $(PKGS); do pkg-config --exists $$p || printf '%s ' $$p; done)); run 'make build-deps'" >&2; exit 1; }
	@command -v protoc-c >/dev/null || { echo "syncbit: protoc-c missing; run 'make build-deps'" >&2; exit 1; }
	@mkdir -p $(dir $@) && touch $@

$(BUILD)/gen/proto/%.pb-c.c $(BUILD)/gen/proto/%.pb-c.h: proto/%.proto | $(BUILD)/.pkgs-ok
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen $<

$(BUILD)/gen/proto/%.pb-c.o: $(BUILD)/gen/proto/%.pb-c.c
	$(CC) -std=gnu11 $(OPT) -I$(BUILD)/gen $(CFLAGS_PKG) -fno-sanitize=all -c -o $@ $<

# The commit `syncbit version` reports: only common/version.o is built with
# it, again when it changes; "unknown" outside a git checkout.
COMMIT := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/common/version.o: CFLAGS += -DSYNCBIT_COMMIT='"$(COMMIT)"'
$(BUILD)/common/version.o: $(BUILD)/commit-stamp
$(BUILD)/commit-stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(COMMIT)' | cmp -s - $@ || echo '$(COMMIT)' >$@

# The scheduler's page (scheduler/web/) is built in as byte lists that
# scheduler/web.c includes: od and sed, no other tool.
WEB_FILES := $(wildcard scheduler/web/*)
WEB_INC   := $(patsubst %,$(BUILD)/gen/%.inc,$(WEB_FILES))
$(BUILD)/gen/scheduler/web/%.inc: scheduler/web/%
	@mkdir -p $(dir $@)
	od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g' >$@.tmp && mv $@.tmp $@
$(BUILD)/scheduler/web.o: $(WEB_INC)

$(BUILD)/%.o: %.c $(PROTO_H) | $(BUILD)/.pkgs-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libsyncbit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/syncbit: $(BUILD)/cli/main.o $(BUILD)/libsyncbit.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/testutil.h $(BUILD)/libsyncbit.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libsyncbit.a $(LDLIBS) -lcmocka

# The scheduler's load generator (bench/sched-scale.sh): simulated agents
# on the real connection, handshake and wire code.
SCALE_SRC := $(wildcard bench/sched-scale/*.c)
$(BUILD)/bench/sched-scale: $(SCALE_SRC) bench/sched-scale/sim.h $(BUILD)/libsyncbit.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SCALE_SRC) $(BUILD)/libsyncbit.a $(LDLIBS)

sched-scale: $(BIN)/syncbit $(BUILD)/bench/sched-scale

# The distribution model (bench/sim/README.md): the agent's block choice
# (agent/pick.c) and the scheduler's plans, linked from libsyncbit.a.
SIM_SRC := $(filter-out bench/sim/main.c,$(wildcard bench/sim/*.c))
SIM_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(SIM_SRC))
$(BUILD)/bench/sim/sim: $(BUILD)/bench/sim/main.o $(SIM_OBJ) $(BUILD)/libsyncbit.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_sim: tests/unit/test_sim.c tests/unit/testutil.h $(SIM_OBJ) $(BUILD)/libsyncbit.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(SIM_OBJ) $(BUILD)/libsyncbit.a $(LDLIBS) -lcmocka

bench-sim: $(BUILD)/bench/sim/sim

unit: $(UNIT_BIN)
	@./tests/run-unit.sh $(UNIT_BIN)

integration: $(BIN)/syncbit $(BUILD)/bench/sched-scale
	@SYNCBIT_BIN=$(abspath $(BIN)/syncbit) SCALE_GEN=$(abspath $(BUILD)/bench/sched-scale) \
		./tests/run-integration.sh

# Faults injected at random points of real distributions (docs/CHAOS.md);
# CHAOS_SEED replays a run, ONLY=NAME runs one scenario.
chaos: $(BIN)/syncbit
	@SYNCBIT_BIN=$(abspath $(BIN)/syncbit) ./tests/run-chaos.sh

check: $(BUILD)/bench/sched-scale unit integration chaos

# What check runs, built beforehand on every core (the suites themselves
# run their scripts a few at a time).
NPROC := $(shell nproc 2>/dev/null || echo 2)
test-build: $(BIN)/syncbit $(UNIT_BIN) $(BUILD)/bench/sched-scale

# The whole suite, then again under ASan+UBSan, then every libFuzzer target
# for TEST_FUZZ_SECONDS on its seeds (docs/FUZZING.md).
TEST_FUZZ_SECONDS ?= 10
test: deps
	$(MAKE) -j$(NPROC) test-build
	$(MAKE) check
	$(MAKE) -j$(NPROC) test-build SAN=1
	$(MAKE) check SAN=1
	$(MAKE) -j$(NPROC) fuzz-smoke FUZZ_SMOKE_SECONDS=$(TEST_FUZZ_SECONDS)

# A scheduler, an origin and four agents on loopback (tests/demo.sh);
# demo-pull shows a standalone pull on one node. They need only the build
# dependencies, and build in a second make that runs after those are in.
demo: build-deps
	@$(MAKE) --no-print-directory all
	@./tests/demo.sh

demo-pull: build-deps
	@$(MAKE) --no-print-directory all
	@./tests/demo-pull.sh

# The container image, built offline from no base image (deploy/image/build.sh):
# an OCI layout in $(BUILD)/image/oci and a docker-archive $(BUILD)/image/syncbit.tar.
image:
	@./tests/deps.sh image
	@$(MAKE) --no-print-directory all
	@BIN=$(abspath $(BIN)/syncbit) IMAGE_DIR=$(abspath $(BUILD)/image) ./deploy/image/build.sh

# libFuzzer targets for every decoder of outside bytes (docs/FUZZING.md):
# `make fuzz` builds them into build-fuzz/, `make fuzz-smoke` runs each for
# FUZZ_SMOKE_SECONDS (default 25) on a temp copy of its seeds, two at a time.
fuzz: deps
	$(MAKE) -f tests/fuzz/Makefile

fuzz-smoke: deps
	$(MAKE) -f tests/fuzz/Makefile smoke

# Performance benchmarks (bench/README.md); each prints its ratio last.
# bench/deps.sh adds iperf3, aria2, opentracker and mktorrent to the test deps
# (which hold containerd, docker-registry and skopeo for image-pull).
bench-deps:
	@./bench/deps.sh

bench: bench-deps
	$(MAKE) all
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/pull-http
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/pull-again
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/pull-dir
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/pull-s3
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/peer-pair
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/cluster
	SYNCBIT=$(abspath $(BIN)/syncbit) ./bench/image-pull

# The manual page, generated from the same tables as --help.
man: $(BUILD)/syncbit.1
$(BUILD)/syncbit.1: $(BIN)/syncbit
	$(BIN)/syncbit man >$@

FORCE:

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# The house rules (docs/ARCHITECTURE.md), clang-format, cppcheck, and
# clang-tidy on the files changed since the merge base with main
# (tests/lint.sh; LINT_TIDY=all reads every file).
lint:
	@./tests/deps.sh lint
	@$(MAKE) --no-print-directory $(PROTO_H)
	@LINT_CFLAGS='-std=gnu11 -D_GNU_SOURCE -I. -I$(BUILD)/gen -include common/banned.h $(CFLAGS_PKG)' \
		./tests/lint.sh

clean:
	rm -rf build build-san bin

-include $(shell find build build-san -name '*.d' 2>/dev/null)
