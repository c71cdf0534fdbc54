#!/usr/bin/env bash
# Appliance boot test: boot a Debian kernel under QEMU's `virt` board
# (aarch64: linux-image-cloud-arm64 on qemu-system-aarch64, Cortex-A53;
# armv7: linux-image-armmp on qemu-system-arm, Cortex-A15; 128 MiB each) with
# an initramfs whose /init starts `pbx-certd serve` (board/qemu-virt
# settings), then check from the host, through QEMU's user-mode network
# (hostfwd), that the right certificate comes back for two SNI names, and
# report the daemon's in-guest VmRSS.
#
# The store is prepared before boot with the same ARM binary's CLI (run by
# qemu-user), like a factory image would be.
#
# Usage: [BOOT_STORE=DIR] scripts/qemu-boot.sh [aarch64|armv7]
# Needs: root for apt (installs qemu-system-arm, qemu-user, openssl, cpio).
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-aarch64}"
# Per board: Rust target, Debian arch and kernel metapackage, QEMU, and the
# virtio-net modules in load order (what the kernel does not build in).
case "$arch" in
    aarch64)
        triple=aarch64-unknown-linux-musl; debarch=arm64; kmeta=linux-image-cloud-arm64
        qemu_sys=qemu-system-aarch64; cpu=cortex-a53; qemu_user=qemu-aarch64
        mods="drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_mmio.ko net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko" ;;
    armv7)
        # Debian's armmp kernel (multiplatform ARMv7) boots on -M virt; virtio core is built in.
        triple=armv7-unknown-linux-musleabihf; debarch=armhf; kmeta=linux-image-armmp
        qemu_sys=qemu-system-arm; cpu=cortex-a15; qemu_user=qemu-arm
        mods="drivers/virtio/virtio_mmio.ko net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko" ;;
    *) echo "usage: scripts/qemu-boot.sh [aarch64|armv7]" >&2; exit 2 ;;
