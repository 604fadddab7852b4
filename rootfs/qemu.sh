#!/usr/bin/env bash
# Boots out/<arch>/ in QEMU (TCG) on the serial console of this terminal.
#
#   rootfs/qemu.sh aarch64|x86_64 [--print] [extra qemu args...]
#
# --print   print the command (one argument per line) instead of running it;
#           the system test builds its QEMU command from this.
# Environment: ACCORD_APPEND  extra kernel command line (e.g. loglevel=7)
#              ACCORD_MEM     guest memory in MiB (default 512)
#              ACCORD_DATA_IMG  the /data disk (default out/<arch>/data.img)
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
cmd+=(
    -smp 2 -m "${ACCORD_MEM:-512}"
    -nographic -no-reboot
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
