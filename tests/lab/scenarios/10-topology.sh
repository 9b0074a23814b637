#!/usr/bin/env bash
# Self-check: the path works, and the hop counts are what LAB_HOPS_* say
# (TTL = hops+1 expires at the ISP, before the remote router; hops+2 reaches it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

ping_ttl() { # NODE TTL DST -> prints ping output
	lab_exec "$1" ping -n -c1 -W2 -t "$2" "$3" 2>&1 || true
}

hops_check() { # SITE PEER_PUB ISP_ADDR
	local site=$1 peer=$2 isp=$3 hops out
	hops=LAB_HOPS_$site
	hops=${!hops}
	out=$(ping_ttl "$site" $((hops + 1)) "$peer")
	lab_check "host $site: TTL $((hops + 1)) expires at the ISP ($isp)" grep -q "From $isp .*Time to live exceeded" <<<"$out"
	out=$(ping_ttl "$site" $((hops + 2)) "$peer")
	lab_check "host $site: TTL $((hops + 2)) reaches the remote public address $peer" grep -q "bytes from $peer" <<<"$out"
}

lab_up openwrt openwrt
lab_check "A pings B's public address" lab_exec A ping -n -c3 -i0.2 -W2 "$LAB_B_PUB"
lab_check "B pings A's public address" lab_exec B ping -n -c3 -i0.2 -W2 "$LAB_A_PUB"
hops_check A "$LAB_B_PUB" "$LAB_ISP_A"
hops_check B "$LAB_A_PUB" "$LAB_ISP_B"

lab_up cgnat openwrt
lab_check "cgnat: LAB_HOPS_A = 2" test "$LAB_HOPS_A" = 2
hops_check A "$LAB_B_PUB" "$LAB_ISP_A"
hops_check B "$LAB_A_PUB" "$LAB_ISP_B"
lab_finish
