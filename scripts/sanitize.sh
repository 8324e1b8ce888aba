#!/usr/bin/env bash
# sanitize.sh: run gpubench under compute-sanitizer's four tools (memcheck with
# --leak-check full, racecheck, initcheck, synccheck) on two small shapes, one
# training step each (--warmup 0 --iters 1), and print a table tool x shape ->
# error count.
#
# Usage: scripts/sanitize.sh [GPUBENCH]          (default .device/gpubench)
#
#   shapes: tiny  --model=tiny
#           odd   --model=tiny --vocab=1000 --seq-len=37 --layers=2 --heads=3
#                 --channels=96 --batch-size 3
#
# Environment:
#   OUT                 folder for the logs, sanitize-<tool>-<shape>.log (default /tmp)
#   TOOLS               tools to run (default "memcheck racecheck initcheck synccheck")
#   SHAPES              shapes to run (default "tiny odd")
#   SANITIZER_TIMEOUT   seconds per run, 0 for none (default 0); a run killed by it
#                       counts as failed
#   COMPUTE_SANITIZER   the compute-sanitizer binary (default: PATH, then
#                       $CUDA_HOME/bin, /usr/local/cuda/bin)
#
# A cell is the error count from the "ERROR SUMMARY: N errors" line (for
# racecheck, the hazard count of "RACECHECK SUMMARY: N hazards displayed",
# when it prints no ERROR SUMMARY), or FAIL(rc=N) / FAIL(no summary) when the
# run itself failed: compute-sanitizer exits with 99 (--error-exitcode) when it
# found errors and with gpubench's own exit code otherwise. The script exits 1
# if any count is over 0 or any run failed, 2 on bad usage.
set -uo pipefail

GPUBENCH=${1:-.device/gpubench}
LOGDIR=${OUT:-/tmp}
TOOLS=${TOOLS:-memcheck racecheck initcheck synccheck}
SHAPES=${SHAPES:-tiny odd}
TIMEOUT=${SANITIZER_TIMEOUT:-0}
ERROR_EXIT=99

say() { echo "sanitize: $*" >&2; }

find_sanitizer() {
	local c
	for c in "${COMPUTE_SANITIZER:-}" "$(command -v compute-sanitizer 2>/dev/null)" \
		"${CUDA_HOME:+$CUDA_HOME/bin/compute-sanitizer}" /usr/local/cuda/bin/compute-sanitizer; do
		if [ -n "$c" ] && [ -x "$c" ]; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

# shape_args NAME: gpubench's flags for a shape, one per line.
shape_args() {
	case $1 in
	tiny) printf '%s\n' --model=tiny ;;
	odd) printf '%s\n' --model=tiny --vocab=1000 --seq-len=37 --layers=2 --heads=3 --channels=96 --batch-size 3 ;;
	*) return 1 ;;
	esac
}

# tool_args TOOL: compute-sanitizer's flags for a tool, one per line.
tool_args() {
	case $1 in
	memcheck) printf '%s\n' --tool memcheck --leak-check full ;;
	racecheck | initcheck | synccheck) printf '%s\n' --tool "$1" ;;
	*) return 1 ;;
	esac
}

# count_errors LOG TOOL: print the error count of a log, or nothing if it has
# no summary line. With several summaries (several processes) it adds them.
count_errors() {
	local log=$1 tool=$2 n
	n=$(sed -nE 's/.*ERROR SUMMARY: ([0-9]+) errors?.*/\1/p' "$log" | awk '{s += $1} END {if (NR) print s}')
	if [ -z "$n" ] && [ "$tool" = racecheck ]; then
		n=$(sed -nE 's/.*RACECHECK SUMMARY: ([0-9]+) hazards? displayed.*/\1/p' "$log" | awk '{s += $1} END {if (NR) print s}')
	fi
	echo "$n"
}

if [ ! -x "$GPUBENCH" ]; then
	say "no executable gpubench at $GPUBENCH (build it with 'make device', or pass its path)"
	exit 2
fi
if ! SANITIZER=$(find_sanitizer); then
	say "compute-sanitizer not found (set COMPUTE_SANITIZER or CUDA_HOME)"
	exit 2
fi
for tool in $TOOLS; do
	tool_args "$tool" >/dev/null || { say "unknown tool $tool"; exit 2; }
done
for shape in $SHAPES; do
	shape_args "$shape" >/dev/null || { say "unknown shape $shape (known: tiny odd)"; exit 2; }
done
mkdir -p "$LOGDIR" || exit 2
say "$("$SANITIZER" --version | grep -i version | head -n 1), gpubench $GPUBENCH, logs in $LOGDIR"

declare -A cell
failed=0
for tool in $TOOLS; do
	for shape in $SHAPES; do
		log="$LOGDIR/sanitize-$tool-$shape.log"
		mapfile -t targs < <(tool_args "$tool")
		mapfile -t sargs < <(shape_args "$shape")
		cmd=("$SANITIZER" "${targs[@]}" --error-exitcode "$ERROR_EXIT" "$GPUBENCH" "${sargs[@]}" --warmup 0 --iters 1)
		if [ "$TIMEOUT" != 0 ]; then
			cmd=(timeout --kill-after=10 "$TIMEOUT" "${cmd[@]}")
		fi
		say "$tool $shape ..."
		start=$SECONDS
		{
			echo "# ${cmd[*]}"
			"${cmd[@]}"
		} >"$log" 2>&1
		rc=$?
		n=$(count_errors "$log" "$tool")
		took=$((SECONDS - start))
		if [ -z "$n" ]; then
			cell[$tool.$shape]="FAIL(no summary, rc=$rc)"
			failed=1
		elif [ "$rc" != 0 ] && [ "$rc" != "$ERROR_EXIT" ]; then
			cell[$tool.$shape]="FAIL(rc=$rc, $n errors)"
			failed=1
		elif [ "$rc" = "$ERROR_EXIT" ] && [ "$n" = 0 ]; then
			cell[$tool.$shape]="FAIL(rc=$rc, 0 in summary)"
			failed=1
		else
			cell[$tool.$shape]=$n
			[ "$n" = 0 ] || failed=1
		fi
		if grep -q 'Device not supported' "$log"; then
			say "  compute-sanitizer says 'Device not supported' (it is refused under gVisor; a Firecracker machine runs it)"
		fi
		say "  ${cell[$tool.$shape]} (rc=$rc, ${took}s, $log)"
	done
done

echo
printf '%-10s' "tool"
for shape in $SHAPES; do printf '  %-28s' "$shape"; done
echo
for tool in $TOOLS; do
	printf '%-10s' "$tool"
	for shape in $SHAPES; do printf '  %-28s' "${cell[$tool.$shape]}"; done
	echo
done
echo
if [ "$failed" != 0 ]; then
	echo "sanitize: FAIL (an error count over 0, or a run that failed; see $LOGDIR/sanitize-*.log)"
	exit 1
fi
echo "sanitize: PASS (no errors)"
