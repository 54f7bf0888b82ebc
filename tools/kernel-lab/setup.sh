#!/usr/bin/env bash
# Kernel lab setup: installs QEMU + Debian's kernel, builds netdevsim.ko out of
# tree and a busybox initramfs into the cache dir. Idempotent; a fast no-op when
# everything is already in place.
#
# Env:
#   VFD_LAB_CACHE  cache dir (default: <repo>/.cache/kernel-lab)
#   VFD_LAB_KVER   Debian kernel version to use (default: newest under /lib/modules
#                  that has /boot/vmlinuz-<ver>; NOT `uname -r`)
#   VFD_LAB_FORCE=1  rebuild netdevsim and the initramfs
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${VFD_LAB_CACHE:-$REPO/.cache/kernel-lab}"
APT_INSTALL=(apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends)
export DEBIAN_FRONTEND=noninteractive

log() { echo "kernel-lab setup: $*" >&2; }
die() { echo "kernel-lab setup: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, qemu 9p export of /)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.setup.lock"
flock 9   # concurrent setup.sh / run-in-guest callers wait for one another

# ---------------------------------------------------------------- packages
BASE_PKGS=(qemu-system-x86 linux-image-amd64 linux-source-6.1 busybox-static
           iproute2 kmod xz-utils make gcc libc6-dev cpio)

missing_pkgs() {
    local p st
    for p in "$@"; do
        st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ "$st" = installed ] || echo "$p"
    done
}

