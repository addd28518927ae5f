#!/usr/bin/env bash
# Starts or stops a private containerd: its own root, state and socket under DIR, the CRI
# plugin on, registries on 127.0.0.1 reached over plain HTTP (certs.d under DIR).
#   hack/containerd.sh start DIR [1.6|2]  -> prints the socket path once it answers
#   hack/containerd.sh stop DIR
# 1.6 (default): Debian's containerd, config version 2, snapshotter "native".
# 2: containerd 2.x from hack/go-tools.sh, config version 3, two runtime handlers:
#    runc (the default, snapshotter overlayfs) and runc-native (snapshotter native),
#    the second defined in conf.d/ through `imports`, both in the transfer service's
#    unpack_config.
# IMAGESHIM_SANDBOX_IMAGE sets the pod sandbox ("pause") image (tests push their own
# to a 127.0.0.1 registry; the default needs the internet).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cmd=${1:?start|stop}; dir=${2:?DIR}; flavor=${3:-1.6}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
sandbox=${IMAGESHIM_SANDBOX_IMAGE:-registry.k8s.io/pause:3.10}

# What every version says alike: where its state and sockets are.
config_common() {
  cat <<TOML
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  level = "info"
TOML
}

config_v2() {
  echo "version = 2"
  config_common
  cat <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "$sandbox"
  enable_cdi = false
  # Sandboxed CI machines may not lower oom_score_adj (no CAP_SYS_RESOURCE): pods get
  # containerd's own score as their floor, as in rootless setups.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni/bin"
    conf_dir = "$dir/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
TOML
}

config_v3() {
  printf 'version = 3\nimports = ["conf.d/*.toml"]\n'
  config_common
  cat <<TOML
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$sandbox"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$dir/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$dir/cni/bin"]
    conf_dir = "$dir/cni/conf"
[plugins.'io.containerd.transfer.v1.local']
  unpack_config = [
    { platform = "linux/amd64", snapshotter = "overlayfs" },
    { platform = "linux/amd64", snapshotter = "native" },
  ]
TOML
}

# The second handler, as a distribution's conf.d drop-in would add it.
dropin_runc_native() {
  cat <<TOML
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc-native]
  runtime_type = "io.containerd.runc.v2"
  snapshotter = "native"
TOML
}

case "$cmd" in
start)
  mkdir -p "$dir/root" "$dir/state" "$dir/certs.d"
  case "$flavor" in
  1.6)
    ensure_pkg containerd containerd
    # Debian's, whatever else is on PATH (a containerd 2.x in ~/go/bin, say) — and its
    # own runc shim: containerd finds shims on PATH, and 2.x's refuses to start under 1.6.
    binary=/usr/bin/containerd
    export PATH="/usr/bin:$PATH"
    config_v2 > "$dir/config.toml"
    ;;
  2)
    ensure_pkg runc runc
    bin=$("$here/go-tools.sh" containerd)
    export PATH="$bin:$PATH"
    binary="$bin/containerd"
    mkdir -p "$dir/conf.d"
    config_v3 > "$dir/config.toml"
    dropin_runc_native > "$dir/conf.d/10-runc-native.toml"
    ;;
  *) echo "unknown containerd flavor $flavor (1.6 or 2)" >&2; exit 2 ;;
  esac
  echo "$flavor" > "$dir/flavor"
  "$binary" --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  if ! wait_for 300 test -S "$dir/containerd.sock"; then
    echo "containerd did not start; log:" >&2; tail -30 "$dir/containerd.log" >&2; exit 1
  fi
  # Give the CRI plugin a moment to register its services.
  wait_for 100 grep -q "containerd successfully booted" "$dir/containerd.log" || true
  echo "$dir/containerd.sock"
  ;;
stop)
  stop_pidfile "$dir/containerd.pid"
  # overlayfs snapshots and pod mounts of containerd 2.x stay mounted after it stops.
  unmount_below "$dir"
  ;;
*) echo "usage: $0 start|stop DIR [1.6|2]" >&2; exit 2 ;;
esac
