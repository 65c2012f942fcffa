#!/usr/bin/env bash
# check-postfix-recipe.sh — runs docs/postfix.md as written, on loopback, and checks it.
#
# Starts a throwaway Postfix instance (its own config dir, queue and log under a temp dir,
# `postfix -c DIR`; the machine's own Postfix, if any, is not touched) listening on a free
# 127.0.0.1 port, configures it with the marked blocks of docs/postfix.md (transport map,
# recipient map, the postconf/postmap/postfix commands; /etc/postfix and the bouncelens
# port are the only things rewritten), starts bouncelens with the doc's config, and:
#   1. relays examples/bounce-5.1.1.eml, sent with the null sender to a VERP address,
#      through Postfix to bouncelens over SMTP -> the events log has its row, with the
#      queue id Postfix logged, the VERP envelope and reason userunknown;
#   2. checks that Postfix itself refuses an unknown address in the bounce domain (the
#      recipient map with recipient_delimiter) and relaying to other domains;
#   3. switches to the doc's LMTP variant (transport-lmtp + protocol = "lmtp") and relays
#      the bounce again -> a second row;
#   4. switches to the single-address variant (bounces@example.com on a local domain, an
#      alias, transport-single) and relays a bounce to a VERP address of it -> a row.
# Everything it starts is stopped on exit (trap); every wait is bounded.
#
# Needs root (Postfix runs its daemons as the postfix user), postfix and swaks (Debian
# packages; installed here when missing: postfix with "No configuration"), a release build.
# CHECK_KEEP=1 keeps the work dir for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DOC=$ROOT/docs/postfix.md
SAMPLE=$ROOT/examples/bounce-5.1.1.eml

