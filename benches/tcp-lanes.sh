#!/bin/bash
# Why lanes (SPEC.md §7.1): latency of a sparse TCP stream (64 B every 100 ms) under
# random loss made by nftables drops between two network namespaces, alone, sharing its
# connection with bulk traffic ("bulk"), or beside bulk traffic on a second connection
# ("sep"). Needs root (ip netns), nft and python3. Prints p50/p90/p99/max of the sparse stream.
# usage: run.sh LOSS DUR [bulk]
set -e
L=$1; D=$2; B=$3
A=exa-$$; Bn=exb-$$
ip netns add $A; ip netns add $Bn
trap "ip netns del $A; ip netns del $Bn" EXIT
ip link add va netns $A type veth peer name vb netns $Bn
ip -n $A addr add 10.77.0.1/24 dev va; ip -n $A link set va up; ip -n $A link set lo up
ip -n $Bn addr add 10.77.0.2/24 dev vb; ip -n $Bn link set vb up; ip -n $Bn link set lo up
for ns in $A $Bn; do
ip netns exec $ns nft -f - <<NFT
table inet loss {
 chain out {
  type filter hook output priority 0;
  ip daddr 10.77.0.0/24 numgen random mod 100 < $L drop
 }
}
NFT
done
[ "$B" = sep ] && { ip netns exec $Bn python3 "$(dirname "$0")"/tcp-lanes/bulk.py recv 10.77.0.2 9001 $D & sleep 0.3; ip netns exec $A python3 "$(dirname "$0")"/tcp-lanes/bulk.py send 10.77.0.2 9001 $D & B=; }
ip netns exec $Bn python3 "$(dirname "$0")"/tcp-lanes/tcpdelay.py recv 10.77.0.2 9000 $D & 
sleep 0.5
ip netns exec $A python3 "$(dirname "$0")"/tcp-lanes/tcpdelay.py send 10.77.0.2 9000 $D $B
wait
