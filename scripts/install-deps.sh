#!/usr/bin/env bash
# Installs everything dpsw needs to build, test and run on Debian 12, as root.
# Idempotent: skips apt when every package is already there.
set -euo pipefail

PKGS=(
  meson ninja-build pkg-config g++ clang llvm
  libbpf-dev libxdp-dev xdp-tools bpftool
  libdpdk-dev dpdk dpdk-dev
  libyaml-cpp-dev libnl-3-dev libnl-route-3-dev
  libboost-program-options-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  linux-libc-dev iproute2 iputils-ping iperf3 sockperf tcpdump ethtool procps python3 util-linux
  python3-matplotlib python3-yaml iptables libmicrohttpd-dev
  podman runc containernetworking-plugins busybox-static uidmap docker.io
  bind9-dnsutils dnsmasq-base dnsperf knot-dnsutils
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# bpffs: libbpf/libxdp expect it for pinning; harmless when already mounted.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "install-deps: note: could not mount bpffs at /sys/fs/bpf"
fi

# Hugepages: only DPDK ports (vhost-user, ethdev) need them; reserve a small pool if none.
if [[ "${DPSW_HUGEPAGES:-1}" != 0 ]]; then
  hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
  if [[ -w $hp ]] && (($(cat $hp) < 256)); then
    echo 256 > "$hp" || true
  fi
  mountpoint -q /dev/hugepages || { mkdir -p /dev/hugepages; mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true; }
fi

# AF_XDP UMEMs are locked memory.
ulimit -l unlimited 2>/dev/null || true
