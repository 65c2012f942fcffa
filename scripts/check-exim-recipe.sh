#!/usr/bin/env bash
# check-exim-recipe.sh — runs docs/exim.md as written, on loopback, and checks it.
#
# Exim and Postfix cannot both be installed on Debian (both are the system MTA), and the
# benchmarks need Postfix's tools, so this does not install Exim: it downloads Debian's
# exim4-daemon-light package with `apt-get download` (installing only libidn12, the one
# library of it that Postfix does not bring), unpacks it into a temp dir, and runs that exim
# binary with `-C` and a throwaway configuration: the marked blocks of docs/exim.md (main-
# section line, router, transports) in a minimal exim.conf with the stock RCPT ACL, an Exim
# daemon on a free 127.0.0.1 port, and its spool and logs in the temp dir. bouncelens runs
# with the config of docs/postfix.md, which the Exim doc refers to. Then:
#   1. `exim -bt` routes a VERP address through the doc's router and transport;
#   2. a bounce (examples/bounce-5.1.1.eml, null sender, VERP recipient) relayed through the
#      Exim daemon reaches bouncelens over SMTP -> the events log has its row, with the
#      queue id Exim logged and the full VERP address;
#   3. an unknown address in the bounce domain and relaying elsewhere are refused;
#   4. the LMTP transport of the doc delivers to a bouncelens in LMTP mode.
# Everything started is stopped on exit (trap); every wait is bounded. Needs root, swaks,
# python3, and the system user Debian-exim (created here if missing, as the exim4 package
# would: the Debian binary has that user compiled in). CHECK_KEEP=1 keeps the work dir;
# CHECK_VERBOSE=1 shows exim -bt's output. Helpers: scripts/recipe-check-lib.sh.
set -euo pipefail
CHECK_NAME=check-exim-recipe
. "$(dirname "$0")/recipe-check-lib.sh"
DOC=$ROOT/docs/exim.md

need_root_and_packages swaks libidn12
getent group Debian-exim >/dev/null || groupadd --system Debian-exim
getent passwd Debian-exim >/dev/null ||
  useradd --system --gid Debian-exim --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
build_bouncelens
make_work
EXIM_PID=""
cleanup() {
  local rc=$?
  stop_pids $EXIM_PID "${BL_PIDS[@]}"
  finish $rc "$WORK/log/mainlog" "$WORK/log/paniclog" "$WORK"/bl-*.log
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

block() { doc_block "$DOC" check-exim-recipe "$1"; }
pblock() { doc_block "$ROOT/docs/postfix.md" check-postfix-recipe "$1"; }

# --- bouncelens with the config of docs/postfix.md ------------------------------------
start_bouncelens smtp < <(pblock bouncelens.toml | any_port)
BL_SMTP=$BL_PORT
start_bouncelens lmtp < <(pblock bouncelens-lmtp.toml | any_port)
BL_LMTP=$BL_PORT
# The doc's transports deliver to the ports the postfix.md configs listen on.
block transport | grep -q "port = 2525" || die "docs/exim.md: transport is not on port 2525"
block transport-lmtp | grep -q "port = 2424" || die "docs/exim.md: transport-lmtp is not on port 2424"
localize() { sed -e "s/port = 2525/port = $BL_SMTP/" -e "s/port = 2424/port = $BL_LMTP/"; }

# --- the Exim configuration ----------------------------------------------------------
EXIM_PORT=$(free_port)
mkdir -p "$WORK/spool" "$WORK/log"
chown Debian-exim:Debian-exim "$WORK/spool" "$WORK/log"
CONF=$WORK/exim.conf
write_conf() { # TRANSPORT-NAME-FOR-THE-ROUTER
  {
    cat <<MAIN
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
MAIN
    block main
    cat <<'ACL'
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept  domains       = +relay_to_domains
          endpass
          verify        = recipient
  deny    message       = relay not permitted

begin routers

ACL
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
  "$EXIM" -C "$CONF" -bd -q30s -oX "$EXIM_PORT" -oP "$WORK/exim.pid" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 100); do
    [ -s "$WORK/exim.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$EXIM_PORT") 2>/dev/null && break
    sleep 0.1
  done
  EXIM_PID=$(cat "$WORK/exim.pid" 2>/dev/null || true)
  [ -n "$EXIM_PID" ] || die "exim daemon did not start"
}
stop_exim() {
  stop_pids "$EXIM_PID"
  EXIM_PID=""
  rm -f "$WORK/exim.pid"
}

# Relays the sample bounce to RCPT through Exim, checks that Exim delivered it with the
# doc's router and TRANSPORT and the events row in bl-NAME. Prints "exim-id -> bouncelens-id".
relay() { # RCPT NAME TRANSPORT
  local out exid line="" blid
  out=$(send_bounce "$EXIM_PORT" "$1") || die "Exim refused the bounce: $out"
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
  check_events_row "$blid" "$WORK/bl-$2/var/events.jsonl" "$1"
  echo "$exid -> $blid"
}

# 2. SMTP route.
start_exim
say "exim daemon on 127.0.0.1:$EXIM_PORT, bouncelens smtp on $BL_SMTP, lmtp on $BL_LMTP"
ids=$(relay "$VERP" smtp bouncelens_smtp)
say "ok: SMTP route: Exim $ids -> events row (userunknown, VERP envelope)"

# 3. Refusals at the border.
if out=$(send_bounce "$EXIM_PORT" nobody@bounces.example.com); then die "Exim accepted nobody@bounces.example.com"; fi
grep -q "550 Unrouteable address" <<<"$out" || die "unknown bounce address: $(grep '<\*\*' <<<"$out")"
if out=$(send_bounce "$EXIM_PORT" victim@example.net); then die "Exim relayed to example.net"; fi
grep -q "relay not permitted" <<<"$out" || die "relaying: $(grep '<\*\*' <<<"$out")"
say "ok: Exim refuses unknown bounce addresses (550 Unrouteable address) and relaying"

# 4. LMTP route.
stop_exim
write_conf bouncelens_lmtp
start_exim
ids=$(relay "$VERP" lmtp bouncelens_lmtp)
say "ok: LMTP route: Exim $ids -> events row"
say "PASS"
