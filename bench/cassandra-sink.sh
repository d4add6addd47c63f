#!/usr/bin/env bash
# cassandra-sink.sh: rows/s and client CPU per row of `demandpipe run` into
# null: against cassandra:// (the cqltestd test double, a separate process),
# on the same generated input, in alternating rounds; prints every run and
# the medians. sink/CASSANDRA.md ("Does the sink keep up with the engine?")
# has the figures and how to read them.
#
#	bench/cassandra-sink.sh                  # shared: both processes on both cores
#	ISOLATED=1 bench/cassandra-sink.sh       # demandpipe -parallelism=1 on core 0, cqltestd on core 1
#	ROUNDS=5 EVENTS=2000000 bench/cassandra-sink.sh
#
# Knobs (environment): ROUNDS (3), EVENTS (2000000, gen defaults, seed 1),
# ISOLATED (0), CODEC (snappy: the sink's default), EXTRA (more run flags),
# WORK (a scratch directory, default a fresh temp dir; the input is kept
# there and reused), BIN (a directory holding demandpipe and cqltestd
# already built; default: build both from this tree into WORK).
#
# CPU is each process's own user+sys: demandpipe's from /usr/bin/time (the
# rusage of the waited-for child), cqltestd's from /proc/PID/stat just
# before it is stopped. Rows are the run summary's "rows written"; rows/s
# divides them by the process's wall time (start-up and connecting
# included). A cassandra run gets a fresh cqltestd (nothing stored, and no
# checkpoint to resume from).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
EVENTS=${EVENTS:-2000000}
ISOLATED=${ISOLATED:-0}
CODEC=${CODEC:-snappy}
EXTRA=${EXTRA:-}
WORK=${WORK:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TCK=$(getconf CLK_TCK)

mkdir -p "$WORK"
if [ -z "${BIN:-}" ]; then
	BIN=$WORK
	echo "building into $BIN" >&2
	(cd "$ROOT" && go build -o "$BIN/demandpipe" ./cmd/demandpipe && go build -o "$BIN/cqltestd" ./internal/cqltest/cmd/cqltestd)
fi
IN="$WORK/events-$EVENTS.ndjson"
if [ ! -s "$IN" ]; then
	"$BIN/demandpipe" gen -events "$EVENTS" -seed 1 -o "$IN" >&2
fi

DP=("$BIN/demandpipe")
CQ=("$BIN/cqltestd")
PAR=()
if [ "$ISOLATED" = 1 ]; then
	DP=(taskset -c 0 "$BIN/demandpipe")
	CQ=(taskset -c 1 "$BIN/cqltestd")
	PAR=(-parallelism=1)
fi

# run SINK: one run; prints "sink wall_s rows dp_cpu_s cq_cpu_s".
run() {
	local sink=$1 url cqpid="" addr cq=0
	if [ "$sink" = cassandra ]; then
		"${CQ[@]}" -addr 127.0.0.1:0 2>"$WORK/cq.err" &
		cqpid=$!
		for _ in $(seq 200); do
			addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/cq.err")
			[ -n "$addr" ] && break
			sleep 0.05
		done
		url="cassandra://${addr}/bench?create=true&rf=1&compression=$CODEC"
	else
		url=null:
	fi
	local status=0
	# shellcheck disable=SC2086
	/usr/bin/time -f 'TIME %e %U %S' -o "$WORK/time" "${DP[@]}" run "${PAR[@]}" -source "file:$IN" \
		-sink "$url" -serve '' -progress never -log.level warn $EXTRA 2>"$WORK/run.err" || status=$?
	if [ -n "$cqpid" ]; then
		# utime and stime are fields 14 and 15 of /proc/PID/stat (the
		# command name, field 2, has no spaces here).
		cq=$(awk -v t="$TCK" '{printf "%.2f", ($14+$15)/t}' "/proc/$cqpid/stat")
		kill "$cqpid"
		wait "$cqpid" || true
	fi
	local rows
	rows=$(awk '/rows written/ {print $3}' "$WORK/run.err")
	if [ "$status" != 0 ] || [ -z "$rows" ]; then
		echo "run into $url failed (status $status); its stderr and the double's:" >&2
		tail -20 "$WORK/run.err" "$WORK/cq.err" >&2
		exit 1
	fi
	read -r _ wall user sys <"$WORK/time"
	echo "$sink $wall $rows $(echo "$user + $sys" | bc) $cq"
}

echo "input: $IN ($EVENTS events); isolated=$ISOLATED codec=$CODEC extra='$EXTRA'; $(nproc) cores; $(go version | cut -d' ' -f3)"
printf '%-9s %7s %9s %9s %10s %10s %10s\n' sink wall_s rows rows/s dp_cpu_s dp_us/row cq_cpu_s
: >"$WORK/results"
for r in $(seq "$ROUNDS"); do
	order=(null cassandra)
	[ $((r % 2)) = 0 ] && order=(cassandra null)
	for s in "${order[@]}"; do
		line=$(run "$s") || exit 1
		echo "$line" >>"$WORK/results"
		echo "$line" | awk '{printf "%-9s %7.2f %9d %9.0f %10.2f %10.2f %10.2f\n", $1, $2, $3, $3/$2, $4, 1e6*$4/$3, $5}'
	done
done

# Medians per sink of rows/s, client CPU per row and the double's CPU per row.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for s in null cassandra; do
	rps=$(awk -v s="$s" '$1==s {print $3/$2}' "$WORK/results" | median)
	cpu=$(awk -v s="$s" '$1==s {print 1e6*$4/$3}' "$WORK/results" | median)
	cq=$(awk -v s="$s" '$1==s {print 1e6*$5/$3}' "$WORK/results" | median)
	echo "median $s: $(printf '%.0f' "$rps") rows/s, client $(printf '%.2f' "$cpu") us/row CPU, cqltestd $(printf '%.2f' "$cq") us/row CPU"
	eval "rps_$s=$rps cpu_$s=$cpu"
done
# shellcheck disable=SC2154
echo "cassandra/null: rows/s $(echo "scale=3; $rps_cassandra / $rps_null" | bc), client CPU per row $(echo "scale=3; $cpu_cassandra / $cpu_null" | bc)"
