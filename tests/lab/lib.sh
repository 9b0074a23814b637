# shellcheck shell=bash
# punchwire NAT lab - helper library. Source it from a scenario (bash, set -euo pipefail).
#
# TOPOLOGY (see README.md for the diagram)
#   host A 192.168.1.10 -- router A [-- carrier A] -- ISP (wanem) -- [carrier B --] router B -- host B 192.168.2.10
#   Public address of site A: 203.0.113.2 (ISP side 203.0.113.1)
#   Public address of site B: 198.51.100.2 (ISP side 198.51.100.1)
#   With a cgnat* profile the home router's WAN is 100.64.<1|2>.2 and the carrier
#   NAT (100.64.<1|2>.1 inside) owns the public address instead.
#
# PROFILES (per site): openwrt drop naked random cgnat cgnat-random  (see README.md)
#
# API
#   lab_up PROFILE_A PROFILE_B [WANEM_OPTION...]
#        Build the lab (fresh namespaces named pw<4 hex>-*) and start wanem on the
#        ISP hop. Options go to wanem verbatim: --delay MS --jitter MS --loss PCT
#        --ge P,R[,LB[,LG]] --dup PCT --reorder PCT --reorder-delay MS --rate MBIT
#        --burst BYTES --queue MS --mtu BYTES --seed N; suffix -ab / -ba for one
#        direction only (A->B / B->A), e.g. --loss-ab 5. Delay is one-way per
#        direction (RTT = 2 x delay). A lab already up is torn down first.
#   lab_down                      Tear everything down (idempotent; also runs on EXIT/INT/TERM).
#   lab_exec NODE CMD...          Run CMD in a namespace; NODE is A or B (hosts), RA/RB
#                                 (home routers), CA/CB (carrier NATs, cgnat only), ISP.
#   lab_bg NODE NAME CMD...       Like lab_exec but in the background, output to
#                                 "$LAB_DIR/NAME.log"; pid in LAB_LAST_PID; killed by lab_down.
#   lab_wait PID [TIMEOUT_S]      Wait for a lab_bg process; returns its exit status (124 on timeout).
#   lab_ns NODE                   Print the namespace name of NODE.
#   lab_portfwd SITE PROTO PORT   Forward PROTO (tcp|udp) PORT on site A|B's public address
#                                 to its host (through the carrier NAT too).
#   lab_conntrack NODE ARGS...    conntrack -L ARGS... inside NODE (a router or carrier).
#   lab_wanem_stats               Print wanem's per-direction counters.
#   lab_smol SITE                 Put a smoltcp node behind site A|B's host: a TAP device
#                                 (pwtap0, 10.77.<1|2>.1/24 on the kernel side) in the host's
#                                 namespace, which then forwards and masquerades the node
#                                 (10.77.<1|2>.2) onto its own address; LAB_HOPS_X grows by 1.
#                                 Run the node with: lab_bg X NAME "$LAB_SMOL_NODE" $(lab_smol_args X) ...
#   lab_smol_args SITE            Print smol-node's node options for SITE (--tap --addr --gateway).
#   lab_report connect MS         Report time to connect (milliseconds) for the result table.
#   lab_report goodput MBIT       Report goodput (Mbit/s) for the result table.
#   lab_check DESC CMD...         Run CMD (in a subshell, output shown only on failure);
#                                 print PASS/FAIL DESC; a failure is remembered.
#   lab_in_range DESC VALUE LO HI lab_check that LO <= VALUE <= HI (numbers, decimals ok).
#   lab_finish                    End of scenario: exit 1 if any lab_check failed, else 0.
#   lab_log MSG...                Print a progress line.
#
# VARIABLES after lab_up
#   LAB_A_PRIV LAB_B_PRIV   host addresses (192.168.1.10, 192.168.2.10)
#   LAB_A_PUB  LAB_B_PUB    public addresses (203.0.113.2, 198.51.100.2)
#   LAB_ISP_A  LAB_ISP_B    ISP hop addresses (203.0.113.1, 198.51.100.1)
#   LAB_HOPS_A LAB_HOPS_B   NAT hops between a host and the ISP (1, or 2 with cgnat*):
#                           a packet with TTL = LAB_HOPS_X + 1 opens site X's NAT
#                           mappings and expires at the ISP, before the remote site.
#   LAB_PUNCHWIRE           path of the punchwire binary (target/release/punchwire)
#   LAB_SMOL_NODE           path of the smol-node binary (target/release/smol-node)
#   LAB_SMOL_A_ADDR LAB_SMOL_A_GW (and _B_)  after lab_smol: the node's address, and the
#                           TAP's kernel side (its gateway, where a LAN service can listen)
#   LAB_PY                  python3 to use; "$LAB_ROOT/nettool.py" is a small probe helper
#   LAB_DIR                 scratch directory of this lab (logs); if unset before lab_up, a
#                           /tmp directory is made and removed by lab_down (LAB_KEEP_LOGS=1 keeps it)

LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_ROOT/../.." && pwd)
LAB_PUNCHWIRE=${LAB_PUNCHWIRE:-$LAB_REPO/target/release/punchwire}
LAB_WANEM=${LAB_WANEM:-$LAB_REPO/target/release/wanem}
LAB_SMOL_NODE=${LAB_SMOL_NODE:-$LAB_REPO/target/release/smol-node}
LAB_SMOL_TAP=pwtap0
LAB_PY=${LAB_PY:-/usr/bin/python3}
[[ -x $LAB_PY ]] || LAB_PY=python3
LAB_A_PRIV=192.168.1.10
LAB_B_PRIV=192.168.2.10
LAB_A_PUB=203.0.113.2
LAB_B_PUB=198.51.100.2
LAB_ISP_A=203.0.113.1
LAB_ISP_B=198.51.100.1
LAB_HOPS_A=1
LAB_HOPS_B=1
LAB_PREFIX=${LAB_PREFIX:-}
LAB_DIR=${LAB_DIR:-}
LAB_NAMESPACES=${LAB_NAMESPACES:-}
LAB_WANEM_PID=${LAB_WANEM_PID:-}
LAB_LAST_PID=
LAB_FAILED=0
LAB_KEEP=${LAB_KEEP:-0}
# Where lab state is saved for tests/lab/exec and tests/lab/down (manual use only).
LAB_STATE_FILE=${LAB_STATE_FILE:-}
export LAB_A_PRIV LAB_B_PRIV LAB_A_PUB LAB_B_PUB LAB_ISP_A LAB_ISP_B LAB_PUNCHWIRE LAB_PY LAB_ROOT LAB_SMOL_NODE

lab_log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lab_die() {
	lab_log "ERROR: $*"
	exit 1
}

lab_ns() {
	local n=$1
	case $n in
	A | a) echo "${LAB_PREFIX}hA" ;;
	B | b) echo "${LAB_PREFIX}hB" ;;
	RA | ra) echo "${LAB_PREFIX}rA" ;;
	RB | rb) echo "${LAB_PREFIX}rB" ;;
	CA | ca) echo "${LAB_PREFIX}cA" ;;
	CB | cb) echo "${LAB_PREFIX}cB" ;;
	ISP | isp) echo "${LAB_PREFIX}isp" ;;
	*)
		lab_log "unknown node '$n' (A B RA RB CA CB ISP)"
		return 1
		;;
	esac
}

lab_exec() {
	[[ -n $LAB_PREFIX ]] || lab_die "no lab is up"
	local ns
	ns=$(lab_ns "$1") || return 1
	shift
	ip netns exec "$ns" "$@"
}

lab_bg() {
	[[ -n $LAB_PREFIX ]] || lab_die "no lab is up"
	local ns name=$2
	ns=$(lab_ns "$1") || return 1
	shift 2
	ip netns exec "$ns" "$@" >"$LAB_DIR/$name.log" 2>&1 &
	LAB_LAST_PID=$!
	echo "$LAB_LAST_PID" >>"$LAB_DIR/pids"
}

lab_wait() {
	local pid=$1 limit=${2:-60} i=0
	while kill -0 "$pid" 2>/dev/null; do
		if ((i >= limit * 10)); then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			return 124
		fi
		sleep 0.1
		i=$((i + 1))
	done
	local rc=0
	wait "$pid" || rc=$?
	return "$rc"
}

lab_report() {
	local key=$1 val=$2
	case $key in
	connect | goodput) ;;
	*) lab_die "lab_report: key must be connect or goodput" ;;
	esac
	if [[ -n ${LAB_RESULT:-} ]]; then
		echo "$key=$val" >>"$LAB_RESULT"
	fi
	lab_log "report $key=$val"
}