esac
bin="target/$triple/release/pbx-certd"
cache="target/qemu-boot/$arch"    # downloaded kernel and busybox (rebuilt if removed)
work="$(mktemp -d)"
qemu_pid=""
cleanup() { [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A Debian mirror mid-sync answers some index with the wrong size (apt exit
# 100): try again, then go on with the lists that did arrive.
apt_update() {
    local i
    for i in 1 2 3; do
        apt-get update -qq && return 0
        echo "qemu-boot.sh: apt-get update failed (try $i of 3)" >&2
        sleep 10
    done
    echo "qemu-boot.sh: apt-get update kept failing; using the package lists there are" >&2
}

need=()
command -v "$qemu_sys" >/dev/null || need+=(qemu-system-arm)
command -v "$qemu_user" >/dev/null || need+=(qemu-user)
command -v openssl >/dev/null || need+=(openssl)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x "$bin" ] || scripts/build-arm.sh "$arch"

# 1. Kernel and busybox from Debian's arm64 archive (apt-get download).
mkdir -p "$cache"
if [ ! -f "$cache/vmlinuz" ] || [ ! -f "$cache/busybox" ]; then
    dpkg --print-foreign-architectures | grep -qx "$debarch" || { dpkg --add-architecture "$debarch"; apt_update; }
    kpkg=$(apt-cache depends "$kmeta:$debarch" | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$kpkg" ] || { echo "qemu-boot.sh: no $kmeta:$debarch in apt" >&2; exit 1; }
    (cd "$work" && apt-get download "$kpkg" "busybox-static:$debarch" 2>/dev/null)
    mkdir -p "$work/deb"
    for d in "$work"/*.deb; do dpkg-deb -x "$d" "$work/deb"; done
    cp "$work"/deb/boot/vmlinuz-* "$cache/vmlinuz"
    cp "$work/deb/bin/busybox" "$cache/busybox"
    rm -rf "$cache/modules"; mkdir -p "$cache/modules"
    # virtio-net over virtio-mmio, in load order (no depmod in the initramfs).
    for m in $mods; do
        cp "$work"/deb/lib/modules/*/kernel/"$m" "$cache/modules/"
    done
    rm -rf "$work/deb" "$work"/*.deb
fi

# 2. Certificates and the store, made with the aarch64 binary under qemu-user.
pki="$work/pki"; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=Boot Test Root" -addext basicConstraints=critical,CA:true \
    -keyout "$pki/root.key" -out "$pki/root.pem" 2>/dev/null
leaf() { # name
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/root.pem" -CAkey "$pki/root.key" -days 30 \
        -extfile <(printf "subjectAltName=DNS:%s\nbasicConstraints=CA:false" "$1") -out "$pki/$1.pem" 2>/dev/null
}
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc/pbx-certd,etc/default,lib/modules,usr/bin,var/lib}
store="$root/var/lib/pbx-certd"
cli() { "$qemu_user" "$bin" --data-dir "$store" "$@"; }
# BOOT_STORE=DIR starts from a populated store (e.g. FOOTPRINT_STORE of
# scripts/footprint.sh, 1000 tenant certificates) to measure the in-guest RSS.
if [ -n "${BOOT_STORE:-}" ]; then
    mkdir -p "$store"; cp -a "$BOOT_STORE"/. "$store"/
fi
cli import --cert "$pki/root.pem" >/dev/null
for t in one two; do
    leaf "pbx.$t.test"
    cli tenant add "$t" --dns "pbx.$t.test" >/dev/null
    cli import --cert "$pki/pbx.$t.test.pem" --key "$pki/pbx.$t.test.key" >/dev/null
done
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }

# 3. The initramfs.
cp "$bin" "$root/usr/bin/pbx-certd"
cp "$cache/busybox" "$root/bin/busybox"
cp "$cache"/modules/*.ko "$root/lib/modules/"
cp board/qemu-virt/pbx-certd.conf "$root/etc/pbx-certd/pbx-certd.conf"
cp board/qemu-virt/default "$root/etc/default/pbx-certd"
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
# No depmod here: load in passes until every module is in (dependencies first).
mods=$(cd /lib/modules && ls *.ko | sed 's/[.]ko$//')
for pass in 1 2 3 4 5 6; do
    for m in $mods; do
        grep -q "^$m " /proc/modules || insmod /lib/modules/$m.ko 2>/dev/null
    done
done
for m in $mods; do
    grep -q "^$m " /proc/modules || echo "boot: module $m did not load"
done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
. /etc/default/pbx-certd
export PBX_CERTD_DATA_DIR PBX_CERTD_CACHE_BYTES PBX_CERTD_LOG
/usr/bin/pbx-certd --version
/usr/bin/pbx-certd serve --config /etc/pbx-certd/pbx-certd.conf &
pid=$!
while :; do
    sleep 5
    echo "boot: pbx-certd $(grep VmRSS /proc/$pid/status)"
    echo "boot: pbx-certd detail:" $(grep -E 'RssAnon|RssFile|VmHWM|Threads' /proc/$pid/status)
done
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initrd.gz"

# 4. Boot.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
console="$work/console.log"
"$qemu_sys" -M virt -cpu "$cpu" -m 128 -nographic -no-reboot \
    -kernel "$cache/vmlinuz" -initrd "$work/initrd.gz" -append "console=ttyAMA0 panic=-1 quiet" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:443" -device virtio-net-device,netdev=n0 \
    </dev/null >"$console" 2>&1 &
qemu_pid=$!
for _ in $(seq 1 600); do
    grep -q "ready:" "$console" && break
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 0.5
done
if ! grep -q "ready:" "$console"; then
    echo "qemu-boot.sh: pbx-certd did not become ready in the guest; console:" >&2
    tail -40 "$console" >&2
    exit 1
fi
grep -E "pbx-certd [0-9]|ready:" "$console"

# 5. The right certificate per SNI, seen from the host.
status=0
for t in one two; do
    got=$(openssl s_client -connect "127.0.0.1:$port" -servername "pbx.$t.test" </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2 || true)
    want=$(fp "$pki/pbx.$t.test.pem")
    if [ "$got" = "$want" ]; then
        echo "qemu-boot: SNI pbx.$t.test -> its tenant's certificate (ok)"
    else
        echo "qemu-boot: SNI pbx.$t.test -> WRONG certificate ($got, want $want)" >&2
        (openssl s_client -connect "127.0.0.1:$port" -servername "pbx.$t.test" </dev/null 2>&1 || true) | head -30 >&2
        status=1
    fi
done

# 6. Memory, as the guest sees it.
# (The guest prints VmRSS, then the detail line: wait for the second.)
for _ in $(seq 1 30); do grep -q "boot: pbx-certd detail:" "$console" && break; sleep 1; done
rss=$(grep "boot: pbx-certd VmRSS" "$console" | tail -1 | sed 's/.*VmRSS://')
echo "qemu-boot: pbx-certd in-guest VmRSS:${rss:- not reported}"
{ grep "boot: pbx-certd detail:" "$console" || true; } | tail -1 | sed 's/^boot:/qemu-boot:/'
[ -n "$rss" ] || status=1
[ $status = 0 ] || { echo "--- guest console ---" >&2; grep -v "VmRSS" "$console" | tail -30 >&2; }
exit $status
