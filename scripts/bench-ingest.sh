#!/usr/bin/env bash
# bench-ingest.sh — durable SMTP ingest: bouncelens against Postfix's smtp-sink.
#
# Sends COUNT copies of a 6 KB DSN with the null sender, one connection per message
# (as independent remote MTAs do), at 1, 8 and 32 parallel sessions, to smtp-sink
# (accepts and discards: the ceiling of the SMTP exchange itself) and to a release
# build of bouncelens on a fresh spool (fsynced before every 250). Prints a table:
# throughput and ratio, p99 accept -> classified (from bouncelens_processing_seconds),
# RSS idle and under load (VmRSS / VmHWM from /proc).
#
# Goals (issue 3): ratio >= 0.8 at 32 sessions; RSS < 30 MB idle, < 100 MB under load;
# p99 accept -> classified < 50 ms.
#
# Needs: smtp-source and smtp-sink (Debian package postfix, "No configuration"; installed
# here when running as root), ../shared/bench/{smtp-load.sh,dsn-6k.eml}.
# Each setting runs BENCH_ROUNDS times, alternating the two servers; the table shows
# medians (the machine may be shared: alternating makes background load hit both alike).
# Knobs: BENCH_COUNT (20000), BENCH_SESSIONS ("1 8 32"), BENCH_ROUNDS (3), BENCH_ADVICE=1 (advice on; off by
# default so the run measures the daemon's own path), BENCH_KEEP=1 (keep the work dir).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${BENCH_COUNT:-20000}
ROUNDS=${BENCH_ROUNDS:-3}
SESSIONS=${BENCH_SESSIONS:-"1 8 32"}
LOAD=${BENCH_LOAD:-../shared/bench/smtp-load.sh}
MSG=${BENCH_MSG:-../shared/bench/dsn-6k.eml}
[ -x "$LOAD" ] || { echo "bench: $LOAD missing" >&2; exit 2; }
[ -r "$MSG" ] || { echo "bench: $MSG missing" >&2; exit 2; }

if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench: installing postfix (No configuration) for smtp-source / smtp-sink" >&2
    apt-get update -qq >/dev/null
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
  else
    echo "bench: smtp-source / smtp-sink missing (apt-get install postfix)" >&2; exit 2
  fi
fi
export PATH="$PATH:/usr/sbin"

cargo build --release --locked -q
BIN=$PWD/target/release/bouncelens

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-ingest.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] && echo "bench: kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

# --- smtp-sink ---------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port)
SINK_USER=(); [ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)
smtp-sink "${SINK_USER[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")

