#!/usr/bin/env bash
# Boots out/<arch>/ in QEMU (TCG), its serial console on this terminal and
# its screen in a window when there is one to show it in.
#
#   rootfs/qemu.sh aarch64|x86_64 [--print] [extra qemu args...]
#
# --print   print the command (one argument per line) instead of running it;
#           the system test builds its QEMU command from this.
# Environment: ACCORD_APPEND  extra kernel command line (e.g. loglevel=7)
#              ACCORD_MEM     guest memory in MiB (default 512)
#              ACCORD_DATA_IMG  the /data disk (default out/<arch>/data.img)
#              ACCORD_DISPLAY where the screen goes:
#                auto   (default) a window (GTK, else SDL) when this is a
#                       graphical session ($DISPLAY or $WAYLAND_DISPLAY) and
#                       QEMU has such a display (Debian's qemu-system-gui,
#                       which rootfs/setup-host.sh --gui installs); else none
#                window the same, or an error saying what is missing
#                vnc    a VNC server on 127.0.0.1 only, port 5900 +
#                       ${ACCORD_VNC_DISPLAY:-0}
#                none   no screen (the serial console only; tests use this)
#              The serial console stays on this terminal in every case.
# Power off from the shell (`poweroff`) and QEMU exits with status 0.
# A USB controller (id "usb") takes hot-plugged disks: with
# `-qmp unix:/tmp/q.sock,server=on,wait=off` as an extra argument,
#   {"execute":"blockdev-add","arguments":{"node-name":"d1","driver":"raw",
#     "file":{"driver":"file","filename":"disk.img"}}}
#   {"execute":"device_add","arguments":{"driver":"usb-storage","id":"u1","drive":"d1"}}
# plugs one in and {"execute":"device_del","arguments":{"id":"u1"}} pulls it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"
shift
PRINT=0
if [[ ${1:-} == --print ]]; then
    PRINT=1
    shift
fi

for f in vmlinuz initramfs.img; do
    [[ -f $OUT_DIR/$f ]] || die "$OUT_DIR/$f is missing: run make rootfs ARCH=$ARCH"
done
DATA_IMG=${ACCORD_DATA_IMG:-$OUT_DIR/data.img}
[[ -f $DATA_IMG ]] || die "$DATA_IMG is missing: run make rootfs ARCH=$ARCH"

append="panic=-1 quiet ${ACCORD_APPEND:-}"
case "$ARCH" in
    aarch64)
        # virt has no keyboard of its own.
        cmd=(qemu-system-aarch64 -M virt -cpu cortex-a72 -device virtio-keyboard-pci)
        append="console=ttyAMA0 $append"
        ;;
    x86_64)
        # One TCG thread for both vCPUs: with a thread per vCPU (QEMU 7.2's
        # default) about one boot in 20 oopses at ~3.5 s on an int3 in
        # sched_clock_cpu, a vCPU running code the other had just patched
        # (static keys); 0 in 30 boots with one thread (ARCHITECTURE.md).
        # Its keyboard is the PS/2 one (QMP key events go to it, and it can
        # wake a suspended guest; a virtio keyboard would take the keys and
        # cannot).
        cmd=(qemu-system-x86_64 -M q35 -accel tcg,thread=single -vga none)
        append="console=ttyS0 $append"
        ;;
esac
# QEMU's display backends that this build has (GTK and SDL come as modules
# in Debian's qemu-system-gui).
has_display() {
    "${cmd[0]}" -display help 2>/dev/null | grep -qx "$1"
}
window_display() {
    local d
    for d in gtk sdl; do
        if has_display "$d"; then
            echo "$d"
            return 0
        fi
    done
    return 1
}
mode=${ACCORD_DISPLAY:-auto}
case "$mode" in
    auto)
        if [[ -n ${DISPLAY:-}${WAYLAND_DISPLAY:-} ]]; then
            if window_display >/dev/null; then
                mode=window
            else
                [[ $PRINT -eq 1 ]] || log "no QEMU window: this QEMU has no GTK or SDL display (rootfs/setup-host.sh --gui installs qemu-system-gui); serial console only"
                mode=none
            fi
        else
            mode=none
        fi
        ;;
    window | vnc | none) ;;
    *) die "ACCORD_DISPLAY=$mode: expected auto, window, vnc or none" ;;
esac
case "$mode" in
    window)
        backend=$(window_display) || die "ACCORD_DISPLAY=window: this QEMU has no GTK or SDL display (rootfs/setup-host.sh --gui installs qemu-system-gui)"
        [[ -n ${DISPLAY:-}${WAYLAND_DISPLAY:-} ]] || die "ACCORD_DISPLAY=window: no graphical session (\$DISPLAY and \$WAYLAND_DISPLAY are unset); ACCORD_DISPLAY=vnc serves the screen instead"
        screen=(-display "$backend" -serial mon:stdio)
        ;;
    vnc)
        vnc=${ACCORD_VNC_DISPLAY:-0}
        [[ $vnc =~ ^[0-9]{1,2}$ ]] || die "ACCORD_VNC_DISPLAY=$vnc: expected a display number, 0 to 99"
        screen=(-display none -vnc "127.0.0.1:$vnc" -serial mon:stdio)
        [[ $PRINT -eq 1 ]] || log "the screen: VNC on 127.0.0.1:$((5900 + 10#$vnc)) (loopback only)"
        ;;
    none)
        screen=(-nographic)
        ;;
esac

cmd+=(
    -smp 2 -m "${ACCORD_MEM:-512}"
    "${screen[@]}" -no-reboot
    -kernel "$OUT_DIR/vmlinuz"
    -initrd "$OUT_DIR/initramfs.img"
    -append "$append"
    -drive "if=none,id=data,format=raw,file=$DATA_IMG"
    -device virtio-blk-pci,drive=data
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0
    -device virtio-rng-pci
    -device virtio-gpu-pci -device virtio-tablet-pci
    -device qemu-xhci,id=usb
    "$@"
)
if [[ $PRINT -eq 1 ]]; then
    printf '%s\n' "${cmd[@]}"
    exit 0
fi
log "booting $ARCH (TCG; poweroff in the guest exits; Ctrl-A X kills QEMU)"
exec "${cmd[@]}"
