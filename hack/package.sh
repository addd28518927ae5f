#!/usr/bin/env bash
# Builds the Debian package with cargo-deb from the release binary and checks it on
# this machine (root): installs it, runs the installed `imageshim check-config` and
# `systemd-analyze verify` on the installed units, removes it (the conffile stays, as
# Debian does), purges it and checks that nothing of it is left.
#   hack/package.sh            # build (cargo build --release first if needed) + check
#   hack/package.sh build      # only build target/debian/imageshim_*.deb
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked
[ -x target/release/imageshim ] || cargo build --release
rm -f target/debian/imageshim_*.deb
cargo deb --no-build >/dev/null
deb=$(ls target/debian/imageshim_*.deb)
echo "== built $deb ($(du -k "$deb" | cut -f1) KiB)"
[ "${1:-}" = build ] && exit 0

if dpkg -s imageshim >/dev/null 2>&1; then
  echo "imageshim is already installed here; refusing to test over it" >&2
  exit 1
fi
fail() { echo "package check failed: $*" >&2; exit 1; }
leftovers() {
  find /etc /usr /lib /var/lib /run -xdev -name '*imageshim*' \
    -not -path '/var/lib/dpkg/*' 2>/dev/null | sort
}
before=$(leftovers)

DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$deb" >/dev/null
dpkg -L imageshim > /tmp/imageshim-package-files
echo "== installed: $(wc -l < /tmp/imageshim-package-files) paths"
/usr/bin/imageshim --version
dpkg-query -W -f='${Conffiles}\n' imageshim | grep -q '/etc/imageshim/config.toml' \
  || fail "/etc/imageshim/config.toml is not a conffile"
/usr/bin/imageshim check-config --config /etc/imageshim/config.toml
units=$(grep -E '/imageshim\.(service|socket)$' /tmp/imageshim-package-files)
[ "$(echo "$units" | wc -l)" -eq 2 ] || fail "expected the service and socket units, got: $units"
systemd-analyze verify $units
echo "== systemd-analyze verify: ok ($(echo $units))"
[ -f /usr/share/doc/imageshim/README.md ] || fail "README not installed"

DEBIAN_FRONTEND=noninteractive apt-get remove -y -q imageshim >/dev/null
[ ! -e /usr/bin/imageshim ] || fail "/usr/bin/imageshim left after remove"
[ -f /etc/imageshim/config.toml ] || fail "remove dropped the conffile (only purge should)"
# What `imageshim adopt --write` leaves next to the conffile goes on purge too.
echo "# previous" > /etc/imageshim/config.toml.before-adopt
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q imageshim >/dev/null
! dpkg -s imageshim >/dev/null 2>&1 || fail "still known to dpkg after purge"
while read -r path; do
  [ -d "$path" ] && continue   # shared directories (/usr/bin, /etc) stay
  [ ! -e "$path" ] || fail "$path left after purge"
done < /tmp/imageshim-package-files
after=$(leftovers)
[ "$before" = "$after" ] || fail "left after purge: $(comm -13 <(echo "$before") <(echo "$after"))"
echo "== removed and purged: nothing left"
