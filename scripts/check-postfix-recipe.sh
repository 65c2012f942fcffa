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
# packages; installed here when missing: postfix with "No configuration"), python3.
# CHECK_KEEP=1 keeps the work dir for a look afterwards. Helpers: scripts/recipe-check-lib.sh.
set -euo pipefail
CHECK_NAME=check-postfix-recipe
. "$(dirname "$0")/recipe-check-lib.sh"
DOC=$ROOT/docs/postfix.md

need_root_and_packages postfix swaks
build_bouncelens
make_work
CONF=$WORK/postfix
POSTFIX_UP=0
cleanup() {
  local rc=$? mp
  if [ "$POSTFIX_UP" = 1 ]; then postfix -c "$CONF" stop >/dev/null 2>&1 || true; fi
  # postfix stop returns before master has gone: wait for it too (bounded).
  mp=$(tr -dc 0-9 <"$WORK/queue/pid/master.pid" 2>/dev/null || true)
  stop_pids "${BL_PIDS[@]}" $mp
  finish $rc "$WORK/postfix.log" "$WORK"/bl-*.log
}
trap cleanup EXIT
trap 'exit 130' INT TERM

block() { doc_block "$DOC" check-postfix-recipe "$1"; }
# The doc's bouncelens config listens where its transport map delivers.
for pair in bouncelens.toml:2525 bouncelens-lmtp.toml:2424 bouncelens-single.toml:2525; do
  block "${pair%:*}" | grep -qF "\"127.0.0.1:${pair#*:}\"" ||
    die "docs/postfix.md: block ${pair%:*} does not listen on 127.0.0.1:${pair#*:} as its transport says"
done
# Doc text -> this instance: /etc/postfix -> our config dir, the doc's ports -> bouncelens's.
localize() {
  sed -e "s#/etc/postfix/#$CONF/#g" \
    -e "s#127\.0\.0\.1:2525#127.0.0.1:$BL_SMTP#g" -e "s#127\.0\.0\.1\]:2525#127.0.0.1]:$BL_SMTP#g" \
    -e "s#127\.0\.0\.1:2424#127.0.0.1:$BL_LMTP#g" -e "s#127\.0\.0\.1\]:2424#127.0.0.1]:$BL_LMTP#g"
}

PF_PORT=$(free_port)
BL_SMTP="" BL_LMTP=""

# --- a throwaway Postfix instance -------------------------------------------------
mkdir -p "$CONF" "$WORK/queue" "$WORK/data"
chown postfix "$WORK/data"
cat >"$CONF/main.cf" <<MAIN
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
MAIN
cat >"$CONF/master.cf" <<MASTER
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
MASTER

start_bouncelens smtp < <(block bouncelens.toml | any_port)
BL_SMTP=$BL_PORT

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

# Relays the sample bounce to RCPT through Postfix, checks that Postfix delivered it to
# bouncelens on PORT and the events row in bl-NAME. Prints "postfix-id -> bouncelens-id".
relay() { # RCPT NAME PORT
  local out pfid line="" blid
  out=$(send_bounce "$PF_PORT" "$1") || die "Postfix refused the bounce: $out"
  pfid=$(sed -n 's/.*250 2\.0\.0 Ok: queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$out")
  [ -n "$pfid" ] || die "no Postfix queue id in: $out"
  for _ in $(seq 300); do
    line=$(grep -F "$pfid: to=<" "$WORK/postfix.log" | grep -F "status=sent" | tail -n 1 || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || die "Postfix did not deliver $pfid within 30 s: $(grep -F "$pfid:" "$WORK/postfix.log" | tail -n 3)"
  say "postfix: ${line#*: }"
  grep -qF "relay=127.0.0.1[127.0.0.1]:$3," <<<"$line" || die "delivered elsewhere than 127.0.0.1:$3"
  blid=$(sed -n 's/.*queued as \([A-Za-z0-9]*\).*/\1/p' <<<"$line")
  [ -n "$blid" ] || die "Postfix's delivery line has no bouncelens queue id"
  check_events_row "$blid" "$WORK/bl-$2/var/events.jsonl" "$1"
  echo "$pfid -> $blid"
}

# --- 1. SMTP route --------------------------------------------------------------
VERP=bounces+hanako=example.jp@bounces.example.com
ids=$(relay "$VERP" smtp "$BL_SMTP")
say "ok: SMTP route: Postfix $ids -> events row (userunknown, VERP envelope)"

# --- 2. Postfix refuses what is not ours, at the border ----------------------------
if out=$(send_bounce "$PF_PORT" nobody@bounces.example.com); then die "Postfix accepted nobody@bounces.example.com"; fi
grep -q "550 5.1.1 .*User unknown in relay recipient table" <<<"$out" ||
  die "unknown bounce address not refused as the doc says: $(grep '<\*\*' <<<"$out")"
if out=$(send_bounce "$PF_PORT" victim@example.net); then die "Postfix relayed to example.net"; fi
grep -q "Relay access denied" <<<"$out" || die "relaying not refused: $(grep '<\*\*' <<<"$out")"
say "ok: Postfix refuses unknown bounce addresses (550 5.1.1) and relaying (Relay access denied)"

# --- 3. LMTP route ----------------------------------------------------------------
start_bouncelens lmtp < <(block bouncelens-lmtp.toml | any_port)
BL_LMTP=$BL_PORT
block transport-lmtp | localize >"$CONF/transport"
postmap -c "$CONF" "$CONF/transport"
postfix -c "$CONF" reload >/dev/null 2>&1
sleep 1
ids=$(relay "$VERP" lmtp "$BL_LMTP")
say "ok: LMTP route: Postfix $ids -> events row"

# --- 4. One address on a local domain ----------------------------------------------
start_bouncelens single < <(block bouncelens-single.toml | any_port)
BL_SMTP=$BL_PORT
block transport-single | localize >"$CONF/transport"
block aliases >"$CONF/aliases"
postmap -c "$CONF" "$CONF/transport"
postconf -c "$CONF" -e "mydestination = example.com" "alias_maps = hash:$CONF/aliases" \
  "alias_database = hash:$CONF/aliases"
postalias -c "$CONF" "$CONF/aliases" # newaliases
postfix -c "$CONF" reload >/dev/null 2>&1
sleep 1
ids=$(relay bounces+hanako=example.jp@example.com single "$BL_SMTP")
say "ok: single address: Postfix $ids -> events row"
say "PASS"