lab_check() {
	local desc=$1
	shift
	local out
	if out=$("$@" 2>&1); then
		printf '  PASS  %s\n' "$desc" >&2
	else
		printf '  FAIL  %s\n' "$desc" >&2
		[[ -z $out ]] || printf '%s\n' "$out" | sed 's/^/        | /' >&2
		LAB_FAILED=$((LAB_FAILED + 1))
	fi
}

lab__in_range() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v != "" && v + 0 >= lo + 0 && v + 0 <= hi + 0) }'; }
lab_in_range() { lab_check "$1 = $2 (want $3..$4)" lab__in_range "$2" "$3" "$4"; }

lab_finish() {
	if ((LAB_FAILED > 0)); then
		lab_log "$LAB_FAILED check(s) failed"
		exit 1
	fi
	exit 0
}

lab_conntrack() {
	local n=$1
	shift
	lab_exec "$n" conntrack -L "$@" 2>/dev/null
}

lab_wanem_stats() {
	[[ -n $LAB_WANEM_PID ]] || return 0
	kill -USR1 "$LAB_WANEM_PID" 2>/dev/null || true
	sleep 0.2
	grep '^wanem A->B\|^wanem B->A' "$LAB_DIR/wanem.log" | tail -n 2
}

# ---------------------------------------------------------------- building

lab__save() {
	[[ -n $LAB_STATE_FILE ]] || return 0
	mkdir -p "$(dirname "$LAB_STATE_FILE")"
	declare -p LAB_PREFIX LAB_DIR LAB_NAMESPACES LAB_WANEM_PID LAB_HOPS_A LAB_HOPS_B |
		sed 's/^declare -[^ ]*/declare -g/' >"$LAB_STATE_FILE"
}

# Load a lab saved by tests/lab/up.
lab_load() {
	[[ -n $LAB_STATE_FILE && -f $LAB_STATE_FILE ]] || return 1
	# shellcheck disable=SC1090
	source "$LAB_STATE_FILE"
}

lab__newns() {
	local ns=$LAB_PREFIX$1
	ip netns add "$ns"
	LAB_NAMESPACES="$LAB_NAMESPACES $ns"
	if [[ -n ${LAB_REGISTRY:-} ]]; then echo "$ns" >>"$LAB_REGISTRY"; fi
	ip -n "$ns" link set lo up
}

# lab__link NS1 IF1 NS2 IF2: veth pair, offloads off (wanem sees real packets).
lab__link() {
	local n1=$LAB_PREFIX$1 i1=$2 n2=$LAB_PREFIX$3 i2=$4
	ip -n "$n1" link add "$i1" type veth peer name "$i2" netns "$n2"
	lab__ifup "$n1" "$i1"
	lab__ifup "$n2" "$i2"
}
lab__ifup() {
	ip netns exec "$1" ethtool -K "$2" rx off tx off tso off gso off gro off >/dev/null 2>&1 || true
	ip -n "$1" link set "$2" up
}

lab__addr() { ip -n "$LAB_PREFIX$1" addr add "$3" dev "$2"; }
lab__route() { ip -n "$LAB_PREFIX$1" route add default via "$2"; }
lab__sysctl() { ip netns exec "$LAB_PREFIX$1" sysctl -qw "$2" >/dev/null; }
lab__nft() { ip netns exec "$LAB_PREFIX$1" nft -f -; }

# NAT rules; $2 = masquerade flags ("" or "fully-random").
lab__nat_rules() {
	lab__nft "$1" <<-EOT
		table ip nat {
			chain postrouting {
				type nat hook postrouting priority srcnat; policy accept;
				oifname "wan0" masquerade $2
			}
		}
	EOT
}

# Firewall: $2 = reject | drop | none (no input firewall); $3 = inside iface.
lab__fw_rules() {
	local node=$1 mode=$2 lan=$3 action
	case $mode in
	reject) action='meta l4proto tcp reject with tcp reset
				reject with icmpx type port-unreachable' ;;
	drop) action='drop' ;;
	none) action='accept' ;;
	esac
	lab__nft "$node" <<-EOT
		table inet fw {
			chain input {
				type filter hook input priority filter; policy accept;
				iifname "wan0" jump wan_in
			}
			chain wan_in {
				ct state established,related accept
				ct state invalid drop
				icmp type echo-request accept
				$action
			}
			chain forward {
				type filter hook forward priority filter; policy accept;
				ct state established,related accept
				ct state invalid drop
				ct status dnat accept
				iifname "$lan" oifname "wan0" accept
				iifname "wan0" jump wan_fwd
			}
			chain wan_fwd {
				$([[ $mode == none ]] && echo drop || echo "$action")
			}
		}
	EOT
}

