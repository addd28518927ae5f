#!/usr/bin/env bash
# Starts or stops a private CRI-O 1.36 (from hack/go-tools.sh): its own root, runroot,
# socket, logs and namespaces under DIR, storage driver vfs, Debian's runc and conmon,
# crio.conf plus a crio.conf.d drop-in (the runtime handlers runc, the default, and
# runc-b), and plain-HTTP access to the 127.0.0.1 registries named in
# IMAGESHIM_PLAIN_HTTP_REGISTRIES (space-separated host:port).
#   hack/crio.sh start DIR   -> prints the socket path once it answers
#   hack/crio.sh stop DIR
# IMAGESHIM_SANDBOX_IMAGE sets the pod sandbox ("pause") image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cmd=${1:?start|stop}; dir=${2:?DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

write_config() {
  local bin=$1
  mkdir -p "$dir/crio.conf.d" "$dir/cni/conf" "$dir/cni/bin" "$dir/logs"
  cat > "$dir/crio.conf" <<TOML
[crio]
root = "$dir/root"
runroot = "$dir/runroot"
storage_driver = "vfs"
log_dir = "$dir/logs"
version_file = "$dir/version"
version_file_persist = "$dir/version-persist"
clean_shutdown_file = "$dir/clean.shutdown"
[crio.api]
listen = "$dir/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
pinns_path = "$bin/pinns"
namespaces_dir = "$dir/ns"
container_exits_dir = "$dir/exits"
container_attach_socket_dir = "$dir/attach"
hooks_dir = []
# No iptables/nftables in a test sandbox; pods here use the host network.
disable_hostport_mapping = true
[crio.runtime.runtimes.runc]
runtime_path = "$(command -v runc)"
runtime_root = "$dir/runc"
monitor_path = "$(command -v conmon)"
[crio.image]
signature_policy = "$dir/policy.json"
# Tests add registries (proxies) while CRI-O runs and send SIGHUP to reload them.
auto_reload_registries = false
pause_image = "${IMAGESHIM_SANDBOX_IMAGE:-registry.k8s.io/pause:3.10}"
[crio.network]
network_dir = "$dir/cni/conf"
plugin_dirs = ["$dir/cni/bin"]
[crio.metrics]
enable_metrics = false
[crio.nri]
enable_nri = false
TOML
  cat > "$dir/crio.conf.d/10-runc-b.conf" <<TOML
[crio.runtime.runtimes.runc-b]
runtime_path = "$(command -v runc)"
runtime_root = "$dir/runc-b"
monitor_path = "$(command -v conmon)"
TOML
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$dir/policy.json"
  : > "$dir/registries.conf"
  for r in ${IMAGESHIM_PLAIN_HTTP_REGISTRIES:-}; do
    printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$r" >> "$dir/registries.conf"
  done
}

case "$cmd" in
start)
  ensure_pkg runc runc
  ensure_pkg conmon conmon
  bin=$("$here/go-tools.sh" crio)
  write_config "$bin"
  mkdir -p "$dir/registries.conf.d"
  "$bin/crio" --config "$dir/crio.conf" --config-dir "$dir/crio.conf.d" \
    --registries-conf "$dir/registries.conf" --registries-conf-dir "$dir/registries.conf.d" \
    > "$dir/crio.log" 2>&1 &
  echo $! > "$dir/crio.pid"
  # Ready when its socket accepts connections (CRI-O logs no line of its own for it).
  if ! wait_for 600 listening "$dir/crio.sock" || ! kill -0 "$(cat "$dir/crio.pid")" 2>/dev/null; then
    echo "crio did not start; log:" >&2; tail -30 "$dir/crio.log" >&2; exit 1
  fi
  echo "$dir/crio.sock"
  ;;
stop)
  stop_pidfile "$dir/crio.pid"
  unmount_below "$dir"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
