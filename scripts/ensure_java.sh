#!/usr/bin/env bash
# Spark (PySpark 4) needs Java 17 or later: install Debian's JRE when it is missing and we are root,
# otherwise say exactly what to install.
set -euo pipefail
version=$( (java -version 2>&1 || true) | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ -n "$version" ] && [ "$version" -ge 17 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Java 17+ not found (Spark needs it): installing the Debian package 'openjdk-17-jre-headless'..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "Spark needs Java 17 or later, and none was found." >&2
echo "Install it with:  sudo apt-get install openjdk-17-jre-headless   (Debian/Ubuntu)" >&2
exit 1
