# The README's two commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test unit system-deps bench schema deb clean

install: $(STAMP) $(VENV)/bin/vfd-cni

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,openstack]' --config-settings editable_mode=compat
	touch $(STAMP)

# The CNI plugin binary: a static C front end that hands each command to the daemon's CNI socket
# (docs/kubernetes.md). Static glibc comes with libc6-dev (tools/packaging/setup.sh installs it).
CC ?= cc
CNI_FRONTEND_CFLAGS := -static -Os -s -Wall -Wextra -Werror
$(VENV)/bin/vfd-cni: tools/cni-frontend/vfd-cni.c $(STAMP)
	@[ -e "$$($(CC) -print-file-name=libc.a)" ] && [ "$$($(CC) -print-file-name=libc.a)" != libc.a ] \
	  || { echo "make: no static libc for vfd-cni: apt-get install libc6-dev (make system-deps)" >&2; exit 1; }
	$(CC) $(CNI_FRONTEND_CFLAGS) -o $@.new $< && mv $@.new $@

demo: $(STAMP)
	$(VENV)/bin/python tools/demo.py

# Debian packages for the real-component tests (DPDK 22.11 libraries, QEMU + a Debian kernel
# with netdevsim). Needs root, as CI has; without root those tests say why they skip.
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  bash tools/dpdk/setup.sh && bash tools/kernel-lab/setup.sh && bash tools/packaging/setup.sh; \
	else echo "system-deps: not root, skipping Debian packages (DPDK and kernel-lab tests will skip)"; fi

# system-deps first: it installs gcc and libc6-dev, which the static vfd-cni (install) links with.
test: system-deps install
	$(PY) -m pytest -q -p no:cacheprovider

# Fast tests only: no guest, no DPDK.
unit: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not kernel_lab and not dpdk" tests/unit tests/integration \
	  tests/kernel/test_kernel_unit.py tests/dpdk/test_mailbox_policy.py tests/dpdk/test_pmd_sequences.py

bench: install
	$(PY) bench/run_all.py

schema: install
	$(VENV)/bin/vfd --schema main > docs/schema/vfd.cfg.schema.json
	$(VENV)/bin/vfd --schema vf > docs/schema/vf-config.schema.json

# The Debian package (docs/packaging.md): dist/vfd_<version>_<arch>.deb.
deb:
	bash tools/packaging/setup.sh
	bash tools/packaging/build-deb.sh dist

clean:
	rm -rf $(VENV) .cache