say() { echo "check-postfix-recipe: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (Postfix starts its daemons as the postfix user)"
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v postfix >/dev/null || need+=(postfix)
command -v swaks >/dev/null || need+=(swaks)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get"
  say "installing ${need[*]}"
  apt-get update -qq >/dev/null
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

say "building bouncelens (release)"
cargo build --release --locked -q
BIN=$ROOT/target/release/bouncelens

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-postfix.XXXXXX")
chmod 755 "$WORK" # the postfix user must reach its queue inside
CONF=$WORK/postfix
BL_PIDS=()
POSTFIX_UP=0
cleanup() {
  local rc=$?
  if [ "$POSTFIX_UP" = 1 ]; then postfix -c "$CONF" stop >/dev/null 2>&1 || true; fi
  for p in "${BL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BL_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  # postfix stop returns before master has gone; wait for it (bounded).
  if [ -f "$WORK/queue/pid/master.pid" ]; then
    local mp
    mp=$(tr -dc 0-9 <"$WORK/queue/pid/master.pid")
    for _ in $(seq 100); do [ -n "$mp" ] && kill -0 "$mp" 2>/dev/null || break; sleep 0.1; done
    [ -n "$mp" ] && kill -9 "$mp" 2>/dev/null || true
  fi
  if [ $rc -ne 0 ]; then
    say "--- postfix log"; tail -n 30 "$WORK/postfix.log" >&2 2>/dev/null || true
    say "--- bouncelens log"; tail -n 30 "$WORK"/bl-*.log >&2 2>/dev/null || true
  fi
  if [ "${CHECK_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The fenced block that follows "<!-- check-postfix-recipe: NAME -->" in the doc.
block() {
  local out
  out=$(awk -v m="<!-- check-postfix-recipe: $1 -->" '
    $0 == m { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$DOC")
  [ -n "$out" ] || die "docs/postfix.md has no block marked '$1'"
  printf '%s\n' "$out"
}

# Doc text -> this instance: /etc/postfix -> our config dir, the doc's ports -> free ones.
localize() { sed -e "s#/etc/postfix/#$CONF/#g" -e "s#127\.0\.0\.1:2525#127.0.0.1:$BL_SMTP#g" \
  -e "s#127\.0\.0\.1\]:2525#127.0.0.1]:$BL_SMTP#g" -e "s#127\.0\.0\.1:2424#127.0.0.1:$BL_LMTP#g" \
  -e "s#127\.0\.0\.1\]:2424#127.0.0.1]:$BL_LMTP#g"; }

PF_PORT=$(free_port)
BL_SMTP=$(free_port)
BL_LMTP=$(free_port)

# --- bouncelens, as the doc configures it ---------------------------------------
start_bouncelens() { # NAME BLOCK
  local dir=$WORK/bl-$1
  mkdir -p "$dir"
  { block "$2" | localize; printf '\n[metrics]\nlisten = "127.0.0.1:0"\n'; } >"$dir/bouncelens.toml"
  "$BIN" check-config --config "$dir/bouncelens.toml" >/dev/null
  # Relative paths (var/spool, var/events.jsonl, var/outbox) land in $dir.
  (cd "$dir" && exec "$BIN" serve --config bouncelens.toml) 2>"$WORK/bl-$1.log" &
  BL_PIDS+=($!)
  for _ in $(seq 100); do grep -q "bouncelens ready" "$WORK/bl-$1.log" && return 0; sleep 0.1; done
  die "bouncelens ($1) did not start"
}

# --- a throwaway Postfix instance -------------------------------------------------
mkdir -p "$CONF" "$WORK/queue" "$WORK/data"
chown postfix "$WORK/data"
cat >"$CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/queue
data_directory = $WORK/data
maillog_file = $WORK/postfix.log
maillog_file_prefixes = $WORK
myhostname = mx.example.test
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# Our test client (127.0.0.1) is "the Internet", not a trusted network: relaying is
# decided by relay_domains alone.
mynetworks = 192.0.2.1/32
alias_maps =
alias_database =
smtpd_banner = \$myhostname ESMTP throwaway instance
EOF
cat >"$CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

start_bouncelens smtp bouncelens.toml

say "postfix on 127.0.0.1:$PF_PORT (config $CONF), bouncelens smtp on 127.0.0.1:$BL_SMTP"
postfix -c "$CONF" check
postfix -c "$CONF" start >/dev/null 2>&1 || die "postfix did not start: $(tail -n 5 "$WORK/postfix.log" 2>/dev/null)"
POSTFIX_UP=1
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && break; sleep 0.1; done

# The doc's files and commands, in order.
block transport | localize >"$CONF/transport"
block bouncelens_recipients | localize >"$CONF/bouncelens_recipients"
while IFS= read -r cmd; do
  [ -n "$cmd" ] || continue
  case "$cmd" in
    postconf\ *|postmap\ *|postfix\ *) ;;
    *) die "unexpected command in the doc's commands block: $cmd" ;;
  esac
  local_cmd=$(printf '%s\n' "$cmd" | localize | sed -E 's/^(postconf|postmap|postfix) /\1 -c "$CONF" /')
  say "doc: $cmd"
  eval "$local_cmd" >/dev/null
done < <(block commands)
sleep 1 # postfix reload: let master restart smtpd with the new settings
route=$(postmap -c "$CONF" -q bounces.example.com "hash:$CONF/transport")
[ "$route" = "smtp:[127.0.0.1]:$BL_SMTP" ] || die "postmap -q gives '$route'"

VERP=bounces+hanako=example.jp@bounces.example.com
send() { # RCPT -> swaks transcript; exit status of swaks
  swaks --server "127.0.0.1:$PF_PORT" --helo client.example.net --from '<>' --to "$1" \
    --data "$SAMPLE" --suppress-data --timeout 20 2>&1
}
events_for() { # QUEUE_ID_OF_BOUNCELENS FILE -> the rows
  grep -F "\"queue_id\":\"$1\"" "$2" 2>/dev/null || true
}
# Waits until Postfix logs delivery of its queue id PFID; prints bouncelens's queue id.
delivered_as() {
  local line=""
  for _ in $(seq 300); do
    line=$(grep -F "$1: to=<" "$WORK/postfix.log" | grep -F "status=sent" | tail -n 1 || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || die "Postfix did not deliver $1 within 30 s: $(grep -F "$1:" "$WORK/postfix.log" | tail -n 3)"
  say "postfix: ${line#*: }"
  sed -n 's/.*queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$line"
}
# Prints the events row for bouncelens queue id $1 in events log $2 (bounded wait).
wait_row() {
  local rows=""
  for _ in $(seq 100); do
    rows=$(events_for "$1" "$2")
    [ -n "$rows" ] && break
    sleep 0.1
  done
  [ -n "$rows" ] || die "no events row for queue id $1 in $2"
  printf '%s\n' "$rows"
}
check_row() { # ROW [ENVELOPE_TO]
  python3 - "$1" "${2:-$VERP}" <<'PY' || die "events row is not what the recipe should produce: $1"
import json, sys
row = json.loads(sys.argv[1])
assert row["envelope_from"] == "", row["envelope_from"]
assert row["envelope_to"] == [sys.argv[2]], row["envelope_to"]
assert row["recipient"] == "taro.yamada@example.com", row["recipient"]
assert row["status"] == "5.1.1" and row["reason"] == "userunknown" and row["hard_bounce"] is True
PY
}

# --- 1. SMTP route --------------------------------------------------------------
out=$(send "$VERP") || die "Postfix refused the bounce: $out"
PFID=$(sed -n 's/.*250 2\.0\.0 Ok: queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$out")
[ -n "$PFID" ] || die "no Postfix queue id in: $out"
BLID=$(delivered_as "$PFID")
[ -n "$BLID" ] || die "Postfix's delivery line has no bouncelens queue id"
ROW=$(wait_row "$BLID" "$WORK/bl-smtp/var/events.jsonl")
check_row "$ROW"
say "ok: SMTP route: Postfix $PFID -> bouncelens $BLID -> events row (userunknown, VERP envelope)"

# --- 2. Postfix refuses what is not ours, at the border ----------------------------
if out=$(send nobody@bounces.example.com); then die "Postfix accepted nobody@bounces.example.com"; fi
grep -q "550 5.1.1 .*User unknown in relay recipient table" <<<"$out" ||
  die "unknown bounce address not refused as the doc says: $(grep '<\*\*' <<<"$out")"
if out=$(send victim@example.net); then die "Postfix relayed to example.net"; fi
grep -q "Relay access denied" <<<"$out" || die "relaying not refused: $(grep '<\*\*' <<<"$out")"
say "ok: Postfix refuses unknown bounce addresses (550 5.1.1) and relaying (Relay access denied)"

# --- 3. LMTP route ----------------------------------------------------------------
start_bouncelens lmtp bouncelens-lmtp.toml
block transport-lmtp | localize >"$CONF/transport"
postmap -c "$CONF" "$CONF/transport"
postfix -c "$CONF" reload >/dev/null 2>&1
sleep 1
out=$(send "$VERP") || die "Postfix refused the bounce: $out"
PFID=$(sed -n 's/.*250 2\.0\.0 Ok: queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$out")
BLID=$(delivered_as "$PFID")
[ -n "$BLID" ] || die "Postfix's LMTP delivery line has no bouncelens queue id"
grep -F "$PFID: to=<" "$WORK/postfix.log" | grep -q "relay=127.0.0.1\[127.0.0.1\]:$BL_LMTP" ||
  die "the LMTP delivery did not go to bouncelens's LMTP port"
ROW=$(wait_row "$BLID" "$WORK/bl-lmtp/var/events.jsonl")
check_row "$ROW"
say "ok: LMTP route: Postfix $PFID -> bouncelens $BLID -> events row"

# --- 4. One address on a local domain ----------------------------------------------
BL_SMTP=$(free_port)
start_bouncelens single bouncelens-single.toml
block transport-single | localize >"$CONF/transport"
block aliases >"$CONF/aliases"
postmap -c "$CONF" "$CONF/transport"
postconf -c "$CONF" -e "mydestination = example.com" "alias_maps = hash:$CONF/aliases" \
  "alias_database = hash:$CONF/aliases"
postalias -c "$CONF" "$CONF/aliases" # newaliases
postfix -c "$CONF" reload >/dev/null 2>&1
sleep 1
VERP1=bounces+hanako=example.jp@example.com
out=$(send "$VERP1") || die "Postfix refused the bounce: $out"
PFID=$(sed -n 's/.*250 2\.0\.0 Ok: queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$out")
BLID=$(delivered_as "$PFID")
[ -n "$BLID" ] || die "Postfix's delivery line has no bouncelens queue id"
ROW=$(wait_row "$BLID" "$WORK/bl-single/var/events.jsonl")
check_row "$ROW" "$VERP1"
say "ok: single address: Postfix $PFID -> bouncelens $BLID -> events row"
say "PASS"
