# The README's two commands: `make demo` and `make check`.  Both install what
# they need (scripts/setup.sh is idempotent) and build first.
BUILD ?= build
SHELL := /bin/bash

.PHONY: all setup build demo check check-unit check-e2e check-k8s bench clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	@. scripts/env.sh && { [ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) >/dev/null; } && ninja -C $(BUILD) >/dev/null && echo "build: ok ($(BUILD))"

demo: build
	@MYCE_BUILD_DIR=$(BUILD) bash scripts/demo.sh

check: build
	@MYCE_BUILD_DIR=$(BUILD) bash scripts/check.sh

check-unit: build
	@. scripts/env.sh && meson test -C $(BUILD) --suite unit --print-errorlogs

check-e2e: build
	@MYCE_BUILD_DIR=$(BUILD) python3 -m pytest -q -p no:cacheprovider tests/e2e

# The Kubernetes-mode tests against a real control plane (docs/k8s-controlplane.md).
# The first run builds Kubernetes from the Go module proxy (long); later runs
# use the cache in /var/cache/mycedrive/k8s.
check-k8s: build
	@bash scripts/k8s-controlplane.sh build
	@MYCE_BUILD_DIR=$(BUILD) python3 -m pytest -q -p no:cacheprovider tests/k8s

bench: build
	@MYCE_BUILD_DIR=$(BUILD) bash bench/run.sh $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
