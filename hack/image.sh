#!/usr/bin/env bash
# Builds imageshim's container image from the release binary: no base image, only the
# binary, the libraries it loads and the documented default config (see
# integration/support/shim_image.rs). Writes an OCI layout and a tar for
# `ctr -n k8s.io images import`, and pushes over plain HTTP with --push.
#   hack/image.sh REGISTRY/imageshim:TAG [--push]     # e.g. 127.0.0.1:5000/imageshim:0.1.0
# Output: target/image/layout (OCI layout) and target/image/imageshim.tar.
# For a TLS registry: skopeo copy oci:target/image/layout docker://REGISTRY/imageshim:TAG
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
reference=${1:?REGISTRY/imageshim:TAG}
shift
cd "$root"
[ -x target/release/imageshim ] || cargo build --release
rm -rf target/image && mkdir -p target/image
cargo run -q --example image -- target/release/imageshim "$reference" \
  --layout target/image/layout --tar target/image/imageshim.tar "$@"
