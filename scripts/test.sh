#!/usr/bin/env bash
# The project's test command (README, .ci/run). Installs what the tests need on a
# fresh Debian machine when run as root, then runs the whole test suite (optimised build,
# profile `ci` = release without LTO; extra arguments go to `cargo test`, e.g.
# `--test daemon_suite`).
#
# Tools the tests call, and their Debian packages: promtool (prometheus: metrics output,
# alert rules, dashboard queries), openssl (test certificates for STARTTLS), systemd-analyze
# (systemd: unit verification), kill (procps: signals to the daemon binary). Tests whose
# tool is missing say "skipped" instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A pkg_for=([promtool]=prometheus [openssl]=openssl [systemd-analyze]=systemd [kill]=procps)
need_pkgs=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || need_pkgs+=("${pkg_for[$tool]}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_pkgs[*]}" >&2
    # Best effort: without a package mirror the tests that need a tool say "skipped".
    if ! { apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; }; then
      echo "test.sh: note: could not install ${need_pkgs[*]}; tests that need them will say skipped" >&2
    fi
  else
    echo "test.sh: note: ${need_pkgs[*]} missing; tests that need them will say skipped" >&2
  fi
fi

cargo test --locked --profile ci "$@"
