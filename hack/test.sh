#!/usr/bin/env bash
# Runs the whole test suite: formatting, clippy, unit tests, hermetic tests, and the
# real-component rings (3: real runtime and registry; 4: Python grpcio side by side)
# against three runtimes in turn — Debian's containerd 1.6, containerd 2.x and CRI-O
# 1.36 (built from their Go modules by hack/go-tools.sh, cached) — each started by a
# hack/ script on private sockets under a temp dir, with docker-registry (plain and
# htpasswd) on 127.0.0.1. Builds and checks the Debian package (hack/package.sh; the
# container image is built and run under containerd 2.x by integration/real_image.rs).
# Prints the runtime × ring matrix, then runs every fuzz target briefly (hack/fuzz) and
# a 2-minute soak.
#   IMAGESHIM_RUNTIMES="containerd-1.6 containerd-2 cri-o" (default: all three)
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
ensure_pkg conmon conmon
ensure_pkg systemd-socket-activate systemd
# Ring 4's independent client: Python grpcio (gRPC C-core), pinned.
# (Debian's own python3 is "externally managed": there the pinned wheels go in anyway.)
requirements="$root/integration/clients/requirements.txt"
python3 -m pip install -q --disable-pip-version-check -r "$requirements" 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r "$requirements"

runtimes=${IMAGESHIM_RUNTIMES:-containerd-1.6 containerd-2 cri-o}
started=$(date +%s)
tools=$("$here/go-tools.sh")
echo "== Go-built runtimes ready in $(( $(date +%s) - started )) s: $tools"

work=$(mktemp -d /tmp/imageshim-test.XXXXXX)
cleanup() {
  "$here/registry.sh" stop "$work/registry" || true
  "$here/registry.sh" stop "$work/auth-registry" || true
  for r in $runtimes; do
    case "$r" in
    cri-o) "$here/crio.sh" stop "$work/$r" || true ;;
    *) "$here/containerd.sh" stop "$work/$r" || true ;;
    esac
  done
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== starting registries under $work"
registry=$("$here/registry.sh" start "$work/registry" "$(free_port)")
password="pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
auth_registry=$("$here/registry.sh" start "$work/auth-registry" "$(free_port)" "imageshim:$password")
# The pod sandbox image is pushed by the tests that run pods (integration/real_clients.rs).
export IMAGESHIM_TEST_SANDBOX_IMAGE="$registry/imageshim-test/pause:1"
export IMAGESHIM_TEST_REGISTRY_DIR="$work/registry"
export IMAGESHIM_TEST_REGISTRY="$registry"
export IMAGESHIM_TEST_AUTH_REGISTRY="$auth_registry"
export IMAGESHIM_TEST_AUTH_USER="imageshim"
export IMAGESHIM_TEST_AUTH_PASSWORD="$password"
export IMAGESHIM_TEST_CONTAINERD2_BIN="$tools/containerd"
export IMAGESHIM_TEST_CTR="$tools/ctr"
export IMAGESHIM_TEST_MATRIX_LOG="$work/matrix.log"
# Real-component tests must run here, never skip.
export IMAGESHIM_REQUIRE_REAL_TESTS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo build --release (the memory bounds in integration/abuse.rs are measured on it)"
cargo build --release --locked --bin imageshim
export IMAGESHIM_TEST_RELEASE_BINARY="$root/target/release/imageshim"

echo "== Debian package (cargo-deb): install, check-config, systemd-analyze verify, remove, purge"
"$here/package.sh"

# Starts runtime $1 under $work/$1 and prints its directory.
start_runtime() {
  local dir="$work/$1"
  case "$1" in
  containerd-1.6 | containerd-2)
    IMAGESHIM_SANDBOX_IMAGE="$IMAGESHIM_TEST_SANDBOX_IMAGE" \
      "$here/containerd.sh" start "$dir" "${1#containerd-}" >/dev/null
    for r in "$registry" "$auth_registry"; do plain_http_registry "$dir/certs.d" "$r"; done
    ;;
  cri-o)
    IMAGESHIM_SANDBOX_IMAGE="$IMAGESHIM_TEST_SANDBOX_IMAGE" \
      IMAGESHIM_PLAIN_HTTP_REGISTRIES="$registry $auth_registry" \
      "$here/crio.sh" start "$dir" >/dev/null
    ;;
  *) echo "unknown runtime $1" >&2; exit 2 ;;
  esac
  echo "$dir"
}

total_passed=0
first=1
for runtime in $runtimes; do
  echo "== $runtime: starting"
  export IMAGESHIM_TEST_RUNTIME="$runtime"
  IMAGESHIM_TEST_RUNTIME_DIR=$(start_runtime "$runtime")
  export IMAGESHIM_TEST_RUNTIME_DIR
  log="$work/test-$runtime.log"
  if [ "$first" = 1 ]; then
    echo "== cargo test against $runtime (unit, hermetic, real)"
    targets=(--lib --bins --tests)
    filter=()
    first=0
  else
    echo "== cargo test against $runtime (real rings)"
    targets=(--test integration)
    filter=(real)
  fi
  cargo test --locked "${targets[@]}" -- --test-threads 4 "${filter[@]}" 2>&1 | tee "$log"
  passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
  failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
  [ "$passed" -gt 0 ] || { echo "no test ran against $runtime" >&2; exit 1; }
  echo "tests against $runtime: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] || exit 1
  total_passed=$((total_passed + passed))
  case "$runtime" in
  cri-o) "$here/crio.sh" stop "$work/$runtime" ;;
  *) "$here/containerd.sh" stop "$work/$runtime" ;;
  esac
done

echo "== runtime × ring matrix (real-component tests; ring 4 is real_clients)"
python3 - "$IMAGESHIM_TEST_MATRIX_LOG" <<'PY'
import collections, sys
rows = collections.Counter()
for line in open(sys.argv[1]):
    runtime, test, what = line.rstrip("\n").split("\t", 2)
    ring = "ring 4 (grpcio)" if "real_clients" in test else "ring 3 (real)"
    rows[(runtime, ring, what)] += 1
for (runtime, ring, what), n in sorted(rows.items()):
    print(f"  {runtime:14} {ring:16} {what:15} {n}")
PY
echo "tests: $total_passed passed in all"
echo "== fuzz (every target in fuzz/ for 20 s; hack/fuzz 600 for longer runs)"
"$here/fuzz" 20
echo "== soak (2 minutes, debug build; hack/soak 30 for the README figures)"
IMAGESHIM_SOAK_PROFILE=debug "$here/soak" 2
