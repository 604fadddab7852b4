# Accord: build, boot and test. `make help` lists the targets.
ARCH ?= aarch64
OVERLAY ?=
# Architectures whose image the system test boots in `make test`.
TEST_ARCHES ?= aarch64 x86_64

export CARGO_TERM_COLOR ?= never

.PHONY: help setup build rootfs qemu qemu-test power-cut soak-power storage-test test unit-test lint flake-hunt bench reset-data clean

help:
	@echo "make qemu       build the image and boot it (ARCH=$(ARCH)); poweroff exits"
	@echo "make test       unit + namespace tests, then the QEMU system test ($(TEST_ARCHES))"
	@echo "make rootfs     build out/\$$ARCH/{vmlinuz,initramfs.img,data.img} (OVERLAY=dir lays dir over it)"
	@echo "make qemu-test  boot headless and check the running system (ARCH=...)"
	@echo "make power-cut  ROUNDS=20 power cuts (QEMU killed) against every store, each write checked (ARCH=$(POWER_ARCH))"
	@echo "make soak-power the same, 200 rounds"
	@echo "make storage-test  volumes, hot-plugged USB disks and a damaged /data in QEMU (ARCH=$(STORAGE_ARCH))"
	@echo "make lint       cargo fmt --check and clippy -D warnings (part of make test)"
	@echo "make flake-hunt N=30  run cargo test N times, half with the CPUs kept busy"
	@echo "make bench      boot time, RSS, image size, parameter, IPC, KV and hilog figures"
	@echo "make reset-data fresh, empty /data for ARCH"
	@echo "make setup      install host packages and rust targets (done on demand)"

setup:
	@rootfs/setup-host.sh

# Host tools are checked (and installed if missing) before anything needs them.
.host-ready: rootfs/setup-host.sh
	@rootfs/setup-host.sh
	@touch $@

build: .host-ready
	cargo build --workspace </dev/null

rootfs: .host-ready
	@rootfs/fetch-kernel.sh $(ARCH)
	@rootfs/fetch-busybox.sh $(ARCH)
	@rootfs/fetch-fstools.sh $(ARCH)
	@rootfs/mkrootfs.sh $(ARCH) $(OVERLAY)

qemu: rootfs
	@rootfs/qemu.sh $(ARCH)

# The system test lays its own overlay (tests/systest/overlay) over the image.
qemu-test: OVERLAY := $(or $(OVERLAY),tests/systest/overlay)
qemu-test: rootfs
	cargo run --release -q -p accord-systest --bin qemu-test -- $(ARCH) </dev/null

# Power cuts: the test image on a /data disk of its own, QEMU killed at
# random moments while a writer on the device logs every acknowledged write;
# each boot checks they are all there (tests/systest/src/bin/power-cut.rs).
POWER_ARCH ?= x86_64
ROUNDS ?= 20
power-cut:
	@$(MAKE) --no-print-directory rootfs ARCH=$(POWER_ARCH) OVERLAY=tests/systest/overlay
	cargo run --release -q -p accord-systest --bin power-cut -- $(POWER_ARCH) $(ROUNDS) $(SEED) </dev/null

soak-power:
	@$(MAKE) --no-print-directory power-cut ROUNDS=200

# The storage manager and daemon in QEMU: a blank /data formatted at first
# boot, USB disks plugged and pulled through QMP, a damaged superblock
# repaired, a disk of garbage DAMAGED (tests/systest/src/bin/storage-test.rs).
STORAGE_ARCH ?= x86_64
storage-test:
	@$(MAKE) --no-print-directory rootfs ARCH=$(STORAGE_ARCH) OVERLAY=tests/systest/overlay
	cargo run --release -q -p accord-systest --bin storage-test -- $(STORAGE_ARCH) </dev/null

# Formatting and clippy are part of the tests: a warning fails them.
lint: .host-ready
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings </dev/null

unit-test: lint
	cargo test --workspace </dev/null

# The whole cargo test suite N times, odd runs with every CPU kept busy;
# reports each failing run and test (logs in out/flake-hunt/).
N ?= 30
flake-hunt: .host-ready
	@tests/flake-hunt.sh $(N)

test: unit-test
	@for a in $(TEST_ARCHES); do $(MAKE) --no-print-directory qemu-test ARCH=$$a || exit 1; done
	@$(MAKE) --no-print-directory power-cut
	@$(MAKE) --no-print-directory storage-test

bench: .host-ready
	@echo "== parameter get latency, pinned to CPU 0 (headline) =="
	cargo bench -q -p accord-init --bench param_get --no-run </dev/null
	taskset -c 0 cargo bench -q -p accord-init --bench param_get </dev/null
	@echo "== parameter get latency, unpinned =="
	cargo bench -q -p accord-init --bench param_get </dev/null
	@echo "== IPC call path, pinned to CPU 0 (headline) =="
	cargo bench -q -p accord-safwk --bench call_path --no-run </dev/null
	taskset -c 0 cargo bench -q -p accord-safwk --bench call_path </dev/null
	@echo "== IPC call path, unpinned =="
	cargo bench -q -p accord-safwk --bench call_path </dev/null
	@echo "== data service (SA 1301) vs the same store in-process =="
	cargo bench -q -p accord-data --bench kv </dev/null
	@echo "== relational store vs bare rusqlite =="
	cargo bench -q -p accord-rdb --bench rdb </dev/null
	@echo "== hilog: 4 writers through the tracing layer vs a discarding reader; event-to-follower latency =="
	cargo bench -q -p accord-hilog --bench hilog </dev/null
	@$(MAKE) --no-print-directory rootfs ARCH=$(ARCH)
	@echo "== boot ($(ARCH), TCG, 5 boots) =="
	cargo run --release -q -p accord-systest --bin boot-bench -- $(ARCH) 5 </dev/null

reset-data:
	@rootfs/mkdata.sh $(ARCH) --reset

clean:
	cargo clean
	rm -rf out .host-ready
