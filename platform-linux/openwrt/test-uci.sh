#!/bin/sh
# test-uci.sh: check the UCI -> punchwire arguments translation of the
# OpenWrt init script without OpenWrt. A small fake of config_load,
# config_get, config_get_bool, config_foreach (reading a UCI file with awk),
# logger and the procd_* calls; files/punchwire-args.sh is sourced and its
# exact output compared for several sections, then the init script's
# start_service is run against the fakes. Also sh -n on the shell files.
# POSIX sh; no root. Last line: "N passed, N failed"; exit 1 on a failure.
#   platform-linux/openwrt/test-uci.sh
set -u
here="$(cd "$(dirname "$0")" && pwd)"
files="$here/files"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# check NAME EXPECTED ACTUAL
check() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		bad "$1"
		printf '  expected: %s\n' "$(printf '%s' "$2" | tr '\n' ' ')"
		printf '  got:      %s\n' "$(printf '%s' "$3" | tr '\n' ' ')"
	fi
}

# --- fake OpenWrt /lib/functions.sh (UCI) and logger -----------------------
UCI_DIR="$tmp/uci"
FAKE_LOG="$tmp/log"
mkdir -p "$UCI_DIR"
# shellcheck source=SCRIPTDIR/fake-openwrt.sh
. "$here/fake-openwrt.sh"

# --- the test configuration -----------------------------------------------
cat >"$UCI_DIR/punchwire" <<'UCI'
config peer 'tcpfwd'
	option enabled '1'
	option mode 'tcp'
	option role 'forward'
	option peer '198.51.100.2'
	option local_port '22'

config peer 'tcplisten'
	option enabled 'yes'
	option mode tcp
	option role "listen"
	option peer '203.0.113.2'
	option local_port '2222'
	option timeout '300'
	option max_clock_error '7.5'
	option ttl '2'
	option verbose '2'

config peer 'udpc'
	option enabled '1'
	option mode 'udp'
	option role 'connect'
	option peer '198.51.100.2'
	option local_port '22'
	option udp_port '6000'
	option heartbeat '10'
	option frame_size '4000'
	option ttl '0'

config peer 'udpl'
	option enabled '1'
	option mode 'udp'
	option role 'listen'
	option peer '203.0.113.2'
	option local_port '2223'
	option verbose '1'

config peer 'disabled'
	option enabled '0'
	option mode 'tcp'
	option role 'forward'
	option peer '198.51.100.9'
	option local_port '22'

config peer 'badmode'
	option enabled '1'
	option mode 'sctp'
	option role 'forward'
	option peer '198.51.100.2'
	option local_port '22'

config peer 'badrole'
	option enabled '1'
	option mode 'tcp'
	option role 'connect'
	option peer '198.51.100.2'
	option local_port '22'

config peer 'nopeer'
	option enabled '1'
	option mode 'udp'
	option role 'listen'
	option local_port '2224'

config peer 'noport'
	option enabled '1'
	option mode 'tcp'
	option role 'listen'
	option peer '198.51.100.2'

config peer 'badip'
	option enabled '1'
	option mode 'tcp'
	option role 'listen'
	option peer '198.51.100.256'
	option local_port '2225'

config peer 'badport'
	option enabled '1'
	option mode 'udp'
	option role 'connect'
	option peer '198.51.100.2'
	option local_port '22'
	option udp_port '70000'

config peer 'wrongmodeopt'
	option enabled '1'
	option mode 'tcp'
	option role 'forward'
	option peer '198.51.100.2'
	option local_port '22'
	option heartbeat '10'

config peer 'badclock'
	option enabled '1'
	option mode 'tcp'
	option role 'forward'
	option peer '198.51.100.2'
	option local_port '22'
	option max_clock_error '63'

config other 'notapeer'
	option enabled '1'
UCI

nl='
'
# --- syntax -----------------------------------------------------------------
for f in "$files/punchwire-args.sh" "$files/punchwire.init" "$here/test-uci.sh"; do
	if sh -n "$f" 2>"$tmp/err"; then
		ok "sh -n ${f#"$here"/}"
	else
		bad "sh -n ${f#"$here"/}: $(cat "$tmp/err")"
	fi
done

# --- punchwire_args ---------------------------------------------------------
# shellcheck source=SCRIPTDIR/files/punchwire-args.sh
. "$files/punchwire-args.sh"
config_load punchwire || { echo "config_load failed"; exit 1; }

