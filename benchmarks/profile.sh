#!/bin/sh
# profile.sh: profile one proxy while the compare harness runs one workload on it.
#
#   benchmarks/profile.sh WORKLOAD TARGET MODE [OUTDIR]
#
# WORKLOAD is tcp-connrate, ws or http (sizes raised so the load outlasts the
# window); TARGET longhaul, haproxy or nginx; MODE pprof (longhaul only: a CPU
# profile of WINDOW seconds, the allocations over the same window, and the
# process's utime+stime over it, its /metrics before and after, and at the
# end its live heap and goroutines) or strace (strace -c -f over WINDOW seconds,
# attached to every process of the target). Run from the repository root, as
# root (the harness installs haproxy, nginx and strace with apt-get).
# WAIT (default 4) seconds pass between the proxy's start and the window.
# See "Where the time goes" in benchmarks/README.md.
set -eu
workload=$1 target=$2 mode=$3 out=${4:-/tmp/longhaul-profile}
window=${WINDOW:-10} wait=${WAIT:-4}
debug=127.0.0.1:9901
mkdir -p "$out"
tag=$out/$workload-$target-$mode

case $workload in
tcp-connrate) sizes="-conns 200000" ;;
ws) sizes="-ws-msgs 300" ;; # 200 clients x 10 msg/s for 30 s
http) sizes="-http-n 400000" ;;
*) echo "unknown workload $workload" >&2; exit 2 ;;
esac
case $target in
longhaul) pattern='longhaul run --config' ;;
haproxy) pattern='haproxy -db' ;;
nginx) pattern='^nginx: ' ;;
*) echo "unknown target $target" >&2; exit 2 ;;
esac

# -longhaul-debug gives longhaul a debug listener with pprof on.
go run ./benchmarks/cmd/compare -longhaul-debug "$debug" \
	-workloads "$workload" -targets "$target" -reps 1 -strace=false $sizes \
	-out "$tag-report.md" >"$tag-harness.log" 2>&1 &
harness=$!

pids=
for _ in $(seq 600); do
	pids=$(pgrep -f "$pattern" | tr '\n' ' ') || true
	[ -n "$pids" ] && break
	sleep 0.2
done
[ -n "$pids" ] || { echo "no $target process" >&2; kill "$harness"; exit 1; }
sleep "$wait"
main=$(pgrep -o -f "$pattern")

cpu() { # utime+stime ticks summed over the target's processes
	for p in $pids; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s}'
}

# longhaul's admin /metrics before and after count the units of work:
# longhaul_sessions_total, longhaul_request_duration_seconds_count.
admin=
if [ "$target" = longhaul ]; then
	cfg=$(tr '\0' '\n' <"/proc/$main/cmdline" | sed -n '/^--config$/{n;p}')
	admin=$(sed -n 's/^admin: {address: "\([^"]*\)".*/\1/p' "$cfg")
	curl -s "http://$admin/metrics" >"$tag-metrics0.txt"
fi
case $mode in
pprof)
	curl -s "http://$debug/debug/pprof/allocs" >"$tag-allocs0.pb.gz"
	c0=$(cpu)
	curl -s "http://$debug/debug/pprof/profile?seconds=$window" >"$tag-cpu.pb.gz"
	c1=$(cpu)
	[ -z "$admin" ] || curl -s "http://$admin/metrics" >"$tag-metrics1.txt"
	curl -s "http://$debug/debug/pprof/allocs" >"$tag-allocs1.pb.gz"
	# What the sessions held at the end of the window: live heap by
	# allocation site, goroutines by stack.
	curl -s "http://$debug/debug/pprof/heap" >"$tag-heap.pb.gz"
	curl -s "http://$debug/debug/pprof/goroutine?debug=1" >"$tag-goroutines.txt"
	echo "cpu_ticks $((c1 - c0)) window_s $window" >"$tag-cpu.txt"
	;;
strace)
	args=
	for p in $pids; do args="$args -p $p"; done
	c0=$(cpu)
	timeout -s INT "$window" strace -c -f -o "$tag-strace.txt" $args || true
	c1=$(cpu)
	[ -z "$admin" ] || curl -s "http://$admin/metrics" >"$tag-metrics1.txt"
	echo "cpu_ticks $((c1 - c0)) window_s $window" >"$tag-cpu.txt"
	;;
esac
echo "main pid $main; pids $pids" >>"$tag-cpu.txt"
wait "$harness" || true
tail -3 "$tag-harness.log"
