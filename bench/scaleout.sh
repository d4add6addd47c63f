#!/usr/bin/env bash
# scaleout.sh: one `demandpipe run` against a scale-out deployment of the
# same input on this machine: one dedup process (`run -role=dedup`, reading
# the file) and AGGS aggregate processes (`run -role=aggregate`, ranges
# split evenly) over the Pulsar test double (pulsartestd, a separate
# process), in alternating rounds; prints every run and the medians.
# pipeline/SCALEOUT.md ("What a deployment costs") has the figures and how
# to read them.
#
#	bench/scaleout.sh                       # 3 rounds, 1 dedup + 3 aggregate processes
#	AGGS=1 ROUNDS=5 EVENTS=1000000 bench/scaleout.sh
#
# Knobs (environment): ROUNDS (3), EVENTS (500000, gen defaults, seed 1),
# AGGS (3), REGION_RES (3: -scaleout.region-res), EXTRA (more run flags,
# given to every process), WORK (a scratch directory, default a fresh temp
# dir; the input is kept there and reused), BIN (a directory holding
# demandpipe and pulsartestd already built; default: build both from this
# tree into WORK).
#
# Every process writes to null: (no sink cost), so the comparison is the
# engine split in two plus the internal topic. Wall time runs from the
# first process's start to the last one's exit (start-up and connecting
# included). CPU is each process's own user+sys: the demandpipe processes'
# from /usr/bin/time, pulsartestd's from /proc/PID/stat just before it is
# stopped. Rows are the summaries' "rows written", summed over the
# aggregate processes; a deployment whose rows differ in number from the
# single run's fails the script (the tests check the rows themselves).
# This machine runs every process on the same cores: the figures say what
# the split costs, not how it scales across machines.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
EVENTS=${EVENTS:-500000}
AGGS=${AGGS:-3}
REGION_RES=${REGION_RES:-3}
EXTRA=${EXTRA:-}
WORK=${WORK:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TCK=$(getconf CLK_TCK)

mkdir -p "$WORK"
if [ -z "${BIN:-}" ]; then
	BIN=$WORK
	echo "building into $BIN" >&2
	(cd "$ROOT" && go build -o "$BIN/demandpipe" ./cmd/demandpipe && go build -o "$BIN/pulsartestd" ./internal/pulsartest/cmd/pulsartestd)
fi
IN="$WORK/events-$EVENTS.ndjson"
if [ ! -s "$IN" ]; then
	"$BIN/demandpipe" gen -events "$EVENTS" -seed 1 -o "$IN" >&2
fi
COMMON=(-sink null: -serve '' -progress never -log.level warn)

# rows FILE: the "rows written" of a run summary.
rows() { awk '/rows written/ {print $3}' "$1"; }

# cpu FILE: user+sys seconds of a /usr/bin/time -f 'TIME %e %U %S' file.
cpu() { awk '{print $3 + $4}' "$1"; }

# single: one run; prints "single wall_s rows cpu_s 0 cpu_s 0".
single() {
	local status=0
	# shellcheck disable=SC2086
	/usr/bin/time -f 'TIME %e %U %S' -o "$WORK/time" "$BIN/demandpipe" run -source "file:$IN" "${COMMON[@]}" $EXTRA \
		2>"$WORK/run.err" || status=$?
	local n
	n=$(rows "$WORK/run.err")
	if [ "$status" != 0 ] || [ -z "$n" ]; then
		echo "the single run failed (status $status):" >&2
		tail -20 "$WORK/run.err" >&2
		exit 1
	fi
	read -r _ wall _ _ <"$WORK/time"
	echo "single $wall $n $(cpu "$WORK/time") 0 $(cpu "$WORK/time") 0"
}

# deployment: pulsartestd, AGGS aggregate processes, one dedup process;
# prints "deploy wall_s rows cpu_s broker_cpu_s dedup_cpu_s busiest_aggregate_cpu_s".
deployment() {
	rm -f "$WORK"/agg*.err "$WORK"/agg*.time
	: >"$WORK/broker.err" # exists before the background process opens it
	"$BIN/pulsartestd" -addr 127.0.0.1:0 2>"$WORK/broker.err" &
	local bpid=$! url=""
	for _ in $(seq 200); do
		url=$(sed -n 's/.*serving \(pulsar:\/\/[0-9.:]*\).*/\1/p' "$WORK/broker.err")
		[ -n "$url" ] && break
		sleep 0.05
	done
	if [ -z "$url" ]; then
		echo "pulsartestd did not start:" >&2
		cat "$WORK/broker.err" >&2
		exit 1
	fi
	local topic="persistent://public/default/bench-$RANDOM$RANDOM"
	local roles=(-scaleout.url="$url" -scaleout.topic="$topic" -scaleout.region-res="$REGION_RES")
	local start pids=() i lo hi
	start=$(date +%s.%N)
	for i in $(seq 0 $((AGGS - 1))); do
		lo=$((65536 * i / AGGS))
		hi=$((65536 * (i + 1) / AGGS - 1))
		# shellcheck disable=SC2086
		/usr/bin/time -f 'TIME %e %U %S' -o "$WORK/agg$i.time" "$BIN/demandpipe" run -role=aggregate \
			-scaleout.ranges="$lo-$hi" "${roles[@]}" "${COMMON[@]}" $EXTRA 2>"$WORK/agg$i.err" &
		pids+=($!)
	done
	local status=0
	# shellcheck disable=SC2086
	/usr/bin/time -f 'TIME %e %U %S' -o "$WORK/dedup.time" "$BIN/demandpipe" run -role=dedup -source "file:$IN" \
		"${roles[@]}" "${COMMON[@]}" $EXTRA 2>"$WORK/dedup.err" || status=$?
	for p in "${pids[@]}"; do
		wait "$p" || status=$?
	done
	local end
	end=$(date +%s.%N)
	local broker
	broker=$(awk -v t="$TCK" '{printf "%.2f", ($14+$15)/t}' "/proc/$bpid/stat")
	kill "$bpid"
	wait "$bpid" || true
	if [ "$status" != 0 ]; then
		echo "the deployment failed (status $status):" >&2
		tail -8 "$WORK/dedup.err" "$WORK"/agg*.err >&2
		exit 1
	fi
	local n=0 c d a busiest=0
	d=$(cpu "$WORK/dedup.time")
	c=$d
	for i in $(seq 0 $((AGGS - 1))); do
		n=$((n + $(rows "$WORK/agg$i.err")))
		a=$(cpu "$WORK/agg$i.time")
		c=$(echo "$c + $a" | bc)
		busiest=$(echo "if ($a > $busiest) $a else $busiest" | bc)
	done
	echo "deploy $(echo "$end - $start" | bc) $n $c $broker $d $busiest"
}

echo "input: $IN ($EVENTS events); 1 dedup + $AGGS aggregate processes, region res $REGION_RES; extra='$EXTRA'; $(nproc) cores; $(go version | cut -d' ' -f3)"
printf '%-7s %7s %9s %10s %10s %11s %12s %10s %12s\n' what wall_s rows events/s cpu_s cpu_us/event broker_cpu_s dedup_cpu_s busiest_agg_s
: >"$WORK/results"
for r in $(seq "$ROUNDS"); do
	order=(single deployment)
	[ $((r % 2)) = 0 ] && order=(deployment single)
	for s in "${order[@]}"; do
		line=$($s) || exit 1
		echo "$line" >>"$WORK/results"
		echo "$line" | awk -v e="$EVENTS" '{printf "%-7s %7.2f %9d %10.0f %10.2f %11.2f %12.2f %10.2f %12.2f\n", $1, $2, $3, e/$2, $4, 1e6*$4/e, $5, $6, $7}'
	done
done
want=$(awk '$1=="single" {print $3; exit}' "$WORK/results")
if awk -v w="$want" '$3 != w {bad=1} END {exit !bad}' "$WORK/results"; then
	echo "rows differ between runs: $(awk '{print $1, $3}' "$WORK/results" | tr '\n' ' ')" >&2
	exit 1
fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for s in single deploy; do
	eps=$(awk -v s="$s" -v e="$EVENTS" '$1==s {print e/$2}' "$WORK/results" | median)
	cpu=$(awk -v s="$s" -v e="$EVENTS" '$1==s {print 1e6*$4/e}' "$WORK/results" | median)
	brk=$(awk -v s="$s" -v e="$EVENTS" '$1==s {print 1e6*$5/e}' "$WORK/results" | median)
	ded=$(awk -v s="$s" -v e="$EVENTS" '$1==s {print 1e6*$6/e}' "$WORK/results" | median)
	agg=$(awk -v s="$s" -v e="$EVENTS" '$1==s {print 1e6*$7/e}' "$WORK/results" | median)
	split=""
	[ "$s" = deploy ] && split=" (dedup process $(printf '%.2f' "$ded"), busiest aggregate process $(printf '%.2f' "$agg"))"
	echo "median $s: $(printf '%.0f' "$eps") events/s, demandpipe $(printf '%.2f' "$cpu") us/event CPU$split, broker $(printf '%.2f' "$brk") us/event CPU"
	eval "eps_$s=$(printf %.0f "$eps") cpu_$s=$(printf %.4f "$cpu")"
done
# shellcheck disable=SC2154
echo "deployment/single: events/s $(echo "scale=3; $eps_deploy / $eps_single" | bc), demandpipe CPU per event $(echo "scale=3; $cpu_deploy / $cpu_single" | bc)"