# OpenWrt conntrack timeouts and forwarding on a NAT box.
lab__router_sysctls() {
	lab__sysctl "$1" net.ipv4.ip_forward=1
	lab__sysctl "$1" net.netfilter.nf_conntrack_udp_timeout=60
	lab__sysctl "$1" net.netfilter.nf_conntrack_udp_timeout_stream=180
	lab__sysctl "$1" net.netfilter.nf_conntrack_tcp_timeout_established=7440
}

# lab__site X n PROFILE : host, router, maybe carrier; leaves "wan0" of the
# outermost box unconnected... connected to the ISP namespace as a0/b0.
lab__site() {
	local X=$1 n=$2 profile=$3 pub ispip ispif
	if [[ $X == A ]]; then
		pub=$LAB_A_PUB ispip=$LAB_ISP_A ispif=a0
	else
		pub=$LAB_B_PUB ispip=$LAB_ISP_B ispif=b0
	fi
	lab__newns "h$X"
	lab__newns "r$X"
	lab__link "h$X" lan0 "r$X" lan0
	lab__addr "h$X" lan0 "192.168.$n.10/24"
	lab__route "h$X" "192.168.$n.1"
	lab__addr "r$X" lan0 "192.168.$n.1/24"
	case $profile in
	openwrt | drop | naked | random)
		lab__link "r$X" wan0 isp "$ispif"
		lab__addr "r$X" wan0 "$pub/24"
		lab__route "r$X" "$ispip"
		case $profile in
		openwrt) lab__fw_rules "r$X" reject lan0 && lab__nat_rules "r$X" "" ;;
		drop) lab__fw_rules "r$X" drop lan0 && lab__nat_rules "r$X" "" ;;
		naked) lab__fw_rules "r$X" none lan0 && lab__nat_rules "r$X" "" ;;
		random) lab__fw_rules "r$X" reject lan0 && lab__nat_rules "r$X" fully-random ;;
		esac
		lab__router_sysctls "r$X"
		eval "LAB_HOPS_$X=1"
		;;
	cgnat | cgnat-random)
		lab__newns "c$X"
		lab__link "r$X" wan0 "c$X" in0
		lab__addr "r$X" wan0 "100.64.$n.2/24"
		lab__route "r$X" "100.64.$n.1"
		lab__addr "c$X" in0 "100.64.$n.1/24"
		lab__link "c$X" wan0 isp "$ispif"
		lab__addr "c$X" wan0 "$pub/24"
		lab__route "c$X" "$ispip"
		lab__fw_rules "r$X" reject lan0
		lab__nat_rules "r$X" ""
		lab__fw_rules "c$X" drop in0
		if [[ $profile == cgnat ]]; then
			lab__nat_rules "c$X" ""
		else
			lab__nat_rules "c$X" fully-random
		fi
		lab__router_sysctls "r$X"
		lab__router_sysctls "c$X"
		eval "LAB_HOPS_$X=2"
		;;
	*) lab_die "unknown profile '$profile' (openwrt drop naked random cgnat cgnat-random)" ;;
	esac
}

lab__start_wanem() {
	local mac_a=$1 mac_b=$2 i rc=0
	shift 2
	ip netns exec "${LAB_PREFIX}isp" "$LAB_WANEM" --if-a a0 --mac-a "$mac_a" --if-b b0 --mac-b "$mac_b" \
		"$@" >"$LAB_DIR/wanem.log" 2>&1 &
	LAB_WANEM_PID=$!
	lab__save
	for ((i = 0; i < 50; i++)); do
		grep -q 'wanem ready' "$LAB_DIR/wanem.log" && return 0
		kill -0 "$LAB_WANEM_PID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q 'wanem ready' "$LAB_DIR/wanem.log" && return 0
	kill "$LAB_WANEM_PID" 2>/dev/null || true
	wait "$LAB_WANEM_PID" || rc=$?
	lab_log "wanem exit status $rc; log:"
	cat "$LAB_DIR/wanem.log" >&2
	LAB_WANEM_PID=''
	return 1
}

