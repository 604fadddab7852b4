#!/usr/bin/env bash
# Builds the bootable image for <arch> under out/<arch>/:
#   root/           the staged root tree
#   initramfs.img   root/ as a cpio newc archive, compressed
#   vmlinuz         the kernel (arm64: Debian's uncompressed Image)
#   data.img        the /data disk (ext4, 256 MiB sparse); kept across builds
#
#   rootfs/mkrootfs.sh aarch64|x86_64 [overlay_dir]
#
# Needs fetch-kernel.sh, fetch-busybox.sh and fetch-fstools.sh to have run
# (make rootfs does).
# Environment:
#   ACCORD_BIN_DIR=<dir>   take init, begetctl, sa_main and systemui (and
#                          render_service when it is there) from <dir>
#                          instead of building them with cargo
#   ACCORD_INITRD_COMPRESS=gzip|zstd   initramfs compression (default gzip)
#   SOURCE_DATE_EPOCH      mtime of every file in the archive (default 0)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"
OVERLAY=${2:-}
COMPRESS=${ACCORD_INITRD_COMPRESS:-gzip}
EPOCH=${SOURCE_DATE_EPOCH:-0}

[[ -z $OVERLAY || -d $OVERLAY ]] || die "overlay '$OVERLAY' is not a directory"
[[ -z $OVERLAY ]] || OVERLAY=$(realpath "$OVERLAY")
[[ -f $KERNEL_CACHE/release ]] || die "no kernel in $KERNEL_CACHE: run rootfs/fetch-kernel.sh $ARCH"
[[ -x $BUSYBOX_CACHE/root/bin/busybox ]] || die "no busybox in $BUSYBOX_CACHE: run rootfs/fetch-busybox.sh $ARCH"
FSTOOLS=$CACHE_DIR/fstools/$ARCH/root
[[ -x $FSTOOLS/sbin/e2fsck ]] || die "no filesystem tools in $FSTOOLS: run rootfs/fetch-fstools.sh $ARCH"
command -v busybox >/dev/null || die "the host has no busybox (package busybox-static): run rootfs/setup-host.sh"
KVER=$(<"$KERNEL_CACHE/release")
KROOT=$KERNEL_CACHE/root
START=$(date +%s.%N)

# --- our binaries ---------------------------------------------------------
if [[ -n ${ACCORD_BIN_DIR:-} ]]; then
    BIN_DIR=$ACCORD_BIN_DIR
    log "taking the binaries from $BIN_DIR (ACCORD_BIN_DIR)"
else
    # The `image` profile: release, optimised for size (Cargo.toml).
    log "cargo build --profile image --target $RUST_TARGET -p accord-init -p accord-begetctl -p accord-sa-main -p accord-systemui"
    (cd "$REPO" && cargo build --profile image --target "$RUST_TARGET" -p accord-init -p accord-begetctl -p accord-sa-main -p accord-systemui </dev/null)
    BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/$RUST_TARGET/image
fi
for b in init begetctl sa_main systemui; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing"
done

# The compositor links pixman and xkbcommon (C): built for glibc against
# Debian's libraries from fetch-gfxlibs.sh, which go into the image with it.
"$REPO/rootfs/fetch-gfxlibs.sh" "$ARCH"
GFX=$CACHE_DIR/gfx/$ARCH
if [[ -n ${ACCORD_BIN_DIR:-} && -x $ACCORD_BIN_DIR/render_service ]]; then
    GFX_BIN=$ACCORD_BIN_DIR/render_service
