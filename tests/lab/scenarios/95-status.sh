#!/usr/bin/env bash
# punchwire status: three instances through two OpenWrt routers (a udp
# tunnel's two sides, tun-a on A and tun-b on B, and a tcp punch, lonely on
# A, whose peer never answers), listed with the right states and stats;
# SIGKILL tun-b: shown gone, and tun-a turns peer-silent; SIGTERM lonely
# and SIGINT tun-a: their files are removed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

# 40 Mbit/s: the 30 MB session lasts about 6 s, so the once-a-second
# status samples see its goodput (pw1 is much faster without a limit).
lab_up openwrt openwrt --rate 40
# A private run directory: other labs on this machine may run punchwire too.
export PUNCHWIRE_RUN_DIR=$LAB_DIR/run
SVC=7001 LST=7002 UDP=5555 BYTES=30000000
head -c $BYTES /dev/urandom >"$LAB_DIR/a.in"
head -c $BYTES /dev/urandom >"$LAB_DIR/b.in"

lab_bg B service "$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/b.in" "$LAB_DIR/b.out"
pid_svc=$LAB_LAST_PID
lab_bg B tun-b "$LAB_PUNCHWIRE" udp -c $SVC "$LAB_A_PUB" $UDP --name tun-b --heartbeat 1 --silence 60
pid_b=$LAB_LAST_PID
# A background job starts with SIGINT ignored (and punchwire keeps it so):
# reset it to test the SIGINT cleanup. exec keeps the pid.
lab_bg A tun-a "$LAB_PY" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$LAB_PUNCHWIRE" udp -l $LST "$LAB_B_PUB" $UDP --name tun-a --heartbeat 1 --silence 60
pid_a=$LAB_LAST_PID
lab_bg A lonely "$LAB_PUNCHWIRE" tcp "$LAB_B_PUB" --timeout 120 --name lonely
pid_t=$LAB_LAST_PID

status_json() { "$LAB_PUNCHWIRE" status --json; }
# field NAME KEY: one field of one instance from `punchwire status --json`.
field() {
	status_json | "$LAB_PY" -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    if i["name"] == sys.argv[1]:
        print(i[sys.argv[2]])' "$1" "$2"
}
# wait_state NAME STATE SECONDS
wait_state() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ $(field "$1" state) == "$2" ]] && return 0
		sleep 0.1
	done
	echo "$1 is $(field "$1" state), not $2, after $3 s"
	return 1
}

lab_check "tun-a connected" wait_state tun-a connected 20
lab_check "tun-b connected" wait_state tun-b connected 20
lab_check "lonely punching" wait_state lonely punching 5

# One session through the tunnel, then its counters.
lab_bg A client "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $LST "$LAB_DIR/a.in" "$LAB_DIR/a.out"
pid_client=$LAB_LAST_PID
# The goodput columns while it runs (the largest A->B rate seen).
peak=0
while kill -0 "$pid_client" 2>/dev/null; do
	r=$(field tun-a tx_bytes_per_s)
	((${r:-0} > peak)) && peak=$r
	sleep 0.3
done
rc=0
lab_wait "$pid_client" 60 || rc=$?
lab_log "tun-a's largest tx goodput in status: $peak bytes/s"
lab_check "status showed tun-a's goodput during the session ($peak B/s)" test "$peak" -gt 100000
lab_check "session finished (rc $rc)" test "$rc" = 0
lab_wait "$pid_svc" 10 || true
lab_check "A -> B byte-exact" cmp "$LAB_DIR/a.in" "$LAB_DIR/b.out"
sleep 2.5 # the next once-a-second write carries the totals
"$LAB_PUNCHWIRE" status | tee "$LAB_DIR/status1.txt" | sed 's/^/  status| /' >&2
status_json >"$LAB_DIR/status1.json"

