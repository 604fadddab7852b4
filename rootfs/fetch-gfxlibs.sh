#!/usr/bin/env bash
# Fetches the shared libraries the compositor (render_service) links to and
# runs with, for <arch>, from Debian's packages: pixman (the renderer) and
# xkbcommon (keymaps), with glibc's libc, libm and loader and libgcc_s.
# render_service is the image's one glibc program built here (smithay needs
# these C libraries, and Debian has no musl builds of them; see
# ARCHITECTURE.md). Result, in .cache/gfx/<arch>:
#   root/lib/<triplet>/...   the libraries, as on Debian (copied into the image)
#   root/system/bin/weston-simple-shm   Debian's demo client
#   link/                    lib*.so names the linker takes (-L native=...)
#
#   rootfs/fetch-gfxlibs.sh aarch64|x86_64
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"

# weston brings Debian's stock demo client weston-simple-shm (with
# libwayland-client and libffi): the system test shows it on the screen.
PKGS=(libpixman-1-0 libxkbcommon0 libc6 libgcc-s1 weston libwayland-client0 libffi8)
want="${PKGS[*]/%/:$DEB_ARCH}"
CACHE=$CACHE_DIR/gfx/$ARCH
mkdir -p "$CACHE"
cd "$CACHE"
if [[ -f package && $(<package) == "$want" && -e link/libpixman-1.so ]]; then
    log "graphics libraries for $ARCH already in $CACHE"
    exit 0
fi
rm -rf root link unpacked package ./*.deb
# shellcheck disable=SC2086
apt_download $want || die "downloading $want failed"
mkdir unpacked
for deb in ./*.deb; do dpkg -x "$deb" unpacked; done
rm -f ./*.deb

triplet=$GNU_TRIPLET
mkdir -p "root/lib/$triplet" link
for l in libpixman-1.so.0 libxkbcommon.so.0 libc.so.6 libm.so.6 libgcc_s.so.1 libwayland-client.so.0 libffi.so.8 libpthread.so.0; do
    src=unpacked/lib/$triplet/$l
    [[ -e $src ]] || src=unpacked/usr/lib/$triplet/$l
    [[ -e $src ]] || die "$l is not in $want"
    cp -L "$src" "root/lib/$triplet/$l"
done
# The loader where the programs look for it (the same file as the
# filesystem tools', from the same package).
mkdir -p "root/$(dirname "$GNU_LOADER")"
cp -L "unpacked/lib/$triplet/${GNU_LOADER##*/}" "root/$GNU_LOADER" 2>/dev/null || cp -L "unpacked/$GNU_LOADER" "root/$GNU_LOADER"
mkdir -p root/system/bin
install -m 0755 unpacked/usr/bin/weston-simple-shm root/system/bin/weston-simple-shm
for b in root/system/bin/*; do
    for need in $(objdump -p "$b" | awk '/NEEDED/ {print $2}'); do
        [[ -e root/lib/$triplet/$need || $need == "${GNU_LOADER##*/}" ]] || die "$b needs $need, which is not in the list"
    done
done
ln -s "../root/lib/$triplet/libpixman-1.so.0" link/libpixman-1.so
ln -s "../root/lib/$triplet/libxkbcommon.so.0" link/libxkbcommon.so
rm -rf unpacked
echo "$want" >package
log "graphics libraries for $ARCH ready in $CACHE ($(du -sk root | cut -f1) KiB)"
