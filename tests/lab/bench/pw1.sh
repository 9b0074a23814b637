#!/usr/bin/env bash
# Benchmark (issue 11 §6): the pw1 tunnel against kernel TCP (CUBIC and BBR,
# set per socket) and kcptun, side by side on the same lab path.
#   sudo [BENCH_OUT=DIR] [BENCH_RUNS="clean lossy long fair"] tests/lab/bench/pw1.sh
# BENCH_CUBIC=0 skips CUBIC (slow on the lossy paths: use it with a large BENCH_BYTES).
#   sudo [BENCH_BYTES=N] [BENCH_PW_ARGS=...] tests/lab/bench/pw1.sh one KIND [WANEM_OPTION...]
#
# Each path (openwrt/openwrt, --hops 3, wanem options on the ISP hop) gets a
# fresh lab per transfer and one run of each transport: one-way goodput
# (A -> B) of BENCH_BYTES (default 20 MB = 20 000 000 bytes) of random data,
# sha256-checked, timed from the sender's connect to the receiver's last byte.
#   kernel TCP CUBIC / BBR   through a TCP port forward on router B
#   kcptun                   kcptun-server --mode fast --crypt none --nocomp on B
#                            behind a UDP port forward on router B, kcptun-client on A;
#                            once with the package's default windows (client sndwnd
#                            128: at most 128 packets per 30 ms flush tick, ~4-6 MB/s
#                            on any path) and once with --sndwnd 1024 --rcvwnd 1024 on
#                            both ends (pw1's default window is 1024 chunks)
#   punchwire udp pw1        default options, and --window 2048 (is it window-bound?);
#                            --protocol v012 on the clean path
# The fairness run carries 16 concurrent sessions of 2 MB each through one
# pw1 tunnel on the 20 ms + 1 % path (byte-exact) and reports the Jain index
# of their goodputs, with 16 kernel TCP BBR flows for comparison.
# For the tunnels: CPU seconds per GB (utime + stime of both ends, from
# /proc/PID/stat just before they are stopped) and the peak RSS (VmHWM) of
# the busier end. Each run prints one markdown table, saved in BENCH_OUT
# (default /tmp/pw1-bench-<UTC time>) with all logs (pw1 runs with --stats 1),
# wanem's counters and both hosts' UDP counters (udp-A.log, udp-B.log:
# RcvbufErrors are datagrams a tunnel end's socket buffer dropped).
# The machine is shared: the caption records the load average. A report,
# not pass/fail.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

SVC=7001 LST=7002 KCP=29900
BYTES=${BENCH_BYTES:-20000000}
FAIR_N=${BENCH_FAIR_N:-16} FAIR_BYTES=${BENCH_FAIR_BYTES:-2000000}
RUNS=${BENCH_RUNS:-clean lossy long fair}
OUT=${BENCH_OUT:-/tmp/pw1-bench-$(date -u +%Y%m%dT%H%M%SZ)}
HZ=$(getconf CLK_TCK)
mkdir -p "$OUT"

if ! command -v kcptun-server >/dev/null || ! command -v kcptun-client >/dev/null; then
	lab_log "installing kcptun (Debian package)"
	apt-get install -y kcptun >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y kcptun >/dev/null; }
fi

