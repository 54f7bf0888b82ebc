#!/usr/bin/env bash
# Install Debian's DPDK 22.11 runtime + headers (dpdk, dpdk-dev) for the vfd dpdk backend.
# Idempotent: a fast no-op when both packages are already installed.
# Another engineer may run apt at the same time, hence the dpkg lock timeout.
set -euo pipefail

PKGS=(dpdk dpdk-dev)

installed() {
    local p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || return 1
    done
    return 0
}

if installed; then
    echo "dpdk setup: dpdk and dpdk-dev already installed ($(dpkg-query -W -f='${Version}' dpdk))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "dpdk setup: must run as root to install ${PKGS[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=600)

# Refresh the package lists when they are missing or do not know the package.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 \
   || [ -z "$(apt-cache policy dpdk-dev 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; then
    "${APT[@]}" update -q
fi

# A stale package list can name files the mirror no longer has: refresh once and retry.
if ! "${APT[@]}" install -y -q --no-install-recommends "${PKGS[@]}"; then
    echo "dpdk setup: install failed; refreshing package lists and retrying" >&2
    "${APT[@]}" update -q
    "${APT[@]}" install -y -q --no-install-recommends "${PKGS[@]}"
fi

installed
echo "dpdk setup: installed $(dpkg-query -W -f='${Version}' dpdk)"