# args SECTION: the printed list, one per line, then "rc=N"; log in $tmp/log.
args() {
	: >"$tmp/log"
	_a_out="$(punchwire_args "$1")"
	_a_rc=$?
	printf '%s\nrc=%s' "$_a_out" "$_a_rc"
}

check "tcp forward" "tcp${nl}198.51.100.2${nl}--forward${nl}22${nl}rc=0" "$(args tcpfwd)"
check "tcp listen with options" \
	"tcp${nl}203.0.113.2${nl}--timeout${nl}300${nl}--max-clock-error${nl}7.5${nl}--ttl${nl}2${nl}--listen${nl}2222${nl}-v${nl}-v${nl}rc=0" \
	"$(args tcplisten)"
check "udp connect with udp_port" \
	"udp${nl}-c${nl}22${nl}198.51.100.2${nl}6000${nl}--heartbeat${nl}10${nl}--frame-size${nl}4000${nl}--ttl${nl}0${nl}rc=0" \
	"$(args udpc)"
check "udp listen" "udp${nl}-l${nl}2223${nl}203.0.113.2${nl}-v${nl}rc=0" "$(args udpl)"
check "valid section logs nothing" "" "$(args tcplisten >/dev/null; cat "$tmp/log")"

for s in badmode badrole nopeer noport badip badport wrongmodeopt badclock; do
	out="$(args "$s")"
	check "invalid '$s' prints nothing, rc=1" "${nl}rc=1" "$out"
	log="$(cat "$tmp/log")"
	case "$log" in
		"punchwire daemon.warn section '$s' skipped: "*) ok "invalid '$s' logged: ${log#*skipped: }" ;;
		*) bad "invalid '$s' logged a warning (log: $log)" ;;
	esac
done

# --- the init script's start_service against fake procd ---------------------
procd_open_instance() { echo "open $1" >>"$tmp/procd"; }
procd_set_param() { echo "set $*" >>"$tmp/procd"; }
procd_append_param() { echo "append $*" >>"$tmp/procd"; }
procd_close_instance() { echo "close" >>"$tmp/procd"; }
: >"$tmp/procd"
: >"$tmp/log"
# shellcheck disable=SC2034 # read by the init script
PUNCHWIRE_ARGS_SH="$files/punchwire-args.sh"
# The init script is meant to be sourced by /etc/rc.common; its top level
# only sets variables.
# shellcheck source=SCRIPTDIR/files/punchwire.init
. "$files/punchwire.init"
start_service 2>/dev/null

expected_procd="open tcpfwd
set command /usr/bin/punchwire
append command tcp
append command --name tcpfwd
append command 198.51.100.2
append command --forward
append command 22
set respawn 3600 5 0
set stdout 1
set stderr 1
close
open tcplisten
set command /usr/bin/punchwire
append command tcp
append command --name tcplisten
append command 203.0.113.2
append command --timeout
append command 300
append command --max-clock-error
append command 7.5
append command --ttl
append command 2
append command --listen
append command 2222
append command -v
append command -v
set respawn 3600 5 0
set stdout 1
set stderr 1
close
open udpc
set command /usr/bin/punchwire
append command udp
append command --name udpc
append command -c
append command 22
append command 198.51.100.2
append command 6000
append command --heartbeat
append command 10
append command --frame-size
append command 4000
append command --ttl
append command 0
set respawn 3600 5 0
set stdout 1
set stderr 1
close
open udpl
set command /usr/bin/punchwire
append command udp
append command --name udpl
append command -l
append command 2223
append command 203.0.113.2
append command -v
set respawn 3600 5 0
set stdout 1
set stderr 1
close"
check "start_service: 4 instances, disabled/invalid/other sections skipped" \
	"$expected_procd" "$(cat "$tmp/procd")"
check "start_service: one warning per invalid section" "8" "$(grep -c 'daemon.warn' "$tmp/log")"

# The shipped example config: both sections valid, both disabled.
cp "$files/punchwire.config" "$UCI_DIR/punchwire"
: >"$tmp/procd"
start_service 2>/dev/null
check "shipped config: no instance started (examples disabled)" "" "$(cat "$tmp/procd")"
config_load punchwire
check "shipped config: 'office' is valid" \
	"tcp${nl}198.51.100.2${nl}--timeout${nl}300${nl}--listen${nl}2222${nl}rc=0" "$(args office)"
check "shipped config: 'office_udp' is valid" \
	"udp${nl}-l${nl}2223${nl}198.51.100.2${nl}5555${nl}--heartbeat${nl}15${nl}rc=0" "$(args office_udp)"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
