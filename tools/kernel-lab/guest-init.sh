#!/bin/sh
# /init of the kernel-lab initramfs (busybox). Built into the initramfs by
# setup.sh; driven by files in the "job" 9p share written by run-in-guest:
#   /job/config.sh   LAB_MAXVFS=..., LAB_NSIM_ID=..., LAB_NSIM_PORTS=...
#   /job/rw-shares   lines "<mount_tag> <absolute path>" (writable 9p shares)
#   /job/run.sh      the command wrapper, run in the chroot with /bin/sh
# Results written back into /job: stdout, stderr, rc, init.log.
export PATH=/bin:/sbin

fail() {
    echo "lab-init: FATAL: $*"
    [ -d /job ] && echo "lab-init: FATAL: $*" >> /job/init.log 2>/dev/null
    sync
    poweroff -f
    sleep 5
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for m in /mods/*.ko; do
    case "$m" in */99-netdevsim.ko) continue ;; esac
    insmod "$m" || fail "insmod $m"
done

P9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$P9,cache=none" job /job || fail "mount job share"
exec >>/job/init.log 2>&1
echo "lab-init: kernel $(uname -r), uptime $(cut -d" " -f1 /proc/uptime)"
. /job/config.sh

# Host root, read-only. cache=loose: the host root is not supposed to change
# under a run, and it makes python imports much faster.
mount -t 9p -o "$P9,ro,cache=loose" host /host || fail "mount host root"

H=/host
mount -t proc proc $H/proc || fail "mount proc"
mount -t sysfs sysfs $H/sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs $H/dev || fail "mount devtmpfs"
mkdir -p $H/dev/pts $H/dev/shm 2>/dev/null
mount -t devpts devpts $H/dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs $H/dev/shm
mount -t debugfs debugfs $H/sys/kernel/debug || fail "mount debugfs"
# Writable scratch. NOTE: writable shares are mounted afterwards, so a checkout
# under /tmp is mounted on top of this tmpfs rather than hidden by it.
mount -t tmpfs -o mode=1777 tmpfs $H/tmp || fail "mount tmpfs /tmp"
mount -t tmpfs -o mode=0755 tmpfs $H/run || fail "mount tmpfs /run"
[ -d $H/var/tmp ] && mount -t tmpfs -o mode=1777 tmpfs $H/var/tmp
mkdir -p $H/run/vfd-lab
mount -o bind /job $H/run/vfd-lab || fail "bind job share"

if [ -f /job/rw-shares ]; then
    while read -r tag path; do
        [ -n "$tag" ] || continue
        [ -d "$H$path" ] || mkdir -p "$H$path" 2>/dev/null
        mount -t 9p -o "$P9,cache=mmap" "$tag" "$H$path" || fail "mount $tag at $path"
    done < /job/rw-shares
fi

# Kernel module autoload: /sbin/modprobe of the initramfs chroots into /host.
echo /sbin/modprobe > /proc/sys/kernel/modprobe

insmod /mods/99-netdevsim.ko || fail "insmod netdevsim"
echo "${LAB_NSIM_ID:-1} ${LAB_NSIM_PORTS:-1}" > /sys/bus/netdevsim/new_device || fail "netdevsim new_device"
NSIM_DEV=/sys/bus/netdevsim/devices/netdevsim${LAB_NSIM_ID:-1}
DBG=/sys/kernel/debug/netdevsim/netdevsim${LAB_NSIM_ID:-1}
i=0
while [ ! -d $NSIM_DEV/net ] || [ -z "$(ls $NSIM_DEV/net)" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "netdevsim netdev did not appear"
    sleep 0.05
done
# max_vfs must be raised while there are no VFs.
echo "${LAB_MAXVFS:-8}" > $H$DBG/max_vfs || fail "set max_vfs"
PF=$(ls $NSIM_DEV/net | head -n 1)
ip link set lo up
ip link set "$PF" up
echo "lab-init: netdevsim PF $PF, max_vfs $(cat $H$DBG/max_vfs)"
{
    echo "export VFD_LAB_PF='$PF'"
    echo "export VFD_LAB_NSIM_DEV='$NSIM_DEV'"
    echo "export VFD_LAB_NSIM_DEBUGFS='$DBG'"
} > /job/lab-env.sh

echo "lab-init: running command, uptime $(cut -d" " -f1 /proc/uptime)"
chroot $H /bin/sh /run/vfd-lab/run.sh </dev/null >/job/stdout 2>/job/stderr
rc=$?
echo "lab-init: command exited $rc, uptime $(cut -d" " -f1 /proc/uptime)"
echo $rc > /job/rc.tmp
sync
mv /job/rc.tmp /job/rc
sync
poweroff -f
sleep 5
