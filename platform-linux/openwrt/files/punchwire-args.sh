# shellcheck shell=sh disable=SC2154 # _pw_* are assigned by config_get
# punchwire-args.sh: turn one UCI 'peer' section of /etc/config/punchwire
# into punchwire's command line. Sourced by /etc/init.d/punchwire (installed
# as /usr/share/punchwire/punchwire-args.sh) and by ../test-uci.sh.
#
#   punchwire_args SECTION
#
# Needs config_load already done (config_get, config_get_bool from
# /lib/functions.sh). Prints the arguments after "punchwire", one per line,
# and returns 0; for an invalid section it prints nothing, logs a warning
# with logger and returns 1. Whether the section is enabled is not checked
# here (the init script does that). POSIX sh: no 'local', so every variable
# is prefixed _pw_.

# _pw_warn SECTION MESSAGE: one warning to syslog (and stderr).
_pw_warn() {
	logger -s -t punchwire -p daemon.warn "section '$1' skipped: $2"
}

# _pw_uint VALUE MIN MAX: VALUE is a decimal integer in [MIN, MAX].
_pw_uint() {
	case "$1" in
		''|*[!0-9]*) return 1 ;;
	esac
	# At most 6 digits, so the arithmetic cannot overflow.
	[ "${#1}" -le 6 ] || return 1
	[ "$1" -ge "$2" ] && [ "$1" -le "$3" ]
}

# _pw_seconds VALUE [zero]: seconds as punchwire takes them (12 or 12.5),
# positive, or also 0 when the second argument is "zero".
_pw_seconds() {
	case "$1" in
		''|.|*.*.*|*[!0-9.]*) return 1 ;;
	esac
	case "$1" in
		*[1-9]*) return 0 ;;
	esac
	[ "${2:-}" = zero ]
}

# _pw_ipv4 VALUE: dotted-quad IPv4 address, each part 0-255.
_pw_ipv4() {
	case "$1" in
		*[!0-9.]*|*..*|.*|*.) return 1 ;;
	esac
	_pw_ip_rest="$1."
	_pw_ip_n=0
	while [ -n "$_pw_ip_rest" ]; do
		_pw_ip_part="${_pw_ip_rest%%.*}"
		_pw_ip_rest="${_pw_ip_rest#*.}"
		_pw_uint "$_pw_ip_part" 0 255 || return 1
		case "$_pw_ip_part" in
			0?*) return 1 ;; # no leading zeros (not octal, not ambiguous)
		esac
		_pw_ip_n=$((_pw_ip_n + 1))
	done
	[ "$_pw_ip_n" = 4 ]
}