APT_UPDATED=0
apt_install() {
    # Try without an update first (fast when lists are fresh); update once on failure.
    if [ "$APT_UPDATED" = 0 ] && [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2
        APT_UPDATED=1
    fi
    if ! "${APT_INSTALL[@]}" "$@" >&2; then
        [ "$APT_UPDATED" = 0 ] || die "apt-get install $* failed"
        log "install failed; apt-get update and retry"
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2
        APT_UPDATED=1
        "${APT_INSTALL[@]}" "$@" >&2 || die "apt-get install $* failed"
    fi
}

mapfile -t MISSING < <(missing_pkgs "${BASE_PKGS[@]}")
if [ "${#MISSING[@]}" -gt 0 ]; then
    log "installing: ${MISSING[*]}"
    apt_install "${MISSING[@]}"
fi
# QEMU with the igb SR-IOV model, the CNI plugins (run-in-guest --igb, tests/cni).
. "$HERE/igb-deps.sh"

# ---------------------------------------------------------------- kernel version
pick_kver() {
    local d v best=""
    for d in /lib/modules/*/; do
        v="$(basename "$d")"
        [ -f "/boot/vmlinuz-$v" ] || continue
        [ -f "$d/kernel/net/9p/9pnet_virtio.ko.xz" ] || [ -f "$d/kernel/net/9p/9pnet_virtio.ko" ] || continue
        best="$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n1)"
    done
    echo "$best"
}
KVER="${VFD_LAB_KVER:-$(pick_kver)}"
[ -n "$KVER" ] || die "no Debian kernel found under /lib/modules with /boot/vmlinuz-<ver>"
[ -f "/boot/vmlinuz-$KVER" ] || die "/boot/vmlinuz-$KVER missing"

if [ ! -e "/lib/modules/$KVER/build/Makefile" ]; then
    log "installing linux-headers-$KVER"
    apt_install "linux-headers-$KVER"
fi
[ -e "/lib/modules/$KVER/build/Makefile" ] || die "kernel headers for $KVER missing"

KDIR="$CACHE/$KVER"
mkdir -p "$KDIR"

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
IMG_VER="$(pkgver "linux-image-$KVER")"
[ "$IMG_VER" != none ] || IMG_VER="$(pkgver "linux-image-$KVER-unsigned")"
SRC_VER="$(pkgver linux-source-6.1)"
HDR_VER="$(pkgver "linux-headers-$KVER")"
BB_VER="$(pkgver busybox-static)"

# ---------------------------------------------------------------- netdevsim.ko
NSIM_STAMP_WANT="v2 kver=$KVER image=$IMG_VER headers=$HDR_VER source=$SRC_VER"
NSIM_STAMP="$KDIR/netdevsim.stamp"
if [ "${VFD_LAB_FORCE:-0}" != 1 ] && [ -f "$KDIR/netdevsim.ko" ] && [ -f "$NSIM_STAMP" ] \
        && [ "$(cat "$NSIM_STAMP")" = "$NSIM_STAMP_WANT" ]; then
    :
else
    log "building netdevsim.ko for $KVER"
    SRC_TAR="$(ls /usr/src/linux-source-6.1.tar.xz 2>/dev/null || true)"
    [ -n "$SRC_TAR" ] || die "/usr/src/linux-source-6.1.tar.xz missing"
    BUILD="$KDIR/build"
    rm -rf "$BUILD"; mkdir -p "$BUILD"
    tar -C "$BUILD" -xJf "$SRC_TAR" --wildcards '*/drivers/net/netdevsim/*'
    NSIM_SRC="$(find "$BUILD" -type d -path '*/drivers/net/netdevsim' | head -n1)"
    [ -n "$NSIM_SRC" ] || die "netdevsim sources not found in $SRC_TAR"
    make -s -C "/lib/modules/$KVER/build" M="$NSIM_SRC" CONFIG_NETDEVSIM=m \
        -j"$(nproc)" modules >&2
    # Debug info only slows the guest's insmod down.
    strip --strip-debug -o "$KDIR/netdevsim.ko.tmp" "$NSIM_SRC/netdevsim.ko"
    mv "$KDIR/netdevsim.ko.tmp" "$KDIR/netdevsim.ko"
    rm -rf "$BUILD"
    echo "$NSIM_STAMP_WANT" > "$NSIM_STAMP"
    rm -f "$KDIR/initramfs.stamp"   # initramfs embeds netdevsim.ko
fi

# ---------------------------------------------------------------- vmlinux
# QEMU boots an uncompressed ELF vmlinux through its PVH entry point (Debian
# sets CONFIG_PVH=y): that skips the firmware's kernel loading and the
# decompressor, which in software emulation take ~4-5 s per boot.
VMLINUX_STAMP_WANT="v2 kver=$KVER image=$IMG_VER"
if [ "${VFD_LAB_FORCE:-0}" != 1 ] && [ -f "$KDIR/vmlinux.stamp" ] \
        && [ "$(cat "$KDIR/vmlinux.stamp")" = "$VMLINUX_STAMP_WANT" ]; then
    :
else
    log "extracting vmlinux from /boot/vmlinuz-$KVER"
    rm -f "$KDIR/vmlinux" "$KDIR/vmlinux.stamp"
    VMLINUZ="/boot/vmlinuz-$KVER"
    off="$(LC_ALL=C grep -aboP -m1 '\xfd7zXZ\x00' "$VMLINUZ" | head -n1 | cut -d: -f1)" || off=""
    if [ -n "$off" ] && tail -c +"$((off + 1))" "$VMLINUZ" > "$KDIR/vmlinux.xz.tmp" \
            && xz -dc --single-stream "$KDIR/vmlinux.xz.tmp" > "$KDIR/vmlinux.tmp" 2>/dev/null \
            && [ "$(head -c 4 "$KDIR/vmlinux.tmp" | tail -c 3)" = ELF ] \
            && readelf -n "$KDIR/vmlinux.tmp" 2>/dev/null | grep -qE 'Xen.*(0x00000012|PHYS32)'; then
        mv "$KDIR/vmlinux.tmp" "$KDIR/vmlinux"
    else
        # Not xz or no PVH entry note: run-in-guest falls back to booting vmlinuz.
        log "no PVH-bootable vmlinux could be extracted; will boot vmlinuz (slower)"
        rm -f "$KDIR/vmlinux.tmp"
    fi
    rm -f "$KDIR/vmlinux.xz.tmp"
    echo "$VMLINUX_STAMP_WANT" > "$KDIR/vmlinux.stamp"
fi

# ---------------------------------------------------------------- initramfs
# Modules loaded by /init, in order (names as in /lib/modules/<ver>).
INITRD_MODS=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
             9pnet 9pnet_virtio netfs fscache 9p psample)
INIT_SRC="$HERE/guest-init.sh"
INIT_SUM="$(sha256sum "$INIT_SRC" | cut -d' ' -f1)"
NSIM_SUM="$(sha256sum "$KDIR/netdevsim.ko" | cut -d' ' -f1)"
INITRD_STAMP_WANT="kver=$KVER image=$IMG_VER busybox=$BB_VER init=$INIT_SUM nsim=$NSIM_SUM mods=${INITRD_MODS[*]}"
INITRD_STAMP="$KDIR/initramfs.stamp"
if [ "${VFD_LAB_FORCE:-0}" != 1 ] && [ -f "$KDIR/initramfs.cpio.gz" ] && [ -f "$INITRD_STAMP" ] \
        && [ "$(cat "$INITRD_STAMP")" = "$INITRD_STAMP_WANT" ]; then
    :
else
    log "building initramfs for $KVER"
    ROOT="$KDIR/initramfs.d"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,host,job,mods,tmp,etc}
    cp /bin/busybox "$ROOT/bin/busybox"
    for a in sh mount umount mkdir insmod cat echo ls sleep poweroff chroot sync \
             ip xz mknod ln cp rm printf test dmesg uname basename cut head tr grep sed; do
        ln -sf busybox "$ROOT/bin/$a"
    done
    i=0
    for m in "${INITRD_MODS[@]}"; do
        f="$(modinfo -k "$KVER" -n "$m" 2>/dev/null || true)"
        [ -n "$f" ] && [ -f "$f" ] || die "module $m not found for $KVER"
        i=$((i + 1))
        dst="$ROOT/mods/$(printf '%02d' "$i")-$m.ko"
        case "$f" in
            *.xz) xz -dc "$f" > "$dst" ;;
            *.zst) zstd -dc "$f" > "$dst" ;;
            *.gz) gzip -dc "$f" > "$dst" ;;
            *) cp "$f" "$dst" ;;
        esac
    done
    cp "$KDIR/netdevsim.ko" "$ROOT/mods/99-netdevsim.ko"
    install -m 0755 "$INIT_SRC" "$ROOT/init"
    # Helper the kernel's module autoloader runs (it resolves paths in the
    # initramfs root): delegate to the host root's modprobe.
    cat > "$ROOT/sbin/modprobe" <<'EOF'
#!/bin/sh
exec /bin/chroot /host /sbin/modprobe "$@"
EOF
    chmod 0755 "$ROOT/sbin/modprobe"
    (cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$KDIR/initramfs.cpio.gz.tmp"
    mv "$KDIR/initramfs.cpio.gz.tmp" "$KDIR/initramfs.cpio.gz"
    rm -rf "$ROOT"
    echo "$INITRD_STAMP_WANT" > "$INITRD_STAMP"
fi

ln -sfn "$KVER" "$CACHE/current.tmp" && mv -T "$CACHE/current.tmp" "$CACHE/current"
echo "$KVER" > "$CACHE/kver"
log "ready: kernel $KVER, cache $CACHE"
