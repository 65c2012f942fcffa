#!/usr/bin/env bash
# The project's test command (README, .ci/run). Installs what the tests need on a
# fresh Debian machine when run as root, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_pkgs[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "test.sh: note: ${need_pkgs[*]} missing; tests that need them will say skipped" >&2
  fi
fi

cargo test --locked --release "$@"
