# Sourced by setup.sh (after its base packages): what `run-in-guest --igb` and the CNI tests need.
# Debian 12's QEMU (7.2) has no SR-IOV NIC model; bookworm-backports' QEMU 10 emulates an Intel
# 82576 (igb) with SR-IOV. Also Debian's containernetworking-plugins (host-local, tuning,
# host-device) and ping, used inside the guest from the shared host root.
# Uses setup.sh's log/die/apt_install/missing_pkgs.

qemu_has_igb() { qemu-system-x86_64 -device help 2>/dev/null | grep -q '^name "igb"'; }

add_backports_source() {
    local codename uris keyring f=/etc/apt/sources.list.d/bookworm-backports.sources
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ "$codename" = bookworm ] || return 1
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    # Same mirror and keyring as the main Debian source.
    uris="$(grep -hm1 '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | cut -d' ' -f2-)"
    keyring="$(grep -hm1 '^Signed-By:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | cut -d' ' -f2-)"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
        "${uris:-http://deb.debian.org/debian}" "${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}" > "$f"
    log "added $f"
}

if ! qemu_has_igb; then
    if add_backports_source; then
        log "installing qemu-system-x86 from bookworm-backports (igb SR-IOV model)"
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2
        APT_UPDATED=1
        "${APT_INSTALL[@]}" -t bookworm-backports qemu-system-x86 >&2 \
            || die "apt-get install -t bookworm-backports qemu-system-x86 failed"
    else
        apt_install qemu-system-x86
    fi
    qemu_has_igb || die "QEMU $(qemu-system-x86_64 --version | head -n1) has no igb device (need QEMU >= 8)"
fi

mapfile -t IGB_MISSING < <(missing_pkgs containernetworking-plugins iputils-ping)
if [ "${#IGB_MISSING[@]}" -gt 0 ]; then
    log "installing: ${IGB_MISSING[*]}"
    apt_install "${IGB_MISSING[@]}"
fi
