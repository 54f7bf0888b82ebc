#!/usr/bin/env bash
# Debian packaging setup: the Debian packages `make deb` and tests/packaging need (debhelper,
# dh-python with pybuild's pyproject plugin, pandoc for the man pages, lintian, bash-completion),
# and buildah + debootstrap for the container image (tools/image/build-image.sh; no OCI runtime:
# builds and runs use buildah's chroot isolation).
# Idempotent; a fast no-op when everything is installed. Needs root (apt-get).
set -euo pipefail

PKGS=(debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-pip
      dpkg-dev fakeroot binutils pandoc lintian bash-completion systemd buildah debootstrap gcc libc6-dev)
APT=(apt-get -o DPkg::Lock::Timeout=600)
export DEBIAN_FRONTEND=noninteractive

log() { echo "packaging setup: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "not root, skipping (packaging tests will skip)"; exit 0; }

missing=()
for p in "${PKGS[@]}"; do
    st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [ "$st" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

log "installing: ${missing[*]}"
# Try without an update first (fast when the lists are fresh); update once on failure.
if ! "${APT[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2; then
    log "install failed; apt-get update and retry"
    "${APT[@]}" update -q >&2
    "${APT[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2
fi
