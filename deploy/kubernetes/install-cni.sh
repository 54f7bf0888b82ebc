#!/bin/sh
# Init container of the vfd DaemonSet: puts vfd-cni on the node. The plugin is Python, so a Python
# runtime with vfd (the image's python3, its standard library and the venv's site-packages) is
# copied to the node's /opt/vfd/python and a small shim /opt/cni/bin/vfd-cni runs it there. Also
# copies the ConfigMap's vfd.cfg to the node's /etc/vfd.
set -eu
CNI_BIN_DIR="${CNI_BIN_DIR:-/host/opt/cni/bin}"
VFD_HOST_ROOT="${VFD_HOST_ROOT:-/host/opt/vfd}"
HOST_ETC="${HOST_ETC:-/host/etc/vfd}"
VENV="${VENV:-/opt/vfd-image/venv}"

# Debian's python3 has libpython linked in: the interpreter, lib/python3.X and vfd's site directory
# make a prefix that runs with PYTHONHOME set to it.
PY=$(readlink -f "$VENV/bin/python3")
STDLIB=$("$PY" -S -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
SITE=$("$VENV/bin/python3" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')

mkdir -p "$VFD_HOST_ROOT" "$CNI_BIN_DIR" "$HOST_ETC"
rm -rf "$VFD_HOST_ROOT/python.new"
mkdir -p "$VFD_HOST_ROOT/python.new/bin" "$VFD_HOST_ROOT/python.new/lib"
cp "$PY" "$VFD_HOST_ROOT/python.new/bin/python3"
cp -a "$STDLIB" "$VFD_HOST_ROOT/python.new/lib/"
cp -a "$SITE" "$VFD_HOST_ROOT/python.new/lib/vfd-site"
rm -rf "$VFD_HOST_ROOT/python.old"
[ ! -d "$VFD_HOST_ROOT/python" ] || mv "$VFD_HOST_ROOT/python" "$VFD_HOST_ROOT/python.old"
mv "$VFD_HOST_ROOT/python.new" "$VFD_HOST_ROOT/python"
rm -rf "$VFD_HOST_ROOT/python.old"

# The plugin needs only the standard library and vfd: `-S` skips the site module (scanning
# site-packages, running its .pth hooks) and `-P` the cwd; vfd's directory is appended after the
# standard library's, so each stdlib import searches one directory (docs/performance.md).
SITE_DIR=/opt/vfd/python/lib/vfd-site
cat > "$CNI_BIN_DIR/.vfd-cni.new" <<SHIM
#!/bin/sh
# vfd-cni shim installed by the vfd DaemonSet (deploy/kubernetes/install-cni.sh)
R=/opt/vfd/python
PYTHONHOME=\$R PYTHONDONTWRITEBYTECODE=1 exec "\$R/bin/python3" -S -P -c \\
    "import sys; sys.path.append('$SITE_DIR'); from vfd.integrations.cni.main import main; sys.exit(main())" "\$@"
SHIM
chmod 0755 "$CNI_BIN_DIR/.vfd-cni.new"
mv "$CNI_BIN_DIR/.vfd-cni.new" "$CNI_BIN_DIR/vfd-cni"

if [ -f /config/vfd.cfg ]; then
    cp /config/vfd.cfg "$HOST_ETC/.vfd.cfg.new"
    mv "$HOST_ETC/.vfd.cfg.new" "$HOST_ETC/vfd.cfg"
fi
echo "install-cni: vfd-cni installed in $CNI_BIN_DIR, runtime in $VFD_HOST_ROOT/python"
