# Shared helpers for the hack/ scripts. Source it; do not run it.

# Installs Debian packages only when a command is missing.
ensure_pkg() { # ensure_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (needed for $1)" >&2
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install $2" >&2; return 1; fi
  if [ -z "${IMAGESHIM_APT_UPDATED:-}" ]; then
    apt-get update -qq >&2 && export IMAGESHIM_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}

# Waits until a command succeeds (up to N tenths of a second).
wait_for() { # wait_for TENTHS COMMAND...
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# Stops the process whose pid is in FILE, then waits for it to go.
stop_pidfile() { # stop_pidfile FILE
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

# Tells a containerd (by its certs.d dir) that a 127.0.0.1 registry speaks plain HTTP.
plain_http_registry() { # plain_http_registry CERTS_D HOST:PORT
  mkdir -p "$1/$2"
  cat > "$1/$2/hosts.toml" <<TOML
server = "http://$2"
[host."http://$2"]
  capabilities = ["pull", "resolve"]
TOML
}

# Unmounts, deepest first, whatever a runtime left mounted below DIR.
unmount_below() { # unmount_below DIR
  { grep " $1/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

# True when something accepts connections on the unix socket PATH.
listening() { # listening PATH
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$1" 2>/dev/null
}
