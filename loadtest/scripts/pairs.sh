#!/usr/bin/env bash
# Compares two servers on one scenario in pairs taken A B, B A, A B, ...: one figure
# of the scenario's report per run, the ratio B/A per pair, and the median of those
# ratios with their range. On a shared or virtual machine the speed moves by ±10%
# within minutes; a pair's two runs share those minutes, and the median of many
# pairs is what a change can be judged on (docs/benchmarks.md, wave 18).
#
# usage: loadtest/scripts/pairs.sh [-n PAIRS] [-f FIGURE] [-l LATENCY] [-g GENERATOR] \
#            -a 'SERVER A COMMAND' -b 'SERVER B COMMAND' -- SCENARIO ARGS...
#
#   SERVER X COMMAND  a server that takes `--addr HOST:PORT` (appended), such as
#                     'target/release/loadtest serve --tick-rate 30 --room-size 8'
#   SCENARIO ARGS     the scenario and its options, without --url and --server-pid
#                     (appended), such as: rooms --rooms 100 --players 8 --hz 30
#                     --tick-rate 30 --duration 6 --player raw
#   FIGURE            the report's figure to compare (default
#                     server_cpu_us_per_input_and_state)
#   LATENCY           the report's latency whose p50 and p99 each run shows
#                     (default input_to_state; `delivery` for fanout)
#   GENERATOR         the load generator (default target/release/loadtest)
#
# Example, two builds of the server with an io window of 4 ms each:
#   loadtest/scripts/pairs.sh -n 8 \
#     -a '/tmp/before serve --tick-rate 30 --room-size 8 --io-window-us 4000' \
#     -b 'target/release/loadtest serve --tick-rate 30 --room-size 8 --io-window-us 4000' \
#     -- rooms --rooms 100 --players 8 --hz 30 --tick-rate 30 --duration 6 --player raw
set -euo pipefail

pairs=8
figure=server_cpu_us_per_input_and_state
latency=input_to_state
generator=target/release/loadtest
a=
b=
while getopts "n:f:l:g:a:b:" opt; do
  case $opt in
    n) pairs=$OPTARG ;;
    f) figure=$OPTARG ;;
    l) latency=$OPTARG ;;
    g) generator=$OPTARG ;;
    a) a=$OPTARG ;;
    b) b=$OPTARG ;;
    *) sed -n '8,22p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
if [ -z "$a" ] || [ -z "$b" ] || [ $# -eq 0 ]; then
  sed -n '8,22p' "$0"
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A figure of a report: `"name": value` in the pretty JSON (the first one: the
# `figures` object comes before the per-scenario details).
figure_of() {
  { grep -o "\"$1\": *[0-9.]*" "$2" || true; } | head -n 1 | sed 's/.*: *//'
}

# Percentile `$1` (p50_us, p99_us) of the report's latency `$latency`, or `-` where
# the scenario has none.
latency_of() {
  local value
  value=$(tr -d '\n ' <"$2" | grep -o "\"$latency\":{[^}]*}" |
    grep -o "\"$1\":[0-9]*" | head -n 1 | sed 's/.*://') || true
  echo "${value:--}"
}

# Whether something accepts connections on loopback port `$1`.
taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Runs the server command `$2` on a free port from `$1` on and the scenario (the
# other arguments) against it; prints the figure, the latency p50 and p99 (or -),
# and whether the scenario passed (a failed one is shown as FAILED, its figure
# still compared). A port something else holds (a listener, or a connection's end
# that keeps the server from binding it) is skipped for the next.
run() {
  local port=$1 command=$2
  shift 2
  local server attempt up
  for attempt in 1 2 3 4 5 6 7 8; do
    while taken "$port"; do port=$((port + 1)); done
    rm -f "$work/report.json"
    # shellcheck disable=SC2086 # the server command is words on purpose
    $command --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
    server=$!
    up=
    for _ in $(seq 100); do
      if taken "$port"; then
        up=1
        break
      fi
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    if [ -n "$up" ] && kill -0 "$server" 2>/dev/null; then
      break
    fi
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    if grep -q "Address already in use" "$work/server.log" && [ "$attempt" -lt 8 ]; then
      port=$((port + 1))
      continue
    fi
    echo "the server exited: $(tail -n 3 "$work/server.log")" >&2
    return 1
  done
  local passed=passed
  "$generator" "$@" --url "ws://127.0.0.1:$port/volley" --server-pid "$server" \
    --json "$work/report.json" >"$work/scenario.log" 2>&1 || passed=FAILED
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  local value
  value=$(figure_of "$figure" "$work/report.json" 2>/dev/null)
  if [ -z "$value" ]; then
    echo "no figure $figure in the report: $(tail -n 3 "$work/scenario.log")" >&2
    return 1
  fi
  echo "$value $(latency_of p50_us "$work/report.json") $(latency_of p99_us "$work/report.json") $passed"
}

echo "each run: $figure, $latency p50 and p99 (µs, - if none), the scenario's result"
printf '%-5s %-36s %-36s %s\n' pair A B B/A
ratios=()
# Below the ephemeral range (32768 and up by default), where the clients' own ends
# of their connections are.
port=$((10000 + RANDOM % 20000))
for p in $(seq "$pairs"); do
  port=$((port + 10))
  if [ $((p % 2)) -eq 1 ]; then
    ra=$(run "$port" "$a" "$@") || exit 1
    rb=$(run $((port + 5)) "$b" "$@") || exit 1
  else
    rb=$(run "$port" "$b" "$@") || exit 1
    ra=$(run $((port + 5)) "$a" "$@") || exit 1
  fi
  ratio=$(awk -v x="${ra%% *}" -v y="${rb%% *}" 'BEGIN { printf "%.3f", y / x }')
  ratios+=("$ratio")
  printf '%-5s %-36s %-36s %s\n' "$p" "$ra" "$rb" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '
  { r[NR] = $1 }
  END {
    m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "B/A median %.3f (range %.3f–%.3f, %d pairs)\n", m, r[1], r[NR], NR
  }'
