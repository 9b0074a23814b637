#!/usr/bin/env bash
# Runs one lab case RUNS times and reports how often it passed and the range
# of its connect times (a scenario that must pass N of N calls this):
#   cases/repeat.sh RUNS MIN_PASSES tcp|udp|birthday NAME PROFILE_A PROFILE_B [CASE OPTIONS...]
# Every run is a fresh lab (cases/MODE.sh, with LAB_HOPS and
# the other LAB_* variables passed through). Connect time: for tcp and
# birthday the case's own report (the later side's time to connect); for
# udp the time from the later side's start (A) to "peer heard" in its log. Passes when at
# least MIN_PASSES runs passed; with REPEAT_MAX_MS set, a run that took
# longer to connect counts as failed. A failed run's logs stay in the
# run's directory (printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=$1 need=$2 mode=$3 name=$4
shift 4
case $mode in
tcp | udp | birthday) ;;
*)
	echo "repeat.sh: mode must be tcp, udp or birthday" >&2
	exit 2
	;;
esac
work=$(mktemp -d "/tmp/pwrepeat-$name.XXXX")
passes=0 times=()
for ((i = 1; i <= runs; i++)); do
	dir=$work/run$i
	mkdir -p "$dir"
	rc=0
	LAB_DIR=$dir LAB_RESULT=$dir/result bash "$here/$mode.sh" "$name" "$@" >"$dir/case.log" 2>&1 || rc=$?
	t=
	if [[ $mode != udp ]]; then
		t=$(sed -n 's/^connect=//p' "$dir/result" 2>/dev/null | tail -n1 || true)
	else
		t=$(sed -n 's/^punchwire\[ *\([0-9]*\)\.\([0-9]*\)\] info: peer heard.*/\1\2/p' "$dir/l.log" 2>/dev/null | head -n1 || true)
		[[ -n $t ]] && t=$((10#$t))
	fi
	if ((rc == 0)) && [[ -n ${REPEAT_MAX_MS:-} ]] && ((${t:-0} > REPEAT_MAX_MS)); then
		rc=99 # slower than allowed
	fi
	if ((rc == 0)); then
		passes=$((passes + 1))
		[[ -n $t ]] && times+=("$t")
		echo "[repeat $name] run $i/$runs PASS connect ${t:-?} ms" >&2
		rm -rf "$dir"
	else
		echo "[repeat $name] run $i/$runs FAIL (rc $rc, connect ${t:-none}; logs in $dir)" >&2
	fi
done
range=-
if ((${#times[@]})); then
	range=$(printf '%s\n' "${times[@]}" | sort -n | sed -n '1p;$p' | paste -sd' ')
	lo=${range% *} hi=${range#* }
	range="$lo-$hi"
	if [[ -n ${LAB_RESULT:-} ]]; then echo "connect=$hi" >>"$LAB_RESULT"; fi
fi
echo "[repeat $name] $passes/$runs passed; connect range ${range} ms (need $need)" >&2
((passes >= need)) || exit 1
rmdir "$work" 2>/dev/null || true
exit 0