check_json() {
	"$LAB_PY" - "$LAB_DIR/status1.json" "$pid_a" "$pid_b" "$pid_t" "$BYTES" <<-'PY'
		import json, sys
		doc = json.load(open(sys.argv[1]))
		pid_a, pid_b, pid_t, n = map(int, sys.argv[2:6])
		by = {i["name"]: i for i in doc["instances"]}
		assert sorted(by) == ["lonely", "tun-a", "tun-b"], sorted(by)
		a, b, t = by["tun-a"], by["tun-b"], by["lonely"]
		assert (a["pid"], b["pid"], t["pid"]) == (pid_a, pid_b, pid_t), (a["pid"], b["pid"], t["pid"])
		assert (a["mode"], a["role"], a["peer"], a["protocol"]) == ("udp", "listen", "198.51.100.2:5555", "pw1"), a
		assert (b["mode"], b["role"], b["peer"]) == ("udp", "connect", "203.0.113.2:5555"), b
		assert (t["mode"], t["role"], t["peer"], t["protocol"]) == ("tcp", "netcat", "198.51.100.2", None), t
		assert all(i["alive"] for i in (a, b, t))
		# payload bytes: at least the session's each way (A sent a.in)
		assert a["tx_bytes"] >= n and a["rx_bytes"] >= n, a
		assert b["tx_bytes"] >= n and b["rx_bytes"] >= n, b
		assert a["rtt_us"] is not None and 0 < a["rtt_us"] < 1_000_000, a["rtt_us"]
		assert a["sessions"] == 0 and b["sessions"] == 0, (a["sessions"], b["sessions"])
		print("tun-a rtt %.2f ms, tx %d B, rx %d B" % (a["rtt_us"] / 1000, a["tx_bytes"], a["rx_bytes"]))
	PY
}
lab_check "status --json: names, pids, modes, roles, peers, protocol, bytes, rtt" check_json
lab_check "status: header + 3 lines" test "$(wc -l <"$LAB_DIR/status1.txt")" = 4
# Aligned: the STATE column starts at the same offset on every line.
aligned() {
	awk 'NR == 1 { col = index($0, "STATE"); next }
		substr($0, col - 2, 2) != "  " || substr($0, col, 1) == " " { bad = 1 }
		END { exit bad }' "$LAB_DIR/status1.txt"
}
lab_check "status: columns aligned" aligned

# SIGKILL: no cleanup possible, shown as gone; its peer falls silent.
kill -KILL "$pid_b"
lab_check "tun-b gone after SIGKILL" wait_state tun-b gone 2
lab_check "tun-b's file stays (gone, not vanished)" test -e "$PUNCHWIRE_RUN_DIR/$pid_b.state"
lab_check "tun-a peer-silent (2 heartbeats + 1 s)" wait_state tun-a peer-silent 10
"$LAB_PUNCHWIRE" status | sed 's/^/  status| /' >&2

# SIGTERM / SIGINT: the instance removes its files as it goes.
gone_files() { # PID SECONDS
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[[ ! -e $PUNCHWIRE_RUN_DIR/$1.state && ! -e $PUNCHWIRE_RUN_DIR/$1.lock ]] && return 0
		sleep 0.1
	done
	ls -la "$PUNCHWIRE_RUN_DIR"
	return 1
}
kill -TERM "$pid_t"
lab_check "lonely's files removed after SIGTERM" gone_files "$pid_t" 3
kill -INT "$pid_a"
lab_check "tun-a's files removed after SIGINT" gone_files "$pid_a" 3
rc_t=0 rc_a=0
lab_wait "$pid_t" 5 || rc_t=$?
lab_wait "$pid_a" 5 || rc_a=$?
lab_check "lonely ended by SIGTERM (rc $rc_t)" test "$rc_t" = 143
lab_check "tun-a ended by SIGINT (rc $rc_a)" test "$rc_a" = 130
lab_check "only tun-b (gone) still listed" test "$(status_json | "$LAB_PY" -c '
import json, sys
print(" ".join(i["name"] + ":" + i["state"] for i in json.load(sys.stdin)["instances"]))')" = "tun-b:gone"
lab_finish
