#!/usr/bin/env bash
# Fetches the filesystem tools the storage daemon runs (e2fsck, mke2fs,
# fsck.fat, mkfs.fat) for <arch> from Debian's packages, with the shared
# libraries and loader they need, into .cache/fstools/<arch>/root laid out
# as on Debian (sbin/, lib/<triplet>/, the loader where the binaries look
# for it). These are e2fsprogs' and dosfstools' dynamic builds: one copy of
# libext2fs and glibc serves all four (e2fsck-static alone is as big).
#
#   rootfs/fetch-fstools.sh aarch64|x86_64
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"

PKGS=(e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6 dosfstools)
want="${PKGS[*]/%/:$DEB_ARCH}"
CACHE=$CACHE_DIR/fstools/$ARCH
mkdir -p "$CACHE"
cd "$CACHE"
if [[ -f package && $(<package) == "$want" && -x root/sbin/e2fsck ]]; then
    log "fstools for $ARCH already in $CACHE"
    exit 0
fi
rm -rf root unpacked package ./*.deb
# shellcheck disable=SC2086
apt_download $want || die "downloading $want failed"
mkdir unpacked
for deb in ./*.deb; do dpkg -x "$deb" unpacked; done
rm -f ./*.deb

mkdir -p root/sbin root/etc
for b in e2fsck mke2fs fsck.fat mkfs.fat; do
    install -m 0755 "unpacked/sbin/$b" "root/sbin/$b"
done
copy_debian_libs unpacked root libext2fs.so.2 libcom_err.so.2 libblkid.so.1 libuuid.so.1 libe2p.so.2 libc.so.6
install -m 0644 unpacked/etc/mke2fs.conf root/etc/mke2fs.conf
check_needed "root/lib/$GNU_TRIPLET" root/sbin/* "root/lib/$GNU_TRIPLET"/*
rm -rf unpacked
echo "$want" >package
log "fstools for $ARCH ready in $CACHE ($(du -sk root | cut -f1) KiB)"
