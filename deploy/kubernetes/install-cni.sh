#!/bin/sh
# Init container of the vfd DaemonSet: puts vfd-cni on the node. The plugin is one static binary (no
# runtime on the node): it hands each CNI command to the vfd daemon's socket /run/vfd/cni.sock, and the
# daemon executes it (docs/kubernetes.md). Also copies the ConfigMap's vfd.cfg to the node's /etc/vfd.
set -eu
CNI_BIN_DIR="${CNI_BIN_DIR:-/host/opt/cni/bin}"
HOST_ETC="${HOST_ETC:-/host/etc/vfd}"
SRC="${SRC:-/opt/vfd-image/vfd-cni}"

mkdir -p "$CNI_BIN_DIR" "$HOST_ETC"
# copied beside and renamed over: a runtime running vfd-cni meanwhile sees the old or the new binary
cp "$SRC" "$CNI_BIN_DIR/.vfd-cni.new"
chmod 0755 "$CNI_BIN_DIR/.vfd-cni.new"
mv "$CNI_BIN_DIR/.vfd-cni.new" "$CNI_BIN_DIR/vfd-cni"

if [ -f /config/vfd.cfg ]; then
    cp /config/vfd.cfg "$HOST_ETC/.vfd.cfg.new"
    mv "$HOST_ETC/.vfd.cfg.new" "$HOST_ETC/vfd.cfg"
fi
echo "install-cni: vfd-cni installed in $CNI_BIN_DIR"
