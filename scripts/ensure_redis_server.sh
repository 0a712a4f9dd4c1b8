#!/usr/bin/env bash
# Make sure a `redis-server` binary is available: install Debian's package when we are root,
# otherwise say exactly what to install.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server not found: installing the Debian package 'redis-server'..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide instance on 6379; we never use it, so stop it.
  (service redis-server stop || systemctl stop redis-server || true) >/dev/null 2>&1
  exit 0
fi
echo "redis-server is required but not installed." >&2
echo "Install it with:  sudo apt-get install redis-server   (Debian/Ubuntu)" >&2
echo "or:               brew install redis                  (macOS)" >&2
echo "or point the demo at an existing Redis: FEAST_SEQUENCE_REDIS=host:port make demo" >&2
exit 1
