#!/usr/bin/env bash
# Offline classification speed: bouncelens' CLI over a 10x copy of the corpus, pinned
# to one core, against Sisimai (Debian libsisimai-perl) on the same files in the same
# run. Prints messages/s for both and the ratio. Not a test: numbers vary by machine.
#
#   scripts/bench-classify.sh [COPIES]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
COPIES=${1:-10}
CORPUS=../shared/corpus/sisimai
[ -d "$CORPUS" ] || { echo "bench-classify: $CORPUS absent" >&2; exit 2; }

if ! perl -MSisimai -e1 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsisimai-perl >/dev/null
  else
    echo "bench-classify: Sisimai missing (apt-get install libsisimai-perl)" >&2
  fi
fi

cargo build --release --locked -q
BIN=target/release/bouncelens
WORK=$(mktemp -d /tmp/bench-classify.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for i in $(seq 1 "$COPIES"); do mkdir -p "$WORK/x$i" && cp "$CORPUS"/* "$WORK/x$i/"; done
FILES=$(find "$WORK" -type f | wc -l)
# Count messages as bouncelens sees them (mbox files can hold several).
MSGS=$("$BIN" classify --format jsonl "$WORK" | python3 -c '
import sys, json
seen = set()
for line in sys.stdin:
    r = json.loads(line); seen.add((r["source"], r["message_index"]))
print(len(seen))')

now() { date +%s.%N; }
best=""
for run in 1 2 3; do
  t0=$(now); taskset -c 0 "$BIN" classify --format jsonl "$WORK" > /dev/null; t1=$(now)
  s=$(echo "$t1 - $t0" | bc -l)
  if [ -z "$best" ] || [ "$(echo "$s < $best" | bc -l)" = 1 ]; then best=$s; fi
done
BL_RATE=$(echo "$MSGS / $best" | bc -l)
printf 'bouncelens: %d files, %d messages, best of 3: %.3f s on one core = %.0f messages/s\n' "$FILES" "$MSGS" "$best" "$BL_RATE"

if perl -MSisimai -e1 2>/dev/null; then
  # Sisimai over one copy (it is slow), also pinned to one core, best of 3 like ours
  # (one run of each is at the mercy of a noisy neighbour).
  si_best=""
  for run in 1 2 3; do
    t0=$(now)
    taskset -c 0 perl -MSisimai -e 'my $n = 0; for my $f (@ARGV) { my $v = Sisimai->make($f); $n += $v ? scalar @$v : 0 } print STDERR "sisimai rows: $n\n"' "$WORK"/x1/* 2>"$WORK/sisimai.err"
    t1=$(now)
    s=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$si_best" ] || [ "$(echo "$s < $si_best" | bc -l)" = 1 ]; then si_best=$s; fi
  done
  cat "$WORK/sisimai.err" >&2
  SI_MSGS=$((MSGS / COPIES))
  SI_RATE=$(echo "$SI_MSGS / $si_best" | bc -l)
  printf 'sisimai %s: %d messages, best of 3: %.3f s on one core = %.0f messages/s\n' "$(perl -MSisimai -e 'print $Sisimai::VERSION')" "$SI_MSGS" "$si_best" "$SI_RATE"
  printf 'ratio bouncelens/sisimai: %.1fx\n' "$(echo "$BL_RATE / $SI_RATE" | bc -l)"
fi
