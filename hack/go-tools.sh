#!/usr/bin/env bash
# Installs the current runtimes as Go programs from their modules, cached between runs:
# containerd 2.x (containerd, ctr, containerd-shim-runc-v2), CRI-O 1.36 (crio with the
# build tags it needs, and its pinns) and crictl. Prints the directory holding them.
#   hack/go-tools.sh [TOOL...]  -> prints BIN (installs what is missing of TOOLs:
#                                  containerd, crio, crictl; default all three)
# IMAGESHIM_TOOLS sets the cache (default ~/.cache/imageshim/tools). Needs Go >= 1.26
# (CRI-O 1.36's go.mod); without it, exits 3 and says so.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

CONTAINERD_VERSION=v2.4.2
CRIO_VERSION=v1.36.3
CRICTL_VERSION=v1.37.0
CRIO_TAGS="containers_image_openpgp exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper libsqlite3 seccomp"

tools=${IMAGESHIM_TOOLS:-$HOME/.cache/imageshim/tools}
bin="$tools/bin"
mkdir -p "$bin"

go_ok() {
  command -v go >/dev/null 2>&1 || return 1
  local v; v=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n1.26\n' "$v" | sort -V | head -1)" = "1.26" ]
}
if ! go_ok; then
  echo "go-tools: Go >= 1.26 is not on this machine; containerd 2.x and CRI-O cannot be built" >&2
  exit 3
fi

wanted=" ${*:-containerd crio crictl} "
want() { [[ "$wanted" == *" $1 "* ]]; }

# A tool is current when its stamp names the version asked for.
current() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$bin/.$1.version"; }

if want containerd && ! current containerd "$CONTAINERD_VERSION"; then
  echo "go-tools: building containerd $CONTAINERD_VERSION" >&2
  GOBIN="$bin" go install \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" >&2
  stamp containerd "$CONTAINERD_VERSION"
fi

if want crictl && ! current crictl "$CRICTL_VERSION"; then
  echo "go-tools: building crictl $CRICTL_VERSION" >&2
  GOBIN="$bin" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" >&2
  stamp crictl "$CRICTL_VERSION"
fi

if want crio && ! current crio "$CRIO_VERSION"; then
  # CRI-O's cgo parts link libseccomp and sqlite; its pods need conmon and runc.
  ensure_pkg pkg-config pkg-config
  for p in libseccomp-dev libsqlite3-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || ensure_pkg "/nonexistent/$p" "$p"
  done
  echo "go-tools: building crio $CRIO_VERSION" >&2
  # `go install crio@version` asks the proxy for CRI-O's version list, which it refuses;
  # download the exact version and build inside its module instead.
  src=$(go mod download -json "github.com/cri-o/cri-o@$CRIO_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  (cd "$src" && go build -trimpath -tags "$CRIO_TAGS" -o "$bin/crio" ./cmd/crio) >&2
  cc -std=c99 -O2 -Wall -o "$bin/pinns" "$src"/pinns/src/*.c >&2
  stamp crio "$CRIO_VERSION"
fi
echo "$bin"