py() { "$LAB_PY" -c "$1"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Seconds from the sender's connect (client.log "start") to the receiver's
# last byte (svc.log "last"): the tunnels' -c side may hold the first
# megabytes until its local connection is up, so the receiver's own
# first-to-last window ("elapsed", logged for comparison) can flatter them.
span() {
	local s l e
	s=$(sed -n 's/^start //p' "$LAB_DIR/client.log" | tail -n1)
	l=$(sed -n 's/^last //p' "$LAB_DIR/svc.log" | tail -n1)
	e=$(sed -n 's/^elapsed //p' "$LAB_DIR/svc.log" | tail -n1)
	[[ -n $s && -n $l ]] || lab_die "no start/last times in the tcpio logs"
	lab_log "$1: sender start to last byte $(py "print('%.3f' % ($l - $s))") s; receiver first to last byte $e s"
	py "print($l - $s)"
}
mbps() { py "print('%.2f' % ($1/1e6/$2))"; }

# CPU ticks (utime + stime) and VmHWM (kB) of PID, while it still runs.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# Stop a tunnel end we started (by its pid) and reap it.
stop() {
	kill "$1" 2>/dev/null || true
	lab_wait "$1" 10 >/dev/null 2>&1 || true
}

mkdata() { head -c "$2" /dev/urandom >"$1"; }

# Copy this measurement's logs into OUT as TAG.*.log.
keep_logs() {
	local tag=$1 f
	for f in "$LAB_DIR"/*.log; do
		[[ -e $f ]] && cp "$f" "$OUT/$tag.$(basename "$f")"
	done
}

check_same() { # WHAT SENT RECEIVED
	[[ $(sha256sum <"$2") == $(sha256sum <"$3") ]] || lab_die "$1: received bytes differ from the sent ones"
}

# kernel_tcp CC TAG WANEM... : RES="MB/s" (no subshell: the lab must be torn down by our EXIT trap)
kernel_tcp() {
	local cc=$1 tag=$2
	shift 2
	lab_up openwrt openwrt --hops 3 "$@" >/dev/null 2>&1
	mkdata "$LAB_DIR/data" "$BYTES"
	: >"$LAB_DIR/empty"
	lab_portfwd B tcp $SVC
	lab_bg B svc env TCPIO_HOST=0 TCPIO_CC="$cc" "$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/empty" "$LAB_DIR/out"
	local ps=$LAB_LAST_PID
	sleep 0.3
	lab_exec A env TCPIO_HOST="$LAB_B_PUB" TCPIO_CC="$cc" "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $SVC \
		"$LAB_DIR/data" "$LAB_DIR/back" >"$LAB_DIR/client.log" 2>&1 || lab_die "kernel TCP $cc: client failed"
	lab_wait "$ps" 60 || lab_die "kernel TCP $cc: service did not finish"
	grep -q "^cc $cc" "$LAB_DIR/client.log" || lab_die "kernel TCP: sender is not $cc"
	check_same "kernel TCP $cc" "$LAB_DIR/data" "$LAB_DIR/out"
	lab_wanem_stats >/dev/null
	keep_logs "$tag"
	RES=$(mbps "$BYTES" "$(span "kernel TCP $cc")")
}

# Start the two ends of tunnel KIND (kcptun | pw1 | v012) for service SVC on B
# and local port LST on A; sets PA PB (their pids).
start_tunnel() {
	local kind=$1
	case $kind in
	kcptun | kcptun1024)
		local w=()
		[[ $kind == kcptun1024 ]] && w=(--sndwnd 1024 --rcvwnd 1024)
		lab_portfwd B udp $KCP
		lab_bg B tb kcptun-server -l ":$KCP" -t "127.0.0.1:$SVC" --mode fast --crypt none --nocomp --quiet "${w[@]}"
		PB=$LAB_LAST_PID
		lab_bg A ta kcptun-client -l "127.0.0.1:$LST" -r "$LAB_B_PUB:$KCP" --mode fast --crypt none --nocomp --quiet "${w[@]}"
		PA=$LAB_LAST_PID
		sleep 0.5
		;;
	pw1 | v012)
		lab_bg B tb "$LAB_PUNCHWIRE" udp -c $SVC "$LAB_A_PUB" --protocol "$kind" --stats 1 ${BENCH_PW_ARGS:-}
		PB=$LAB_LAST_PID
		lab_bg A ta "$LAB_PUNCHWIRE" udp -l $LST "$LAB_B_PUB" --protocol "$kind" --stats 1 ${BENCH_PW_ARGS:-}
		PA=$LAB_LAST_PID
		sleep 1.5
		;;
	esac
	local p
	for p in "$PA" "$PB"; do
		kill -0 "$p" 2>/dev/null || lab_die "$kind: a tunnel end exited early (logs in $LAB_DIR)"
	done
}

# End both tunnel ends; sets CPU_S (both ends, seconds) and RSS_KB (the busier end's VmHWM).
stop_tunnel() {
	local ta tb p
	for p in "$PA" "$PB"; do
		kill -0 "$p" 2>/dev/null || lab_die "a tunnel end exited during the transfer (logs in $LAB_DIR)"
	done
	ta=$(cpu_ticks "$PA") tb=$(cpu_ticks "$PB")
	if ((ta >= tb)); then RSS_KB=$(hwm_kb "$PA"); else RSS_KB=$(hwm_kb "$PB"); fi
	CPU_S=$(py "print(($ta + $tb) / $HZ)")
	lab_log "cpu: A end $(py "print($ta / $HZ)") s, B end $(py "print($tb / $HZ)") s; VmHWM A $(hwm_kb "$PA") kB, B $(hwm_kb "$PB") kB"
	stop "$PA"
	stop "$PB"
}

# The hosts' UDP counters (RcvbufErrors: datagrams the kernel dropped
# because a tunnel end did not read its socket fast enough).
udp_counters() {
	local x
	for x in A B; do
		lab_exec "$x" awk '/^Udp:/' /proc/net/snmp >"$LAB_DIR/udp-$x.log"
	done
}

# tunnel KIND TAG WANEM... : RES="MB/s cpu_s_per_GB rss_MB"
tunnel() {
	local kind=$1 tag=$2
	shift 2
	lab_up openwrt openwrt --hops 3 "$@" >/dev/null 2>&1
	mkdata "$LAB_DIR/data" "$BYTES"
	: >"$LAB_DIR/empty"
	# kcptun (smux v1) ends a connection at the first EOF: the service half-closes last.
	lab_bg B svc env TCPIO_HOLD="$([[ $kind == kcptun* ]] && echo 1 || echo 0)" \
		"$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/empty" "$LAB_DIR/out"
	local ps=$LAB_LAST_PID
	start_tunnel "$kind"
	lab_exec A "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $LST "$LAB_DIR/data" "$LAB_DIR/back" \
		>"$LAB_DIR/client.log" 2>&1 || lab_die "$kind: client failed (logs in $LAB_DIR)"
	lab_wait "$ps" 60 || lab_die "$kind: service did not finish"
	stop_tunnel
	udp_counters
	check_same "$kind" "$LAB_DIR/data" "$LAB_DIR/out"
	lab_wanem_stats >/dev/null
	keep_logs "$tag"
	RES="$(mbps "$BYTES" "$(span "$kind")") $(py "print('%.1f' % ($CPU_S / ($BYTES / 1e9)))") $(py "print('%.1f' % ($RSS_KB / 1024))")"
}

ratio() { py "print('%.2f×' % ($1 / $2))"; }

# run_path RUN CAPTION WANEM...
run_path() {
	local run=$1 caption=$2
	shift 2
	local l0 cubic bbr kcp kcpw pw pww v='' t0 g c m
	l0=$(loadavg) t0=$(date -u +%H:%M)
	cubic=''
	if [[ ${BENCH_CUBIC:-1} != 0 ]]; then
		lab_log "$run: kernel TCP CUBIC"
		kernel_tcp cubic "$run-cubic" "$@"
		cubic=$RES
	fi
	lab_log "$run: kernel TCP BBR"
	kernel_tcp bbr "$run-bbr" "$@"
	bbr=$RES
	lab_log "$run: kcptun"
	tunnel kcptun "$run-kcptun" "$@"
	kcp=$RES
	lab_log "$run: kcptun, 1024-packet windows"
	tunnel kcptun1024 "$run-kcptun1024" "$@"
	kcpw=$RES
	lab_log "$run: punchwire pw1"
	tunnel pw1 "$run-pw1" "$@"
	pw=$RES
	lab_log "$run: punchwire pw1 --window 2048"
	BENCH_PW_ARGS="${BENCH_PW_ARGS:-} --window 2048" tunnel pw1 "$run-pw1w2048" "$@"
	pww=$RES
	if [[ $run == clean ]]; then
		lab_log "$run: punchwire v0.12"
		tunnel v012 "$run-v012" "$@"
		v=$RES
	fi
	lab_down >/dev/null 2>&1
	local k=${kcp%% *} kw=${kcpw%% *}
	local table="$OUT/$run.md"
	row() { # NAME MB/s [CPU RSS]
		if [[ -z $2 ]]; then
			echo "| $1 | not run | | | | | |"
			return
		fi
		echo "| $1 | $2 | $(ratio "$2" "$bbr") | $(ratio "$2" "$k") | $(ratio "$2" "$kw") | ${3:-–} | ${4:-–} |"
	}
	{
		echo "**$caption** (lab \`--hops 3\`, wanem ${*:+\`}${*:-no options}${*:+\`}): one-way goodput of $(py "print('%g' % ($BYTES / 1e6))") MB of random data, sha256-checked, one run each; $(date -u +%F) $t0–$(date -u +%H:%M) UTC, load average $l0 at the start, $(loadavg) at the end (2 shared cores)."
		echo
		echo "| transport | goodput MB/s | × BBR | × kcptun | × kcptun 1024 | CPU s/GB (both ends) | peak RSS MB (busier end) |"
		echo "| --- | --- | --- | --- | --- | --- | --- |"
		row "kernel TCP CUBIC" "$cubic"
		row "kernel TCP BBR" "$bbr"
		read -r g c m <<<"$kcp"
		row "kcptun fast, no crypt, no comp (default windows)" "$g" "$c" "$m"
		read -r g c m <<<"$kcpw"
		row "kcptun, same, \`--sndwnd 1024 --rcvwnd 1024\` both ends" "$g" "$c" "$m"
		read -r g c m <<<"$pw"
		row "**punchwire udp pw1 (defaults)**" "$g" "$c" "$m"
		read -r g c m <<<"$pww"
		row "punchwire udp pw1 \`--window 2048\`" "$g" "$c" "$m"
		if [[ -n $v ]]; then
			read -r g c m <<<"$v"
			row "punchwire udp \`--protocol v012\`" "$g" "$c" "$m"
		fi
	} >"$table"
	echo
	cat "$table"
}

# many KIND TAG WANEM... : FAIR_N concurrent sessions; RES="jain aggregate_MB/s min max [cpu rss]"
many() {
	local kind=$1 tag=$2 k
	shift 2
	lab_up openwrt openwrt --hops 3 "$@" >/dev/null 2>&1
	local files=()
	for ((k = 0; k < FAIR_N; k++)); do
		mkdata "$LAB_DIR/data.$k" "$FAIR_BYTES"
		files+=("$LAB_DIR/data.$k")
	done
	local ps port=$LST extra=''
	if [[ $kind == bbr ]]; then
		lab_portfwd B tcp $SVC
		lab_bg B svc env TCPIO_HOST=0 TCPIO_CC=bbr "$LAB_PY" "$LAB_ROOT/tcpio.py" serve-many $SVC "$FAIR_N" "$LAB_DIR/out"
		ps=$LAB_LAST_PID
		sleep 0.3
		lab_exec A env TCPIO_HOST="$LAB_B_PUB" TCPIO_CC=bbr "$LAB_PY" "$LAB_ROOT/tcpio.py" connect-many $SVC "${files[@]}" \
			>"$LAB_DIR/client.log" 2>&1 || lab_die "$kind x$FAIR_N: client failed"
		lab_wait "$ps" 60 || lab_die "$kind x$FAIR_N: service did not finish"
	else
		lab_bg B svc "$LAB_PY" "$LAB_ROOT/tcpio.py" serve-many $SVC "$FAIR_N" "$LAB_DIR/out"
		ps=$LAB_LAST_PID
		start_tunnel "$kind"
		lab_exec A "$LAB_PY" "$LAB_ROOT/tcpio.py" connect-many $LST "${files[@]}" \
			>"$LAB_DIR/client.log" 2>&1 || lab_die "$kind x$FAIR_N: client failed (logs in $LAB_DIR)"
		lab_wait "$ps" 60 || lab_die "$kind x$FAIR_N: service did not finish"
		stop_tunnel
		udp_counters
		extra=" $(py "print('%.1f' % ($CPU_S / ($FAIR_N * $FAIR_BYTES / 1e9)))") $(py "print('%.1f' % ($RSS_KB / 1024))")"
	fi
	# Byte-exact: the received streams are the sent files (in any order).
	diff <(sha256sum "${files[@]}" | cut -d' ' -f1 | sort) \
		<(awk '/^flow/ {print $5}' "$LAB_DIR/svc.log" | sort) >/dev/null ||
		lab_die "$kind x$FAIR_N: received streams differ from the sent files"
	lab_wanem_stats >/dev/null
	keep_logs "$tag"
	# Per session: from its sender's connect to its last byte at the receiver
	# (sessions are matched by content); aggregate: first connect to last byte.
	RES="$("$LAB_PY" - "$LAB_DIR/svc.log" "$LAB_DIR/client.log" <<-'PY'
		import hashlib, sys
		start = {}
		for line in open(sys.argv[2]):
		    f = line.split()
		    if f and f[0] == "start":
		        start[hashlib.sha256(open(f[1], "rb").read()).hexdigest()] = float(f[2])
		rates, total, lasts = [], 0, []
		for line in open(sys.argv[1]):
		    f = line.split()
		    if f and f[0] == "flow":
		        n, last = int(f[2]), float(f[5])
		        rates.append(n / 1e6 / (last - start[f[4]]))
		        total += n
		        lasts.append(last)
		agg = total / 1e6 / (max(lasts) - min(start.values()))
		jain = sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates))
		print("%.3f %.2f %.2f %.2f" % (jain, agg, min(rates), max(rates)))
	PY
	)$extra"
}

run_fair() {
	local caption=$1
	shift
	local l0 t0 pw bbr
	l0=$(loadavg) t0=$(date -u +%H:%M)
	lab_log "fair: punchwire pw1 x$FAIR_N"
	many pw1 fair-pw1 "$@"
	pw=$RES
	lab_log "fair: kernel TCP BBR x$FAIR_N"
	many bbr fair-bbr "$@"
	bbr=$RES
	lab_down >/dev/null 2>&1
	local table="$OUT/fair.md"
	{
		echo "**Fairness, $caption** (lab \`--hops 3\`, wanem ${*:+\`}${*:-no options}${*:+\`}): $FAIR_N concurrent sessions of $(py "print('%g' % ($FAIR_BYTES / 1e6))") MB random data each, byte-exact; per-session goodput from its sender's connect to its last byte at the receiver; one run each; $(date -u +%F) $t0–$(date -u +%H:%M) UTC, load average $l0 at the start, $(loadavg) at the end."
		echo
		echo "| transport | Jain index | aggregate MB/s | slowest session MB/s | fastest session MB/s | CPU s/GB | peak RSS MB |"
		echo "| --- | --- | --- | --- | --- | --- | --- |"
		read -r j a lo hi c m <<<"$pw"
		echo "| **punchwire udp pw1, $FAIR_N streams in one tunnel** | **$j** | $a | $lo | $hi | $c | $m |"
		read -r j a lo hi <<<"$bbr"
		echo "| kernel TCP BBR, $FAIR_N flows | $j | $a | $lo | $hi | – | – |"
	} >"$table"
	echo
	cat "$table"
}

# One measurement, for investigations: pw1.sh one KIND [WANEM_OPTION...]
# (KIND: cubic bbr kcptun kcptun1024 pw1 v012; BENCH_PW_ARGS adds punchwire options).
if [[ ${1:-} == one ]]; then
	kind=$2
	shift 2
	case $kind in
	cubic | bbr) kernel_tcp "$kind" "one-$kind" "$@" ;;
	*) tunnel "$kind" "one-$kind" "$@" ;;
	esac
	echo "$kind $*: $RES (MB/s, CPU s/GB, peak RSS MB); logs in $OUT"
	exit 0
fi

for run in $RUNS; do
	case $run in
	clean) run_path clean "Clean path (no delay, loss or rate limit)" ;;
	lossy) run_path lossy "20 ms RTT, 1 % loss each way" --delay 10 --loss 1 ;;
	long) run_path long "50 ms RTT, 2 % loss each way, 100 Mbit/s" --delay 25 --loss 2 --rate 100 ;;
	fair) run_fair "20 ms RTT, 1 % loss each way" --delay 10 --loss 1 ;;
	*) lab_die "unknown run '$run' (clean lossy long fair)" ;;
	esac
done
lab_log "tables and logs in $OUT"
