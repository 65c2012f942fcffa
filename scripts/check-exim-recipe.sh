#!/usr/bin/env bash
# check-exim-recipe.sh — runs docs/exim.md as written, on loopback, and checks it.
#
# Exim and Postfix cannot both be installed on Debian (both are the system MTA), and the
# benchmarks need Postfix's tools, so this does not install Exim: it downloads Debian's
# exim4-daemon-light package with `apt-get download` (installing only libidn12, the one
# library of it that Postfix does not bring), unpacks it into a temp dir, and runs that exim
# binary with `-C` and a
# throwaway configuration: the marked blocks of docs/exim.md (main-section line, router,
# transports) in a minimal exim.conf with the stock RCPT ACL, an Exim daemon on a free
# 127.0.0.1 port, and its spool and logs in the temp dir. Then:
#   1. `exim -bt` routes a VERP address through the doc's router and transport;
#   2. a bounce (examples/bounce-5.1.1.eml, null sender, VERP recipient) relayed through the
#      Exim daemon reaches bouncelens over SMTP -> the events log has its row, with the
#      queue id Exim logged;
#   3. an unknown address in the bounce domain and relaying elsewhere are refused;
#   4. the LMTP transport of the doc delivers to a bouncelens in LMTP mode.
# Everything started is stopped on exit (trap); every wait is bounded. Needs root, swaks,
# python3, and the system user Debian-exim (created here if missing, as the exim4 package
# would: the Debian binary has that user compiled in). CHECK_KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DOC=$ROOT/docs/exim.md
SAMPLE=$ROOT/examples/bounce-5.1.1.eml

