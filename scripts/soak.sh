#!/usr/bin/env bash
# soak.sh: run gpubench for many iterations and watch its memory for leaks.
#
# Usage: scripts/soak.sh [GPUBENCH [EXTRA_GPUBENCH_FLAGS...]]   (default .device/gpubench)
#
# It runs `GPUBENCH --model=tiny --iters $SOAK_ITERS --warmup 10 --json $OUT/soak.json`
# in the background and, every second while it lives, samples the process's
# resident set (VmRSS of /proc/PID/status) and the GPU's used memory
# (nvidia-smi --query-gpu=memory.used), into $OUT/soak.csv; gpubench's own
# output goes to $OUT/soak.log. At the end it prints first/last/min/max of
# both and gpubench's exit code.
#
# The run window is from the started_at of soak.json (stamped once the model's
# device memory is allocated) to the time soak.json was written (before any
# teardown frees); without soak.json, from the first sample to the last.
# The baseline is the first sample at 10% of that window. It fails (exit 1)
#   - if RSS at the end of the window is over 110% of the baseline's,
#   - if the GPU's used memory differs from the baseline's in any later sample
#     of the window (or could not be read); or, for a mode that allocates
#     and frees inside its loop (SOAK_GPU_SWING=S MiB, the most it holds at
#     once beyond the rest), if the samples span more than S MiB, or the
#     highest of the window's second half is above the highest of its first
#     (growth, however slow, shows as a rising peak),
#   - or if gpubench exited non-zero.
# nvidia-smi reports the whole GPU: run nothing else on it meanwhile.
#
# Environment: OUT (default /tmp), SOAK_ITERS (default 10000), SOAK_GPU (the
# nvidia-smi GPU index, default 0: match --device), SOAK_INTERVAL (seconds,
# default 1), SOAK_RSS_GROWTH (allowed fraction, default 0.10), SOAK_GPU_SWING
# (MiB, default 0: GPU memory must not change at all).
set -uo pipefail

GPUBENCH=${1:-.device/gpubench}
[ $# -gt 0 ] && shift
OUTDIR=${OUT:-/tmp}
ITERS=${SOAK_ITERS:-10000}
GPU=${SOAK_GPU:-0}
INTERVAL=${SOAK_INTERVAL:-1}
RSS_GROWTH=${SOAK_RSS_GROWTH:-0.10}
GPU_SWING=${SOAK_GPU_SWING:-0}
JSON="$OUTDIR/soak.json"
CSV="$OUTDIR/soak.csv"
LOG="$OUTDIR/soak.log"

say() { echo "soak: $*" >&2; }

if [ ! -x "$GPUBENCH" ]; then
	say "no executable gpubench at $GPUBENCH (build it with 'make device', or pass its path)"
	exit 2
fi
if ! command -v nvidia-smi >/dev/null; then
	say "nvidia-smi not found: GPU memory cannot be sampled"
	exit 2
fi
mkdir -p "$OUTDIR" || exit 2
rm -f "$JSON"

now() { date +%s.%N; }

t0=$(now)
"$GPUBENCH" --model=tiny --iters "$ITERS" --warmup 10 --json "$JSON" "$@" >"$LOG" 2>&1 &
pid=$!
# shellcheck disable=SC2064 # pid is fixed now
trap "kill $pid 2>/dev/null; exit 130" INT TERM
say "gpubench pid $pid: --model=tiny --iters $ITERS --warmup 10 $*; sampling every ${INTERVAL}s into $CSV"

echo "epoch_s,elapsed_s,rss_kib,gpu_used_mib" >"$CSV"
while :; do
	# A process that has exited (a zombie, until the wait below) has no VmRSS.
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
	[ -n "$rss" ] || break
	gpu=$(nvidia-smi --id="$GPU" --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -d ' ')
	case $gpu in '' | *[!0-9]*) gpu=NA ;; esac
	t=$(now)
	echo "$t,$(awk -v a="$t" -v b="$t0" 'BEGIN {printf "%.3f", a - b}'),$rss,$gpu" >>"$CSV"
	sleep "$INTERVAL"
done
wait "$pid"
rc=$?
trap - INT TERM

# The run window: soak.json's started_at to its write time.
ts="" te=""
if [ -f "$JSON" ]; then
	started=$(sed -nE 's/.*"started_at": *"([^"]+)".*/\1/p' "$JSON" | head -n 1)
	[ -n "$started" ] && ts=$(date -d "$started" +%s.%N 2>/dev/null)
	te=$(date -r "$JSON" +%s.%N)
