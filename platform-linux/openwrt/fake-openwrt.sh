# shellcheck shell=sh
# fake-openwrt.sh: a small fake of OpenWrt's /lib/functions.sh UCI helpers
# (config_load, config_get, config_get_bool, config_foreach, reading a UCI
# file with awk) and of logger, for test-uci.sh and test-package.sh.
# Set before sourcing: UCI_DIR (UCI files live in $UCI_DIR/<config>) and
# FAKE_LOG (logger appends "TAG PRIORITY MESSAGE" lines there). POSIX sh,
# busybox ash too.
uci_file=
config_load() { uci_file="$UCI_DIR/$1"; [ -f "$uci_file" ]; }

# _uci_get SECTION OPTION: print the option's value (last one wins, quotes
# removed), nothing if unset.
_uci_get() {
	awk -v s="$1" -v o="$2" '
		function unq(v) {
			if (v ~ /^'\''.*'\''$/ || v ~ /^".*"$/) v = substr(v, 2, length(v) - 2)
			return v
		}
		$1 == "config" { sec = unq($3); next }
		$1 == "option" && sec == s && $2 == o {
			v = $0
			sub(/^[ \t]*option[ \t]+[^ \t]+[ \t]*/, "", v)
			sub(/[ \t]+$/, "", v)
			val = unq(v); found = 1
		}
		END { if (found) printf "%s", val }
	' "$uci_file"
}

# config_get VAR SECTION OPTION [DEFAULT] (default also for an empty value,
# as OpenWrt's); config_get SECTION OPTION prints instead.
config_get() {
	if [ $# -le 2 ]; then
		_uci_get "$1" "$2"
		return 0
	fi
	_cg_v="$(_uci_get "$2" "$3")"
	[ -n "$_cg_v" ] || _cg_v="${4:-}"
	eval "$1=\$_cg_v"
}

# config_get_bool VAR SECTION OPTION [DEFAULT]: 1 or 0, as OpenWrt's.
config_get_bool() {
	config_get _cgb_v "$2" "$3" "${4:-}"
	case "$_cgb_v" in
		1|on|true|yes|enabled) _cgb_v=1 ;;
		0|off|false|no|disabled) _cgb_v=0 ;;
		*) _cgb_v="${4:-}" ;;
	esac
	eval "$1=\$_cgb_v"
}

# config_foreach FUNCTION [TYPE] [ARGS...]: FUNCTION SECTION ARGS for each
# named section of TYPE (all sections if TYPE is empty), in file order.
config_foreach() {
	_cf_fn="$1"
	_cf_type="${2:-}"
	if [ $# -ge 2 ]; then shift 2; else shift; fi
	# UCI section names are words ([A-Za-z0-9_]).
	# shellcheck disable=SC2013
	for _cf_s in $(awk -v t="$_cf_type" '
		$1 == "config" && (t == "" || $2 == t) {
			s = $3; gsub(/['\''"]/, "", s); print s
		}' "$uci_file"); do
		"$_cf_fn" "$_cf_s" "$@"
	done
}

# logger: append "TAG PRIORITY MESSAGE" to $FAKE_LOG.
logger() {
	_lg_tag=logger _lg_pri=user.notice
	while [ $# -gt 0 ]; do
		case "$1" in
			-t) _lg_tag="$2"; shift 2 ;;
			-p) _lg_pri="$2"; shift 2 ;;
			-s) shift ;;
			*) break ;;
		esac
	done
	echo "$_lg_tag $_lg_pri $*" >>"$FAKE_LOG"
}