lab_up() {
	(($# >= 2)) || lab_die "usage: lab_up PROFILE_A PROFILE_B [WANEM_OPTION...]"
	local pa=$1 pb=$2
	shift 2
	[[ -n $LAB_PREFIX ]] && lab_down
	[[ -x $LAB_WANEM ]] || lab_die "$LAB_WANEM not built (cargo build --release -p punchwire-wanem)"
	LAB_PREFIX=pw$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')-
	if [[ -z $LAB_DIR ]]; then
		LAB_DIR=$(mktemp -d "/tmp/${LAB_PREFIX}XXXX")
		LAB__OWN_DIR=1
	fi
	mkdir -p "$LAB_DIR"
	: >"$LAB_DIR/pids"
	LAB_NAMESPACES=
	lab_log "lab_up $pa $pb $* (namespaces ${LAB_PREFIX}*)"
	lab__newns isp
	lab__sysctl isp net.ipv4.ip_forward=0
	lab__site A 1 "$pa"
	lab__site B 2 "$pb"
	lab__addr isp a0 "$LAB_ISP_A/24"
	lab__addr isp b0 "$LAB_ISP_B/24"
	# The kernel only handles traffic for the ISP's own addresses; wanem forwards.
	lab__nft isp <<-EOT
		table ip isp {
			chain pre {
				type filter hook prerouting priority raw; policy accept;
				fib daddr type != local drop
			}
		}
	EOT
	local mac_a mac_b nbr_a nbr_b
	nbr_a=$([[ $pa == cgnat* ]] && echo cA || echo rA)
	nbr_b=$([[ $pb == cgnat* ]] && echo cB || echo rB)
	mac_a=$(ip netns exec "$LAB_PREFIX$nbr_a" cat /sys/class/net/wan0/address)
	mac_b=$(ip netns exec "$LAB_PREFIX$nbr_b" cat /sys/class/net/wan0/address)
	# One start, no retry: a wanem that does not come up is a failure to
	# look into (its log is printed), not something to paper over.
	lab__start_wanem "$mac_a" "$mac_b" "$@" || lab_die "wanem did not start"
	# Warm up ARP on both ISP links so the first test packet is not delayed.
	lab_exec A ping -c1 -W2 "$LAB_ISP_A" >/dev/null 2>&1 || true
	lab_exec B ping -c1 -W2 "$LAB_ISP_B" >/dev/null 2>&1 || true
	lab_exec A ping -c1 -W2 "$LAB_B_PUB" >/dev/null 2>&1 || lab_log "warning: host A cannot ping $LAB_B_PUB"
	# Leave no conntrack entries behind from the warm-up.
	local ns
	for ns in $LAB_NAMESPACES; do
		ip netns exec "$ns" conntrack -F >/dev/null 2>&1 || true
	done
}

lab_down() {
	[[ -n $LAB_PREFIX ]] || return 0
	local pid ns
	if [[ -n $LAB_DIR && -f $LAB_DIR/pids ]]; then
		while read -r pid; do
			kill "$pid" 2>/dev/null || true
		done <"$LAB_DIR/pids"
		: >"$LAB_DIR/pids"
	fi
	if [[ -n $LAB_WANEM_PID ]]; then
		kill "$LAB_WANEM_PID" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$LAB_WANEM_PID" 2>/dev/null || break
			sleep 0.1
		done
		grep '^wanem A->B\|^wanem B->A' "$LAB_DIR/wanem.log" 2>/dev/null | tail -n 2 >&2 || true
	fi
	for ns in $LAB_NAMESPACES; do
		# Anything still running inside our namespaces was started by this lab.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	lab_log "lab_down ${LAB_PREFIX}*"
	# A scratch dir lab_up made itself goes too, unless LAB_KEEP_LOGS=1.
	if [[ ${LAB__OWN_DIR:-0} == 1 && ${LAB_KEEP_LOGS:-0} != 1 ]]; then
		rm -rf "$LAB_DIR"
		LAB_DIR='' LAB__OWN_DIR=0
	fi
	LAB_PREFIX='' LAB_NAMESPACES='' LAB_WANEM_PID=''
	if [[ -n $LAB_STATE_FILE ]]; then rm -f "$LAB_STATE_FILE"; fi
}

lab_portfwd() {
	local site=$1 proto=$2 port=$3 n host r c
	case $site in
	A) n=1 host=$LAB_A_PRIV ;;
	B) n=2 host=$LAB_B_PRIV ;;
	*) lab_die "lab_portfwd: site must be A or B" ;;
	esac
	r=R$site c=C$site
	if ip netns list | grep -q "^$(lab_ns "$c")\b"; then
		lab_exec "$c" nft add table ip pf
		lab_exec "$c" nft add chain ip pf pre '{ type nat hook prerouting priority dstnat; }'
		lab_exec "$c" nft add rule ip pf pre iifname wan0 "$proto" dport "$port" dnat to "100.64.$n.2"
	fi
	lab_exec "$r" nft add table ip pf
	lab_exec "$r" nft add chain ip pf pre '{ type nat hook prerouting priority dstnat; }'
	lab_exec "$r" nft add rule ip pf pre iifname wan0 "$proto" dport "$port" dnat to "$host"
}