punchwire_args() {
	_pw_s="$1"
	config_get _pw_mode "$_pw_s" mode
	config_get _pw_role "$_pw_s" role
	config_get _pw_peer "$_pw_s" peer
	config_get _pw_local_port "$_pw_s" local_port
	config_get _pw_udp_port "$_pw_s" udp_port
	config_get _pw_timeout "$_pw_s" timeout
	config_get _pw_max_clock_error "$_pw_s" max_clock_error
	config_get _pw_heartbeat "$_pw_s" heartbeat
	config_get _pw_frame_size "$_pw_s" frame_size
	config_get _pw_ttl "$_pw_s" ttl
	config_get _pw_verbose "$_pw_s" verbose 0

	case "$_pw_mode" in
		tcp)
			case "$_pw_role" in
				forward|listen) ;;
				*) _pw_warn "$_pw_s" "tcp role must be forward or listen, got '$_pw_role'"; return 1 ;;
			esac
			for _pw_o in udp_port heartbeat frame_size; do
				eval "_pw_v=\$_pw_$_pw_o"
				[ -z "$_pw_v" ] || { _pw_warn "$_pw_s" "option $_pw_o is for mode udp"; return 1; }
			done
			;;
		udp)
			case "$_pw_role" in
				connect|listen) ;;
				*) _pw_warn "$_pw_s" "udp role must be connect or listen, got '$_pw_role'"; return 1 ;;
			esac
			for _pw_o in timeout max_clock_error; do
				eval "_pw_v=\$_pw_$_pw_o"
				[ -z "$_pw_v" ] || { _pw_warn "$_pw_s" "option $_pw_o is for mode tcp"; return 1; }
			done
			;;
		*)
			_pw_warn "$_pw_s" "mode must be tcp or udp, got '$_pw_mode'"
			return 1
			;;
	esac

	[ -n "$_pw_peer" ] || { _pw_warn "$_pw_s" "missing option peer"; return 1; }
	_pw_ipv4 "$_pw_peer" || { _pw_warn "$_pw_s" "peer is not an IPv4 address: '$_pw_peer'"; return 1; }
	[ -n "$_pw_local_port" ] || { _pw_warn "$_pw_s" "missing option local_port"; return 1; }
	_pw_uint "$_pw_local_port" 1 65535 || { _pw_warn "$_pw_s" "local_port must be 1-65535, got '$_pw_local_port'"; return 1; }
	[ -z "$_pw_udp_port" ] || _pw_uint "$_pw_udp_port" 1 65535 || { _pw_warn "$_pw_s" "udp_port must be 1-65535, got '$_pw_udp_port'"; return 1; }
	for _pw_o in timeout heartbeat; do
		eval "_pw_v=\$_pw_$_pw_o"
		[ -z "$_pw_v" ] || _pw_seconds "$_pw_v" || { _pw_warn "$_pw_s" "$_pw_o must be positive seconds (12 or 12.5), got '$_pw_v'"; return 1; }
	done
	if [ -n "$_pw_max_clock_error" ]; then
		if ! _pw_seconds "$_pw_max_clock_error" zero ||
			! _pw_uint "0${_pw_max_clock_error%%.*}" 0 62; then
			_pw_warn "$_pw_s" "max_clock_error must be 0 to 62.999 seconds, got '$_pw_max_clock_error'"
			return 1
		fi
	fi
	[ -z "$_pw_frame_size" ] || _pw_uint "$_pw_frame_size" 1 40000 || { _pw_warn "$_pw_s" "frame_size must be 1-40000, got '$_pw_frame_size'"; return 1; }
	[ -z "$_pw_ttl" ] || _pw_uint "$_pw_ttl" 0 255 || { _pw_warn "$_pw_s" "ttl must be 0-255, got '$_pw_ttl'"; return 1; }
	_pw_uint "$_pw_verbose" 0 3 || { _pw_warn "$_pw_s" "verbose must be 0-3, got '$_pw_verbose'"; return 1; }

	if [ "$_pw_mode" = tcp ]; then
		printf '%s\n' tcp "$_pw_peer"
		[ -z "$_pw_timeout" ] || printf '%s\n' --timeout "$_pw_timeout"
		[ -z "$_pw_max_clock_error" ] || printf '%s\n' --max-clock-error "$_pw_max_clock_error"
		[ -z "$_pw_ttl" ] || printf '%s\n' --ttl "$_pw_ttl"
		printf '%s\n' "--$_pw_role" "$_pw_local_port"
	else
		if [ "$_pw_role" = connect ]; then
			printf '%s\n' udp -c "$_pw_local_port" "$_pw_peer"
		else
			printf '%s\n' udp -l "$_pw_local_port" "$_pw_peer"
		fi
		[ -z "$_pw_udp_port" ] || printf '%s\n' "$_pw_udp_port"
		[ -z "$_pw_heartbeat" ] || printf '%s\n' --heartbeat "$_pw_heartbeat"
		[ -z "$_pw_frame_size" ] || printf '%s\n' --frame-size "$_pw_frame_size"
		[ -z "$_pw_ttl" ] || printf '%s\n' --ttl "$_pw_ttl"
	fi
	_pw_i=0
	while [ "$_pw_i" -lt "$_pw_verbose" ]; do
		printf '%s\n' -v
		_pw_i=$((_pw_i + 1))
	done
	return 0
}
