# Two entry points for a fresh Debian 12 machine: `make demo` and `make test`.
# Each installs what it needs first (system packages, a virtualenv, the package), then runs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
APT_PKGS := mesa-vulkan-drivers libvulkan1 glslc vulkan-validationlayers xvfb xauth libglfw3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo bench sysdeps venv clean gpu-kit

# System packages: installed only when one is missing (dpkg -s is cheap; apt-get update is not).
sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VPY):
	$(PY) -m venv $(VENV)

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The suite runs with the Khronos validation layer on, core and synchronization validation (hazards a
# serial CPU driver hides but a GPU exposes); any validation message fails the test that caused it.
SYNC_VALIDATION := VK_LAYER_ENABLES=VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT
test: sysdeps venv
	VKBANDS_VALIDATION=1 $(SYNC_VALIDATION) xvfb-run -a -s "-screen 0 1280x800x24" $(VPY) -m pytest -q $(PYTEST_ARGS)

demo: sysdeps venv
	$(VENV)/bin/vkbands demo

bench: sysdeps venv
	$(VPY) -m pip install -q -e '.[bench]'
	for b in benchmarks/bench_*.py; do $(VPY) $$b || exit 1; done

# dist/gpu-kit/: wheels (vkbands with its SPIR-V, and its dependencies for CPython 3.10-3.12), the Vulkan
# loader .deb, tests, benchmarks and run.sh, for GPU nodes without network or compilers (kit/README.md).
gpu-kit: sysdeps venv
	PY=$(VPY) kit/build.sh

clean:
	rm -rf $(VENV) out build *.egg-info