# --- bouncelens ----------------------------------------------------------------
ADVICE=false; [ "${BENCH_ADVICE:-0}" = 1 ] && ADVICE=true
cat >"$WORK/bouncelens.toml" <<EOF
[smtp]
listen = ["127.0.0.1:0"]
hostname = "bench.test"
max_connections = 1024
[spool]
dir = "$WORK/spool"
events_log = "$WORK/events.jsonl"
[metrics]
listen = "127.0.0.1:0"
[advice]
enabled = $ADVICE
outbox_dir = "$WORK/outbox"
EOF
RUST_LOG=info "$BIN" serve --config "$WORK/bouncelens.toml" 2>"$WORK/bouncelens.log" &
BL_PID=$!
PIDS+=("$BL_PID")
for _ in $(seq 100); do grep -q "bouncelens ready" "$WORK/bouncelens.log" 2>/dev/null && break; sleep 0.1; done
grep -q "bouncelens ready" "$WORK/bouncelens.log" || { cat "$WORK/bouncelens.log" >&2; exit 1; }
BL_PORT=$(sed -n 's/.*smtp listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/bouncelens.log" | head -1)
BL_HTTP=$(sed -n 's#.*metrics listening on http://\(127\.0\.0\.1:[0-9]*\)/.*#\1#p' "$WORK/bouncelens.log" | head -1)

metrics() { curl -fsS "http://$BL_HTTP/metrics"; }
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$BL_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${1:-$BL_PID}/stat"; }
sleep 1
IDLE_KB=$(kb VmRSS)
CPU0=$(cpu_ticks)
SINK_CPU0=$(cpu_ticks "$SINK_PID")

# Sum of a metric family (optionally filtered by a label substring).
msum() { awk -v f="$1" -v l="${2:-}" '$1 ~ "^"f"({|$)" && index($1, l) { s += $2 } END { printf "%d", s }'; }

# p99 bucket (ms) of the processing histogram between two metric snapshots.
p99_ms() {
  awk '
    FNR == 1 { file++ }
    /^bouncelens_processing_seconds_bucket/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      if (file == 1) before[le] = $2; else { after[le] = $2; order[++n] = le }
    }
    END {
      total = after["+Inf"] - before["+Inf"]
      if (total <= 0) { print "n/a"; exit }
      want = 0.99 * total
      for (i = 1; i <= n; i++) {
        le = order[i]
        if (after[le] - before[le] >= want) {
          if (le == "+Inf") print ">10000"; else printf "<=%g", le * 1000
          exit
        }
      }
    }' "$1" "$2"
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A SINK RATE P99 RSSMAX DRAIN
processed=0
for s in $SESSIONS; do
  metrics >"$WORK/before.txt"
  sink_runs="" bl_runs="" drain_max=0
  ( while kill -0 "$BL_PID" 2>/dev/null; do kb VmRSS; sleep 0.2; done ) >"$WORK/rss.$s" &
  SAMPLER=$!
  # Alternate the two servers so load from elsewhere on the machine hits both alike.
  for r in $(seq "$ROUNDS"); do
    echo "bench: $COUNT messages, $s sessions, round $r: smtp-sink" >&2
    sink_runs+=" $("$LOAD" 127.0.0.1 "$SINK_PORT" "$COUNT" "$s" "$MSG" | sed -n 's/^msgs_per_s=//p')"
    echo "bench: $COUNT messages, $s sessions, round $r: bouncelens" >&2
    bl_runs+=" $("$LOAD" 127.0.0.1 "$BL_PORT" "$COUNT" "$s" "$MSG" | sed -n 's/^msgs_per_s=//p')"
    t0=$(date +%s%N)
    processed=$((processed + COUNT))
    for _ in $(seq 1200); do
      m=$(metrics)
      done_n=$(msum bouncelens_messages_total <<<"$m")
      pend=$(msum bouncelens_spool_pending <<<"$m")
      [ "$done_n" -ge "$processed" ] && [ "$pend" -eq 0 ] && break
      sleep 0.1
    done
    d=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$d" -gt "$drain_max" ] && drain_max=$d
  done
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true
  echo "bench: $s sessions: smtp-sink runs:$sink_runs; bouncelens runs:$bl_runs" >&2
  SINK[$s]=$(median <<<"$sink_runs")
  RATE[$s]=$(median <<<"$bl_runs")
  DRAIN[$s]=$drain_max
  metrics >"$WORK/after.txt"
  P99[$s]=$(p99_ms "$WORK/before.txt" "$WORK/after.txt")
  RSSMAX[$s]=$(sort -n "$WORK/rss.$s" | tail -1)
done
HWM_KB=$(kb VmHWM)
per_msg_us() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$processed" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }'; }
CPU_US=$(per_msg_us $(( $(cpu_ticks) - CPU0 )))
SINK_CPU_US=$(per_msg_us $(( $(cpu_ticks "$SINK_PID") - SINK_CPU0 )))
FINAL=$(metrics)

printf '\n%-9s %16s %17s %7s %14s %14s %13s\n' sessions "smtp-sink msg/s" "bouncelens msg/s" ratio "p99 acc->cls" "max drain" "RSS max"
for s in $SESSIONS; do
  ratio=$(awk -v a="${RATE[$s]}" -v b="${SINK[$s]}" 'BEGIN { printf "%.2f", a / b }')
  printf '%-9s %16s %17s %7s %11s ms %11s ms %10.1f MB\n' "$s" "${SINK[$s]}" "${RATE[$s]}" "$ratio" "${P99[$s]}" "${DRAIN[$s]}" \
    "$(awk -v k="${RSSMAX[$s]}" 'BEGIN { print k / 1024 }')"
done
echo
awk -v i="$IDLE_KB" -v h="$HWM_KB" 'BEGIN { printf "RSS idle %.1f MB (goal < 30), peak VmHWM %.1f MB (goal < 100)\n", i / 1024, h / 1024 }'
echo "CPU (user+system) per message: bouncelens $CPU_US us (receive, fsync, classify, events log); smtp-sink $SINK_CPU_US us"
echo "messages processed: $(msum bouncelens_messages_total <<<"$FINAL") of $processed; events rows: $(wc -l <"$WORK/events.jsonl"); quarantined: $(msum bouncelens_quarantined_total <<<"$FINAL")"
echo "advice: $ADVICE; $COUNT messages per run, median of $ROUNDS runs, one connection per message; $(nproc) CPUs; bouncelens $("$BIN" --version)"
