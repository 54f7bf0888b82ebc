#!/usr/bin/env bash
# Build the Debian package (dpkg-buildpackage -b with debian/) from a copy of the work tree, so the
# tree itself gets no build litter. Usage: build-deb.sh [OUTDIR]   (default: <repo>/dist)
# Needs the packages tools/packaging/setup.sh installs, and PyPI for the bundled wheels.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="$(mkdir -p "${1:-$REPO/dist}" && cd "${1:-$REPO/dist}" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vfd-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Tracked and new (not ignored) files: what a commit of the tree would hold.
mkdir "$WORK/vfd"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
   | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
   | tar --null -T - -cf -) | tar -C "$WORK/vfd" -xf -

# Debian's own Python and tools only: no pyenv shims, virtualenvs or PYTHON* settings leak in.
(cd "$WORK/vfd" && env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME PATH=/usr/sbin:/usr/bin:/sbin:/bin \
   dpkg-buildpackage -b -us -uc) >&2
for f in "$WORK"/*.deb "$WORK"/*.buildinfo "$WORK"/*.changes; do
    [ -e "$f" ] && cp "$f" "$OUT/"
done
ls "$OUT"/vfd_*.deb