else
    log "cargo build --profile image --target $GNU_TARGET -p accord-compositor"
    linker_var=CARGO_TARGET_$(echo "$GNU_TARGET" | tr 'a-z-' 'A-Z_')_LINKER
    flags_var=CARGO_TARGET_$(echo "$GNU_TARGET" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
    (cd "$REPO" && env "$linker_var=$GNU_LINKER" "$flags_var=-L native=$GFX/link" \
        cargo build --profile image --target "$GNU_TARGET" -p accord-compositor </dev/null)
    GFX_BIN=${CARGO_TARGET_DIR:-$REPO/target}/$GNU_TARGET/image/render_service
fi
[[ -x $GFX_BIN ]] || die "$GFX_BIN is missing"
check_needed "$GFX/root/lib/$GNU_TRIPLET" "$GFX_BIN"

# --- the root tree ----------------------------------------------------------
ROOT=$OUT_DIR/root
log "staging $ROOT"
rm -rf "$ROOT"
mkdir -p "$ROOT"
cd "$ROOT"

for d in bin sbin system/bin etc/init etc/param etc/modules-load.d lib/modules \
         proc sys dev run tmp data mnt system vendor root; do
    mkdir -p "$d"
done
chmod 1777 tmp
chmod 0700 root

install -m 0755 "$BIN_DIR/init" init
ln -s /init sbin/init
# ueventd (device nodes' owners and modes) is init run under that name.
ln -s /init system/bin/ueventd
install -m 0755 "$BIN_DIR/begetctl" bin/begetctl
ln -s begetctl bin/param
install -m 0755 "$BUSYBOX_CACHE/root/bin/busybox" bin/busybox
# One binary is sa_main, samgr, hidumper, kv, the log daemon and the rest
# (argv[0] picks): their processes share its pages.
install -m 0755 "$BIN_DIR/sa_main" system/bin/sa_main
for b in samgr hidumper kv storage storage_daemon power-shell snapshot_display hilogd hilog; do
    ln -s sa_main "system/bin/$b"
done

# The storage daemon's filesystem tools (Debian's e2fsprogs and dosfstools
# with their libraries and loader, in Debian's layout); the usual aliases.
cp -a "$FSTOOLS/." .
ln -s mke2fs sbin/mkfs.ext4
ln -s e2fsck sbin/fsck.ext4
ln -s mkfs.fat sbin/mkfs.vfat
ln -s fsck.fat sbin/fsck.vfat

# The compositor and its libraries (glibc's are the filesystem tools' too).
cp -a "$GFX/root/." .
install -m 0755 "$GFX_BIN" system/bin/render_service
# The system UI (a static Wayland client) and its font, where OpenHarmony
# keeps fonts; DejaVu's licence beside it.
install -m 0755 "$BIN_DIR/systemui" system/bin/systemui
# The same binary is the boot animation and the terminal and settings
# apps (argv[0] picks); the terminal's monospaced font is next.
for b in bootanimation terminal settings; do
    ln -s systemui "system/bin/$b"
done
mkdir -p system/fonts
for f in DejaVuSans DejaVuSansMono; do
    FONT=/usr/share/fonts/truetype/dejavu/$f.ttf
    [[ -f $FONT ]] || die "no $FONT (package fonts-dejavu-core): run rootfs/setup-host.sh"
    install -m 0644 "$FONT" "system/fonts/$f.ttf"
done
FONT_LICENSE=/usr/share/doc/fonts-dejavu-core/copyright
if [[ -f $FONT_LICENSE ]]; then
    install -m 0644 "$FONT_LICENSE" system/fonts/DejaVuSans.LICENSE
else
    # Hosts that leave /usr/share/doc out of packages (minimal images).
    log "warning: no $FONT_LICENSE on this host: the font's licence is not copied into the image"
fi

# The repo's files, verbatim; then the board's (rootfs/boards/<arch>: what
# only that machine needs, e.g. its vendor init cfg).
cp -a "$REPO/rootfs/files/." .
if [[ -d $REPO/rootfs/boards/$ARCH ]]; then
    cp -a "$REPO/rootfs/boards/$ARCH/." .
fi

# busybox applets as symlinks in /bin and /sbin (usr/ folded in), never over
# a file of ours. The list comes from the host's busybox-static, the same
# Debian version as the target's.
applets=0
while read -r path; do
    name=${path##*/}
    case "$name" in init | linuxrc) continue ;; esac
    case "$path" in
        sbin/* | usr/sbin/*) link=sbin/$name ;;
        *) link=bin/$name ;;
    esac
    if [[ ! -e $link && ! -L $link ]]; then
        ln -s /bin/busybox "$link"
        applets=$((applets + 1))
    fi
done < <(busybox --list-full)
log "busybox: $applets applet links"

# The console node, so the kernel hands /init a console on fds 0-2 (creating
# it needs root; without it init opens /dev/console itself after devtmpfs).
if [[ $(id -u) -eq 0 ]]; then
    mknod -m 0600 dev/console c 5 1
else
    log "note: not root, /dev/console is not in the image (init opens it after mounting devtmpfs)"
fi

# --- kernel modules ---------------------------------------------------------
# The listed modules and everything they depend on (modules.dep holds the
# whole closure), at their paths; then a modules.dep for just those.
canon() { echo "${1//-/_}"; }
declare -A dep_of file_of
while IFS= read -r line; do
    file=${line%%:*}
    base=${file##*/}
    name=$(canon "${base%%.ko*}")
    file_of[$name]=$file
    dep_of[$name]=${line#*:}
done <"$KROOT/lib/modules/$KVER/modules.dep"

MDIR=lib/modules/$KVER
mkdir -p "$MDIR"
declare -A copied
section=modules
index=10
listed=0
conf=""
while read -r mod; do
    mod=${mod%%#*}
    mod=$(echo $mod)   # trim
    [[ -z $mod ]] && continue
    if [[ $mod =~ ^\[([a-z0-9_-]+)\]$ ]]; then
        section=${BASH_REMATCH[1]}
        conf=""
        continue
    fi
    key=$(canon "$mod")
    if [[ -z ${file_of[$key]:-} ]]; then
        if grep -q "/$key.ko\|/${mod}.ko" "$KROOT/$MDIR/modules.builtin" 2>/dev/null; then
            log "note: module $mod is built into $KVER; not loading it"
        else
            log "note: module $mod is not in $KVER's modules.dep; dropped"
        fi
        continue
    fi
    if [[ -z $conf ]]; then
        conf=etc/modules-load.d/$index-$section.conf
        index=$((index + 10))
        echo "# Generated by rootfs/mkrootfs.sh from rootfs/modules/$ARCH.list [$section]: loaded in this order." >"$conf"
    fi
    echo "$mod" >>"$conf"
    listed=$((listed + 1))
    for f in ${file_of[$key]} ${dep_of[$key]}; do
        [[ -n ${copied[$f]:-} ]] && continue
        mkdir -p "$MDIR/$(dirname "$f")"
        cp "$KROOT/$MDIR/$f" "$MDIR/$f"
        copied[$f]=1
    done
done <"$REPO/rootfs/modules/$ARCH.list"
# Store modules uncompressed: the initramfs is compressed as a whole, and the
# kernel's per-module xz decompression is the slowest part of loading under
# TCG (the ext4 chain took 0.6 s compressed).
if [[ ${ACCORD_MODULES_XZ:-0} != 1 ]]; then
    find "$MDIR" -name '*.ko.xz' -exec xz -d {} +
fi
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [[ -f $KROOT/$MDIR/$f ]] && cp "$KROOT/$MDIR/$f" "$MDIR/$f"
done
depmod -b . "$KVER"
log "modules: $listed listed in $(ls etc/modules-load.d | wc -l) load groups, ${#copied[@]} files with dependencies"

# --- overlay ----------------------------------------------------------------
if [[ -n $OVERLAY ]]; then
    log "laying overlay $OVERLAY on top"
    cp -a "$OVERLAY/." .
fi

# --- initramfs --------------------------------------------------------------
case "$COMPRESS" in
    gzip) compress=(gzip -9 -n) ;;
    zstd) compress=(zstd -q -19 -T0 --stdout) ;;
    *) die "ACCORD_INITRD_COMPRESS must be gzip or zstd, not '$COMPRESS'" ;;
esac
find . -exec touch -h -d "@$EPOCH" {} +
IMG=$OUT_DIR/initramfs.img
find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio --quiet -o -H newc --owner=0:0 --reproducible |
    "${compress[@]}" >"$IMG.tmp"
mv "$IMG.tmp" "$IMG"
log "initramfs: $IMG ($COMPRESS, $(du -k --apparent-size "$IMG" | cut -f1) KiB; tree $(du -sk --apparent-size . | cut -f1) KiB)"

# --- kernel -----------------------------------------------------------------
# Debian's arm64 vmlinuz is the uncompressed Image, which QEMU's -kernel
# takes as is; the amd64 one is a bzImage.
if ! cmp -s "$KROOT/boot/vmlinuz-$KVER" "$OUT_DIR/vmlinuz"; then
    cp "$KROOT/boot/vmlinuz-$KVER" "$OUT_DIR/vmlinuz"
fi
echo "$KVER" >"$OUT_DIR/kernel-release"

# --- data disk --------------------------------------------------------------
"$REPO/rootfs/mkdata.sh" "$ARCH"

log "done in $(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s: $OUT_DIR"
