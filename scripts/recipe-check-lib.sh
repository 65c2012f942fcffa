# Shared by scripts/check-*-recipe.sh (sourced, not run). Set CHECK_NAME first.
# Functions to run a doc's marked blocks against real software on loopback, with bounded
# waits; the caller's EXIT trap calls stop_pids for what it started.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAMPLE=$ROOT/examples/bounce-5.1.1.eml
BIN=$ROOT/target/release/bouncelens
BL_PIDS=()

say() { echo "$CHECK_NAME: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

# Root, sbin on PATH, and the Debian packages given installed (postfix with "No configuration").
need_root_and_packages() {
  [ "$(id -u)" = 0 ] || die "run as root"
  export PATH="$PATH:/usr/sbin:/sbin"
  local need=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get"
  say "installing ${need[*]}"
  apt-get update -qq >/dev/null
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

build_bouncelens() {
  say "building bouncelens (release)"
  (cd "$ROOT" && cargo build --release --locked -q)
}

# A fresh work dir the MTA's unprivileged users can traverse.
make_work() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$CHECK_NAME.XXXXXX")
  chmod 755 "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The fenced block that follows "<!-- MARKER: NAME -->" in DOC.
doc_block() { # DOC MARKER NAME
  local out
  out=$(awk -v m="<!-- $2: $3 -->" '
    $0 == m { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$1")
  [ -n "$out" ] || die "$1 has no block marked '$3'"
  printf '%s\n' "$out"
}

# Starts bouncelens with the config on stdin (plus metrics on a free port) in $WORK/bl-NAME,
# where the relative default paths (var/spool, var/events.jsonl, var/outbox) land. Give it
# `listen = ["127.0.0.1:0"]`: the port it got is then in BL_PORT (no race for a port).
# Call it as `start_bouncelens NAME < <(...)`, not at the end of a pipeline: a pipeline
# runs it in a subshell, which would lose the pid the cleanup needs.
start_bouncelens() { # NAME
  [ "$BASH_SUBSHELL" = 0 ] || die "start_bouncelens ran in a subshell; feed it with < <(...)"
  local dir=$WORK/bl-$1
  mkdir -p "$dir"
  { cat; printf '\n[metrics]\nlisten = "127.0.0.1:0"\n'; } >"$dir/bouncelens.toml"
  "$BIN" check-config --config "$dir/bouncelens.toml" >/dev/null
  (cd "$dir" && exec "$BIN" serve --config bouncelens.toml) </dev/null >"$WORK/bl-$1.log" 2>&1 &
  BL_PIDS+=($!)
  for _ in $(seq 150); do grep -q "bouncelens ready" "$WORK/bl-$1.log" && break; sleep 0.1; done
  grep -q "bouncelens ready" "$WORK/bl-$1.log" || die "bouncelens ($1) did not start"
  BL_PORT=$(sed -n 's/.*smtp listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/bl-$1.log" | head -n 1)
  [ -n "$BL_PORT" ] || die "bouncelens ($1) logged no listening port"
}

# The doc's bouncelens config with its loopback SMTP/LMTP listener on a port of the kernel's choice.
any_port() { sed -e 's#"127\.0\.0\.1:[0-9]*"#"127.0.0.1:0"#g'; }

# The end of a cleanup trap: on failure show the tails of the given logs; keep the work
# dir on failure or with CHECK_KEEP=1, else remove it; exit with RC.
finish() { # RC LOG...
  local rc=$1 f
  shift
  if [ "$rc" -ne 0 ]; then
    for f in "$@"; do say "--- $f"; tail -n 30 "$f" >&2 2>/dev/null || true; done
  fi
  if [ "${CHECK_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}

# SIGTERM, up to 5 s each, then SIGKILL.
stop_pids() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}

# The sample bounce, with the null sender, to RCPT via the MTA on PORT: swaks' transcript.
send_bounce() { # PORT RCPT
  swaks --server "127.0.0.1:$1" --helo client.example.net --from '<>' --to "$2" \
    --data "@$SAMPLE" --suppress-data --timeout 20 2>&1
}

# Waits for the events row of bouncelens queue id QID in EVENTS and checks it is the
# sample's (userunknown, hard bounce) with the null sender and envelope recipient RCPT.
check_events_row() { # QID EVENTS RCPT
  local rows=""
  for _ in $(seq 100); do
    rows=$(grep -F "\"queue_id\":\"$1\"" "$2" 2>/dev/null || true)
    [ -n "$rows" ] && break
    sleep 0.1
  done
  [ -n "$rows" ] || die "no events row for queue id $1 in $2"
  python3 - "$rows" "$3" <<'PY' || die "events row is not what the recipe should produce: $rows"
import json, sys
row = json.loads(sys.argv[1])
assert row["envelope_from"] == "", row["envelope_from"]
assert row["envelope_to"] == [sys.argv[2]], row["envelope_to"]
assert row["recipient"] == "taro.yamada@example.com", row["recipient"]
assert row["status"] == "5.1.1" and row["reason"] == "userunknown" and row["hard_bounce"] is True
PY
}
