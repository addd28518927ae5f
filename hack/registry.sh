#!/usr/bin/env bash
# Starts or stops Debian's docker-registry on 127.0.0.1:PORT with storage under DIR.
# With USER:PASSWORD it is protected by htpasswd (bcrypt, from apache2-utils).
#   hack/registry.sh start DIR PORT [USER:PASSWORD]   -> prints 127.0.0.1:PORT
#   hack/registry.sh stop DIR
# The access log (one line per request) is DIR/registry.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cmd=${1:?start|stop}; dir=${2:?DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

case "$cmd" in
start)
  port=${3:?PORT}; creds=${4:-}
  ensure_pkg docker-registry docker-registry
  auth=""
  if [ -n "$creds" ]; then
    ensure_pkg htpasswd apache2-utils
    htpasswd -Bbc "$dir/htpasswd" "${creds%%:*}" "${creds#*:}" 2>/dev/null
    auth="auth:
  htpasswd:
    realm: imageshim-test
    path: $dir/htpasswd"
  fi
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
YAML
  docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  echo $! > "$dir/registry.pid"
  if ! wait_for 200 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"; then
    echo "registry did not start; log:" >&2; tail -30 "$dir/registry.log" >&2; exit 1
  fi
  echo "127.0.0.1:$port"
  ;;
stop)
  stop_pidfile "$dir/registry.pid"
  ;;
*) echo "usage: $0 start|stop DIR [PORT [USER:PASSWORD]]" >&2; exit 2 ;;
esac