# ---------------------------------------------------------------- smoltcp node

# A TAP device in the site's host namespace; the host becomes the LAN router
# of the smoltcp node behind it (a second, plain NAT in front of the site's
# router). The TAP lives in the lab's own namespace, so parallel labs never
# share it, and it goes when the namespace is deleted.
lab_smol() {
	local X=$1 n ns
	case $X in
	A) n=1 ;;
	B) n=2 ;;
	*) lab_die "lab_smol: site must be A or B" ;;
	esac
	[[ -x $LAB_SMOL_NODE ]] || lab_die "$LAB_SMOL_NODE not built (cargo build --release -p punchwire-tests --bin smol-node)"
	if [[ ! -c /dev/net/tun ]]; then
		# Containers often lack the node; the device itself may still work.
		{ mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null; } ||
			lab_die "lab_smol: /dev/net/tun is missing and cannot be created (TAP devices unavailable)"
	fi
	ns=$(lab_ns "$X")
	ip -n "$ns" tuntap add dev "$LAB_SMOL_TAP" mode tap ||
		lab_die "lab_smol: cannot create a TAP device in $ns"
	# IPv4 only on the node's segment (no router solicitations, MLD reports).
	lab__sysctl "h$X" "net.ipv6.conf.$LAB_SMOL_TAP.disable_ipv6=1" || true
	lab__ifup "$ns" "$LAB_SMOL_TAP"
	ip -n "$ns" addr add "10.77.$n.1/24" dev "$LAB_SMOL_TAP"
	lab__router_sysctls "h$X"
	# Plain port-preserving masquerade onto the host's address. Inbound on
	# lan0, the host itself answers nothing but pings: a packet for the
	# node that conntrack does not know (a SYN before ours went out, a
	# segment after an entry ended) is dropped, never answered with a RST
	# or port unreachable that would reach the peer or tear down router
	# state. Invalid packets are not forwarded (as on the routers).
	lab__nft "h$X" <<-EOT
		table ip smolnat {
			chain postrouting {
				type nat hook postrouting priority srcnat; policy accept;
				oifname "lan0" masquerade
			}
		}
		table inet smolfw {
			chain input {
				type filter hook input priority filter; policy accept;
				iifname "lan0" ct state established,related accept
				iifname "lan0" icmp type echo-request accept
				iifname "lan0" drop
			}
			chain forward {
				type filter hook forward priority filter; policy accept;
				ct state invalid drop
			}
		}
	EOT
	eval "LAB_SMOL_${X}_ADDR=10.77.$n.2 LAB_SMOL_${X}_GW=10.77.$n.1"
	eval "LAB_HOPS_$X=\$((LAB_HOPS_$X + 1))"
	lab__save
	lab_log "smoltcp node for site $X: $LAB_SMOL_TAP in $ns, node 10.77.$n.2/24 via 10.77.$n.1"
}

lab_smol_args() {
	local n
	case $1 in
	A) n=1 ;;
	B) n=2 ;;
	*) lab_die "lab_smol_args: site must be A or B" ;;
	esac
	echo "--tap $LAB_SMOL_TAP --addr 10.77.$n.2/24 --gateway 10.77.$n.1 --mac 02:70:77:00:0$n:02"
}

lab__on_exit() {
	local rc=$?
	if [[ $LAB_KEEP != 1 ]]; then lab_down; fi
	return "$rc"
}
trap lab__on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
