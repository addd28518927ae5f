#!/usr/bin/env bash
# Brings up a private containerd (2.x, built from its Go module by hack/go-tools.sh;
# Debian's 1.6 on a machine without Go >= 1.26, which it says) and registry on this
# machine, starts imageshim in front of containerd, shows it working (push, pull, status, list through the shim),
# and keeps imageshim in the foreground until Ctrl-C; then stops everything.
#   hack/up.sh            (state under /tmp/imageshim-up; IMAGESHIM_UP_DIR to change)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
cd "$root"
ensure_pkg containerd containerd
ensure_pkg docker-registry docker-registry
ensure_pkg protoc protobuf-compiler

dir=${IMAGESHIM_UP_DIR:-/tmp/imageshim-up}
mkdir -p "$dir"
port=${IMAGESHIM_UP_REGISTRY_PORT:-5055}
cleanup() {
  [ -n "${shim_pid:-}" ] && kill "$shim_pid" 2>/dev/null && wait "$shim_pid" 2>/dev/null
  "$here/registry.sh" stop "$dir/registry" || true
  "$here/containerd.sh" stop "$dir/containerd" || true
}
trap cleanup EXIT

cargo build --quiet --bins --examples
flavor=2
if ! "$here/go-tools.sh" containerd >/dev/null; then
  echo "up: no Go >= 1.26 here: falling back to Debian's containerd 1.6 (past its end of life)" >&2
  flavor=1.6
fi
containerd_sock=$("$here/containerd.sh" start "$dir/containerd" "$flavor")
registry=$("$here/registry.sh" start "$dir/registry" "$port")
plain_http_registry "$dir/containerd/certs.d" "$registry"

cat > "$dir/config.toml" <<TOML
socket = "$dir/imageshim.sock"
[[backend]]
name = "containerd"
kind = "containerd"
endpoint = "unix://$containerd_sock"
default = true
runtime_config = "$dir/containerd/config.toml"
TOML
target/debug/imageshim check-config --config "$dir/config.toml"
target/debug/imageshim serve --config "$dir/config.toml" &
shim_pid=$!
wait_for 100 test -S "$dir/imageshim.sock"
target/debug/examples/demo "$dir/imageshim.sock" "$registry"
cat <<MSG

imageshim is serving on $dir/imageshim.sock (containerd: $containerd_sock, registry: $registry).
With crictl installed:  crictl --runtime-endpoint unix://$dir/imageshim.sock images
Pulls, cap and backends: target/debug/imageshim status --watch   (metrics: curl 127.0.0.1:9595/metrics)
Ctrl-C stops imageshim, containerd and the registry.
MSG
if [ -n "${IMAGESHIM_UP_ONCE:-}" ]; then exit 0; fi
wait "$shim_pid"