fi
window="soak.json started_at .. written"
if [ -z "$ts" ] || [ -z "$te" ]; then
	window="first .. last sample (no usable soak.json)"
	ts="" te=""
fi

echo
echo "soak: gpubench exit code $rc ($LOG), samples in $CSV"
awk -F, -v ts="$ts" -v te="$te" -v growth="$RSS_GROWTH" -v swing="$GPU_SWING" -v window="$window" '
NR == 1 { next }
{
	n++; t[n] = $1; el[n] = $2; rss[n] = $3 / 1024; gpu[n] = $4
}
function stats(name, a, fmt,   i, lo, hi, na) {
	lo = ""; hi = ""; na = 0
	for (i = 1; i <= n; i++) {
		if (a[i] == "NA") { na++; continue }
		if (lo == "" || a[i] + 0 < lo + 0) lo = a[i]
		if (hi == "" || a[i] + 0 > hi + 0) hi = a[i]
	}
	printf "%-12s" fmt fmt fmt fmt "%s\n", name, a[1], a[n], lo, hi, (na ? sprintf("   (%d unread)", na) : "")
}
END {
	if (n == 0) { print "soak: FAIL: no samples (gpubench exited at once?)"; exit 1 }
	printf "%d samples over %.1f s\n", n, el[n]
	printf "%-12s%12s%12s%12s%12s\n", "", "first", "last", "min", "max"
	stats("RSS MiB", rss, "%12.1f")
	stats("GPU MiB", gpu, "%12s")

	if (ts == "") { ts = t[1]; te = t[n] }
	first = 0; last = 0
	for (i = 1; i <= n; i++) if (t[i] >= ts && t[i] <= te) { if (!first) first = i; last = i }
	if (!first) { print "soak: FAIL: no sample inside the run window (" window ")"; exit 1 }
	tb = ts + 0.1 * (te - ts)
	b = 0
	for (i = first; i <= last; i++) if (t[i] >= tb) { b = i; break }
	if (!b) b = last
	printf "run window (%s): %.1f s .. %.1f s, samples %d..%d; baseline (10%%): sample %d at %.1f s\n",
		window, ts - t[1] + el[1], te - t[1] + el[1], first, last, b, el[b]
	if (last - b < 5) printf "warning: only %d samples after the baseline: a short soak proves little (raise SOAK_ITERS)\n", last - b

	fail = 0
	g = (rss[last] - rss[b]) / rss[b]
	ok = (g <= growth)
	printf "RSS: baseline %.1f MiB, end %.1f MiB: %+.1f%% (limit +%.0f%%)  %s\n", rss[b], rss[last], 100 * g, 100 * growth, ok ? "OK" : "FAIL"
	if (!ok) fail = 1

	changed = 0; unread = 0; lo = gpu[b]; hi = gpu[b]
	for (i = b; i <= last; i++) {
		if (gpu[i] == "NA") { unread++; continue }
		if (gpu[i] != gpu[b]) changed++
		if (gpu[i] + 0 < lo + 0) lo = gpu[i]
		if (gpu[i] + 0 > hi + 0) hi = gpu[i]
	}
	if (gpu[b] == "NA" || unread) {
		printf "GPU: %d samples from the baseline on could not be read  FAIL\n", unread
		fail = 1
	} else if (swing > 0) {
		mid = int((b + last) / 2); p1 = gpu[b]; p2 = gpu[mid]
		for (i = b; i <= mid; i++) if (gpu[i] + 0 > p1 + 0) p1 = gpu[i]
		for (i = mid; i <= last; i++) if (gpu[i] + 0 > p2 + 0) p2 = gpu[i]
		ok = (hi - lo <= swing) && (p2 + 0 <= p1 + 0)
		printf "GPU: %s .. %s MiB (swing %d MiB, allowed %d); peak %s MiB in the first half, %s MiB in the second  %s\n", lo, hi, hi - lo, swing, p1, p2, ok ? "OK" : "FAIL"
		if (!ok) fail = 1
	} else if (changed) {
		printf "GPU: baseline %s MiB, then %d samples differ (%s .. %s MiB)  FAIL\n", gpu[b], changed, lo, hi
		fail = 1
	} else {
		printf "GPU: %s MiB from the baseline to the end of the window, unchanged  OK\n", gpu[b]
	}
	exit fail
}' "$CSV"
verdict=$?

if [ "$rc" != 0 ]; then
	say "gpubench exited with $rc; the end of $LOG:"
	tail -n 5 "$LOG" >&2
fi
if [ "$verdict" != 0 ] || [ "$rc" != 0 ]; then
	echo "soak: FAIL"
	exit 1
fi
echo "soak: PASS"