say() { echo "check-exim-recipe: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v swaks >/dev/null || need+=(swaks)
dpkg -s libidn12 >/dev/null 2>&1 || need+=(libidn12)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get"
  say "installing ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
getent group Debian-exim >/dev/null || groupadd --system Debian-exim
getent passwd Debian-exim >/dev/null ||
  useradd --system --gid Debian-exim --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim

say "building bouncelens (release)"
cargo build --release --locked -q
BIN=$ROOT/target/release/bouncelens

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-exim.XXXXXX")
chmod 755 "$WORK"
BL_PIDS=()
EXIM_PID=""
cleanup() {
  local rc=$?
  for p in $EXIM_PID "${BL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in $EXIM_PID "${BL_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    say "--- exim mainlog"; tail -n 30 "$WORK/log/mainlog" >&2 2>/dev/null || true
    say "--- exim paniclog"; tail -n 10 "$WORK/log/paniclog" >&2 2>/dev/null || true
    say "--- bouncelens log"; tail -n 20 "$WORK"/bl-*.log >&2 2>/dev/null || true
  fi
  if [ "${CHECK_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Exim, unpacked ---------------------------------------------------------------
say "fetching exim4-daemon-light (apt-get download; not installed)"
(cd "$WORK" && timeout 120 apt-get download -q exim4-daemon-light >/dev/null 2>&1) ||
  die "apt-get download exim4-daemon-light failed"
dpkg -x "$WORK"/exim4-daemon-light_*.deb "$WORK/root"
EXIM=$WORK/root/usr/sbin/exim4
[ -x "$EXIM" ] || die "no exim binary in the package"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The fenced block after "<!-- check-exim-recipe: NAME -->" in the doc.
block() {
  local out
  out=$(awk -v m="<!-- check-exim-recipe: $1 -->" '
    $0 == m { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$DOC")
  [ -n "$out" ] || die "docs/exim.md has no block marked '$1'"
  printf '%s\n' "$out"
}

EXIM_PORT=$(free_port)
BL_SMTP=$(free_port)
BL_LMTP=$(free_port)
localize() { sed -e "s/port = 2525/port = $BL_SMTP/" -e "s/port = 2424/port = $BL_LMTP/"; }

# --- bouncelens with the config of docs/postfix.md (the Exim doc refers to it) -------
pblock() {
  awk -v m="<!-- check-postfix-recipe: $1 -->" '
    $0 == m { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$ROOT/docs/postfix.md"
}
start_bouncelens() { # NAME POSTFIX-DOC-BLOCK PORT
  local dir=$WORK/bl-$1
  mkdir -p "$dir"
  { pblock "$2" | sed -e "s#127\.0\.0\.1:2525#127.0.0.1:$3#" -e "s#127\.0\.0\.1:2424#127.0.0.1:$3#"
    printf '\n[metrics]\nlisten = "127.0.0.1:0"\n'; } >"$dir/bouncelens.toml"
  grep -q "127.0.0.1:$3" "$dir/bouncelens.toml" || die "bouncelens config block $2 not found"
  (cd "$dir" && exec "$BIN" serve --config bouncelens.toml) 2>"$WORK/bl-$1.log" &
  BL_PIDS+=($!)
  for _ in $(seq 100); do grep -q "bouncelens ready" "$WORK/bl-$1.log" && return 0; sleep 0.1; done
  die "bouncelens ($1) did not start"
}
start_bouncelens smtp bouncelens.toml "$BL_SMTP"
start_bouncelens lmtp bouncelens-lmtp.toml "$BL_LMTP"

# --- the Exim configuration ----------------------------------------------------------
mkdir -p "$WORK/spool" "$WORK/log"
chown Debian-exim:Debian-exim "$WORK/spool" "$WORK/log"
CONF=$WORK/exim.conf
write_conf() { # TRANSPORT-NAME-FOR-THE-ROUTER
  {
    cat <<EOF
exim_path = $EXIM
primary_hostname = mx.example.test
qualify_domain = example.test
spool_directory = $WORK/spool
log_file_path = $WORK/log/%slog
exim_user = Debian-exim
exim_group = Debian-exim
daemon_smtp_ports = $EXIM_PORT
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
keep_environment =
tls_advertise_hosts =
domainlist local_domains =
EOF
    block main
    cat <<'EOF'
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept  domains       = +relay_to_domains
          endpass
          verify        = recipient
  deny    message       = relay not permitted

begin routers

EOF
    block router | sed "s/transport = bouncelens_smtp/transport = $1/"
    printf '\nbegin transports\n\n'
    block transport | localize
    echo
    block transport-lmtp | localize
    printf '\nbegin retry\n\n*  *  F,1h,1m\n'
  } >"$CONF"
  chmod 644 "$CONF"
  "$EXIM" -C "$CONF" -bV >/dev/null || die "exim -bV refuses the configuration"
}
write_conf bouncelens_smtp

VERP=bounces+hanako=example.jp@bounces.example.com
# 1. Routing as the doc says `exim -bt` shows it.
bt=$("$EXIM" -C "$CONF" -bt "$VERP" 2>&1) || die "exim -bt failed: $bt"
grep -q "router = bouncelens, transport = bouncelens_smtp" <<<"$bt" || die "exim -bt: $bt"
[ "${CHECK_VERBOSE:-0}" = 1 ] && printf '%s\n' "$bt" >&2
say "ok: exim -bt $VERP -> router = bouncelens, transport = bouncelens_smtp"

start_exim() {
  "$EXIM" -C "$CONF" -bd -q30s -oX "$EXIM_PORT" -oP "$WORK/exim.pid" &
  for _ in $(seq 100); do
    [ -s "$WORK/exim.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$EXIM_PORT") 2>/dev/null && break
    sleep 0.1
  done
  EXIM_PID=$(cat "$WORK/exim.pid" 2>/dev/null || true)
  [ -n "$EXIM_PID" ] || die "exim daemon did not start"
}
stop_exim() {
  kill "$EXIM_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$EXIM_PID" 2>/dev/null || break; sleep 0.1; done
  EXIM_PID=""
  rm -f "$WORK/exim.pid"
}
send() { # RCPT
  swaks --server "127.0.0.1:$EXIM_PORT" --helo client.example.net --from '<>' --to "$1" \
    --data "@$SAMPLE" --suppress-data --timeout 20 2>&1
}
# Exim's id from swaks' transcript, then bouncelens's id from Exim's "=>" log line.
relay() { # RCPT EVENTS-LOG TRANSPORT
  local out exid line blid rows=""
  out=$(send "$1") || die "Exim refused the bounce: $out"
  exid=$(sed -n 's/.*250 OK id=\([-A-Za-z0-9]*\).*/\1/p' <<<"$out")
  [ -n "$exid" ] || die "no Exim message id in: $out"
  for _ in $(seq 300); do
    line=$(grep -F "$exid => " "$WORK/log/mainlog" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || die "Exim did not deliver $exid within 30 s: $(grep -F "$exid" "$WORK/log/mainlog" | tail -n 3)"
  say "exim: ${line#* * }"
  grep -q "R=bouncelens T=$3 " <<<"$line" || die "not delivered by router bouncelens / transport $3"
  blid=$(sed -n 's/.*queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$line")
  [ -n "$blid" ] || die "Exim's delivery line has no bouncelens queue id"
  for _ in $(seq 100); do
    rows=$(grep -F "\"queue_id\":\"$blid\"" "$2" 2>/dev/null || true)
    [ -n "$rows" ] && break
    sleep 0.1
  done
  [ -n "$rows" ] || die "no events row for queue id $blid"
  python3 - "$rows" "$1" <<'PY' || die "events row is not what the recipe should produce: $rows"
import json, sys
row = json.loads(sys.argv[1])
assert row["envelope_from"] == "", row["envelope_from"]
assert row["envelope_to"] == [sys.argv[2]], row["envelope_to"]
assert row["status"] == "5.1.1" and row["reason"] == "userunknown" and row["hard_bounce"] is True
PY
  echo "$exid -> $blid"
}

# 2. SMTP route.
start_exim
say "exim daemon on 127.0.0.1:$EXIM_PORT, bouncelens smtp on $BL_SMTP, lmtp on $BL_LMTP"
ids=$(relay "$VERP" "$WORK/bl-smtp/var/events.jsonl" bouncelens_smtp)
say "ok: SMTP route: Exim $ids -> events row (userunknown, VERP envelope)"

# 3. Refusals at the border.
if out=$(send nobody@bounces.example.com); then die "Exim accepted nobody@bounces.example.com"; fi
grep -q "550 Unrouteable address" <<<"$out" || die "unknown bounce address: $(grep '<\*\*' <<<"$out")"
if out=$(send victim@example.net); then die "Exim relayed to example.net"; fi
grep -q "relay not permitted" <<<"$out" || die "relaying: $(grep '<\*\*' <<<"$out")"
say "ok: Exim refuses unknown bounce addresses (550 Unrouteable address) and relaying"

# 4. LMTP route.
stop_exim
write_conf bouncelens_lmtp
start_exim
ids=$(relay "$VERP" "$WORK/bl-lmtp/var/events.jsonl" bouncelens_lmtp)
say "ok: LMTP route: Exim $ids -> events row"
say "PASS"
