#!/usr/bin/env bash
# Runs the whole test suite: formatting, clippy, unit tests, hermetic tests, and the
# real-component tests against Debian's containerd and docker-registry, which this
# script installs (if missing), starts on private sockets/ports, and stops again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
cd "$root"

ensure_pkg containerd containerd
ensure_pkg docker-registry docker-registry
ensure_pkg htpasswd apache2-utils
ensure_pkg protoc protobuf-compiler
ensure_pkg busybox busybox-static
ensure_pkg runc runc
ensure_pkg systemd-socket-activate systemd
# Ring 4's independent client: Python grpcio (gRPC C-core), pinned.
python3 -m pip install -q --disable-pip-version-check -r "$root/integration/clients/requirements.txt"

work=$(mktemp -d /tmp/imageshim-test.XXXXXX)
cleanup() {
  "$here/registry.sh" stop "$work/registry" || true
  "$here/registry.sh" stop "$work/auth-registry" || true
  "$here/containerd.sh" stop "$work/containerd" || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== starting registries and containerd under $work"
registry=$("$here/registry.sh" start "$work/registry" "$(free_port)")
password="pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
auth_registry=$("$here/registry.sh" start "$work/auth-registry" "$(free_port)" "imageshim:$password")
# The pod sandbox image is pushed by the tests that run pods (integration/real_clients.rs).
export IMAGESHIM_TEST_SANDBOX_IMAGE="$registry/imageshim-test/pause:1"
IMAGESHIM_SANDBOX_IMAGE="$IMAGESHIM_TEST_SANDBOX_IMAGE" "$here/containerd.sh" start "$work/containerd" >/dev/null
for r in "$registry" "$auth_registry"; do plain_http_registry "$work/containerd/certs.d" "$r"; done

export IMAGESHIM_TEST_CONTAINERD_DIR="$work/containerd"
export IMAGESHIM_TEST_REGISTRY_DIR="$work/registry"
export IMAGESHIM_TEST_REGISTRY="$registry"
export IMAGESHIM_TEST_AUTH_REGISTRY="$auth_registry"
export IMAGESHIM_TEST_AUTH_USER="imageshim"
export IMAGESHIM_TEST_AUTH_PASSWORD="$password"
# Real-component tests must run here, never skip.
export IMAGESHIM_REQUIRE_REAL_TESTS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test (unit, hermetic, real)"
cargo test --locked --lib --bins --tests -- --test-threads 4 2>&1 | tee "$work/test.log"
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$work/test.log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$work/test.log" | awk '{s+=$1} END {print s+0}')
[ "$passed" -gt 0 ] || { echo "no test ran" >&2; exit 1; }
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
echo "== soak (2 minutes, debug build; hack/soak 30 for the README figures)"
IMAGESHIM_SOAK_PROFILE=debug "$here/soak" 2
