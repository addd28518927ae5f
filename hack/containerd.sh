#!/usr/bin/env bash
# Starts or stops a private containerd (Debian's package): its own root, state and
# socket under DIR, the CRI plugin on, snapshotter "native", registries on 127.0.0.1
# reached over plain HTTP.
#   hack/containerd.sh start DIR   -> prints the socket path once it answers
#   hack/containerd.sh stop DIR
# IMAGESHIM_SANDBOX_IMAGE sets the pod sandbox ("pause") image (tests push their own
# to a 127.0.0.1 registry; the default needs the internet).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cmd=${1:?start|stop}; dir=${2:?DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

case "$cmd" in
start)
  ensure_pkg containerd containerd
  mkdir -p "$dir/root" "$dir/state" "$dir/certs.d"
  cat > "$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "${IMAGESHIM_SANDBOX_IMAGE:-registry.k8s.io/pause:3.6}"
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
  # Any 127.0.0.1:PORT registry is plain HTTP; hosts.toml per registry is written by
  # hack/registry.sh into IMAGESHIM_CERTS_D when set, or by the tests.
  containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
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
  # containerd leaves mounts of the native snapshotter alone; nothing to unmount.
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
