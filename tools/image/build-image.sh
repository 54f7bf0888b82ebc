#!/usr/bin/env bash
# Builds the vfd image from Containerfile with buildah, needing no container registry: the Debian
# base image is made here with debootstrap from a Debian mirror and stored locally. Idempotent and
# cached: the base is made only when it is not in buildah's store yet (--new-base remakes it, e.g.
# for Debian's security updates), and the build reuses unchanged layers (--layers).
#
#   tools/image/build-image.sh [--new-base] [TAG]     (root; default TAG localhost/vfd:dev)
#
# Prints the image's ID on stdout (a later build to the same tag does not change what it names);
# progress goes to stderr. Environment: VFD_IMAGE_BASE (the
# base's tag, default localhost/debian:bookworm-vfd-base), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security).
# Builds and runs use buildah's chroot isolation: no OCI runtime is needed (crun refuses a hybrid
# cgroup v1/v2 host) and the build's RUN steps use the host's network (apt, PyPI).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BASE="${VFD_IMAGE_BASE:-localhost/debian:bookworm-vfd-base}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
NEW_BASE=0
TAG=localhost/vfd:dev

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --new-base) NEW_BASE=1 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (known: --new-base, --help)" ;;
        *) [ -z "${tag_given:-}" ] || die "one TAG only (got $TAG and $1)"; TAG="$1"; tag_given=1 ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, buildah's store in /var/lib/containers)"
for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || die "$tool not found: run tools/packaging/setup.sh (make system-deps)"
done

# One build at a time on this machine (the lock is this script's own file: no fixed path to clean).
exec 9<"$0"
flock 9

# The base: what Docker Hub's debian:bookworm-slim is (debuerreotype's minbase, slimmed): the three
# suites in deb822 form, no documentation or man pages installed, no apt lists or caches.
make_base() {
    local work ctr mnt started=$SECONDS
    work="$(mktemp -d "${TMPDIR:-/var/tmp}/vfd-base.XXXXXX")"
    ctr=""
    # shellcheck disable=SC2064
    trap "rm -rf '$work'; [ -z \"\$ctr\" ] || buildah rm \"\$ctr\" >/dev/null 2>&1 || true" EXIT
    log "debootstrap $SUITE from $MIRROR"
    if ! debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$MIRROR" >&2; then
        tail -n 20 "$work/rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        die "debootstrap of $SUITE from $MIRROR failed (its log's end above); no base image made"
    fi
    local r="$work/rootfs"
    rm -f "$r/etc/apt/sources.list"
    cat > "$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat > "$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# as debian:*-slim (debuerreotype-slimify): no documentation in the image
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    echo 'APT::Install-Recommends "false";' > "$r/etc/apt/apt.conf.d/docker-no-recommends"
    find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin \
        "$r"/var/cache/apt/archives/*.deb "$r"/debootstrap "$r"/var/log/* "$r"/tmp/* "$r"/etc/resolv.conf
    echo localhost > "$r/etc/hostname"
    ctr="$(buildah from --name "vfd-base-$$" scratch)"
    mnt="$(buildah mount "$ctr")"
    cp -a "$r/." "$mnt/"
    buildah umount "$ctr" >/dev/null
    # debootstrap takes the release's packages: add the point-release and security updates
    buildah run --isolation chroot "$ctr" -- sh -c 'export DEBIAN_FRONTEND=noninteractive;
        apt-get update -q && apt-get upgrade -y -q && apt-get clean && rm -rf /var/lib/apt/lists/*' >&2
    buildah config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "org.opencontainers.image.description=Debian $SUITE minbase from $MIRROR (tools/image/build-image.sh)" \
        --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ctr"
    buildah commit --rm -q "$ctr" "$BASE" >/dev/null
    ctr=""
    rm -rf "$work"
    trap - EXIT
    log "base image $BASE made in $((SECONDS - started)) s"
}

if [ "$NEW_BASE" = 1 ] || ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    make_base
else
    log "base image $BASE exists (--new-base remakes it)"
fi

# pip in the build trusts what this host trusts (a TLS-inspecting proxy's CA, say): the host's CA
# bundle is mounted for the RUN steps only, not copied into the image.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
ca=()
[ ! -r "$HOST_CA" ] || ca=(--volume "$HOST_CA:/run/vfd-build-ca.crt:ro" --build-arg PIP_CERT=/run/vfd-build-ca.crt)
log "building $TAG from $BASE"
started=$SECONDS
iid="$(mktemp "${TMPDIR:-/tmp}/vfd-iid.XXXXXX")"
trap 'rm -f "$iid"' EXIT
buildah bud --isolation chroot --layers --force-rm --build-arg "BASE=$BASE" "${ca[@]}" --iidfile "$iid" \
    -t "$TAG" -f "$ROOT/Containerfile" "$ROOT" >&2
log "$TAG built in $((SECONDS - started)) s"
sed 's/^sha256://' "$iid"; echo
