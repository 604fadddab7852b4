#!/usr/bin/env bash
# Fetches the shared libraries the compositor (render_service) links to and
# runs with, for <arch>, from Debian's packages: pixman (the renderer) and
# xkbcommon (keymaps), with glibc's libc, libm and loader and libgcc_s.
# render_service is the image's one glibc program built here (smithay needs
# these C libraries, and Debian has no musl builds of them; see
# ARCHITECTURE.md). Result, in .cache/gfx/<arch>:
#   root/lib/<triplet>/...   the libraries, as on Debian (copied into the image)
#   root/system/bin/weston-simple-shm   Debian's demo client
#   root/usr/share/X11/xkb/  XKB data: the keymaps (keycodes, types, compat,
#                            symbols, the evdev rules) render_service compiles
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
# Keymaps for every layout (architecture-independent). The geometry and the
# rules' XML registry are for configuration tools, not for xkbcommon.
want="$want xkb-data"
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

copy_debian_libs unpacked root libpixman-1.so.0 libxkbcommon.so.0 libc.so.6 libm.so.6 libgcc_s.so.1 libwayland-client.so.0 libffi.so.8 libpthread.so.0
mkdir -p root/system/bin link
install -m 0755 unpacked/usr/bin/weston-simple-shm root/system/bin/weston-simple-shm
check_needed "root/lib/$GNU_TRIPLET" root/system/bin/*
mkdir -p root/usr/share/X11/xkb/rules
cp -a unpacked/usr/share/X11/xkb/{compat,keycodes,types,symbols} root/usr/share/X11/xkb/
cp -a unpacked/usr/share/X11/xkb/rules/evdev root/usr/share/X11/xkb/rules/
[[ -s root/usr/share/X11/xkb/symbols/us ]] || die "xkb-data has no symbols/us"
ln -s "../root/lib/$GNU_TRIPLET/libpixman-1.so.0" link/libpixman-1.so
ln -s "../root/lib/$GNU_TRIPLET/libxkbcommon.so.0" link/libxkbcommon.so
rm -rf unpacked
echo "$want" >package
log "graphics libraries for $ARCH ready in $CACHE ($(du -sk root | cut -f1) KiB)"
