#!/usr/bin/env bash
# vip-vs-keepalived.sh: VIP failover of flotilla (groupd + vipd) against keepalived (VRRP),
# in one run, on the same network namespaces (issue 18; figures in BENCHMARKS.md).
#
#   three nodes n0 n1 n2 (10.98.0.1-3) and a client c (10.98.0.100) on one bridge;
#   the VIP 10.98.0.50/24 on eth0. The client pings the VIP every 10 ms.
#
# Each "crash" round pulls the holder's cable (its bridge port down) and kills its
# daemons with -9; the outage is the time from then to the first answer after it, and
# the lost pings are counted. flotilla and keepalived run with their default timings,
# then tuned. A "move" round moves the VIP to another node while pinging: flotilla with
# `flotilla vip move`; keepalived has no such command, its nearest is stopping the master
# (a priority-0 advertisement hands over at once), measured the same way.
#
# Needs root (or an unprivileged user namespace), iproute2, iputils-ping, keepalived:
#   apt-get install -y keepalived iputils-ping
# Usage: cargo build --release -p flotilla && benches/vip-vs-keepalived.sh
# Env: ROUNDS=5  FLOTILLA=target/release/flotilla  KEEPALIVED=keepalived
#      PHASES="flotilla-default flotilla-tuned keepalived-default keepalived-tuned"
set -euo pipefail
[ -n "${VIPBENCH_TRACE:-}" ] && set -x
ROUNDS=${ROUNDS:-5}
FLOTILLA=${FLOTILLA:-$(pwd)/target/release/flotilla}
KEEPALIVED=${KEEPALIVED:-keepalived}
VIP=10.98.0.50

if [ -z "${VIPBENCH_INSIDE:-}" ]; then
  export VIPBENCH_INSIDE=1 FLOTILLA
  [ -x "$FLOTILLA" ] || { echo "no $FLOTILLA: cargo build --release -p flotilla"; exit 1; }
  command -v ping >/dev/null || { echo "no ping: apt-get install iputils-ping"; exit 1; }
  command -v "$KEEPALIVED" >/dev/null || { echo "no keepalived: apt-get install keepalived"; exit 1; }
  if [ "$(id -u)" = 0 ]; then exec unshare --net --mount --kill-child "$0" "$@"; fi
  exec unshare --map-root-user --net --mount --kill-child "$0" "$@"
fi

W=$(mktemp -d -t vipbench.XXXXXX)
declare -A PID
cleanup() {
  for p in "${PID[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

# Private /run: namespace names made here live only in this sandbox.
mount -t tmpfs tmpfs /run
ip link set lo up
ip link add br0 type bridge
ip link set br0 up
i=1
for n in n0 n1 n2 c; do
  ip netns add $n
  ip link add p$n type veth peer name eth0 netns $n
  ip link set p$n master br0
  ip link set p$n up
  ip -n $n link set lo up
  ip -n $n link set eth0 up
  if [ $n = c ]; then ip -n c addr add 10.98.0.100/24 dev eth0
  else ip -n $n addr add 10.98.0.$i/24 dev eth0; i=$((i + 1)); fi
done

holds() { ip -n "$1" -br addr show eth0 | grep -q " $VIP/"; }
holder() { for n in n0 n1 n2; do if holds $n; then echo $n; fi; done; }
# Waits (15 s at most) until exactly one node has the VIP; prints it.
one_holder() {
  for _ in $(seq 150); do
    h=$(holder)
    if [ "$(echo "$h" | wc -w)" = 1 ]; then echo "$h"; return 0; fi
    sleep 0.1
  done
  echo "no single holder: $(holder | tr '\n' ' ')" >&2
  for f in "$W"/*log; do echo "== $f" >&2; tail -5 "$f" >&2; done
  return 1
}

# ping for $1 s; runs "$2" one second in; prints "outage_ms lost"
measure() {
  ip netns exec c ping -D -n -O -i 0.01 -W 1 -w "$1" $VIP >"$W/ping" 2>&1 &
  local pp=$!
  sleep 1
  local t0
  t0=$(date +%s.%N)
  eval "$2"
  wait $pp || true
  local first lost
  first=$(awk -F'[][]' -v t0="$t0" '/bytes from/ && $2+0 > t0+0 {printf "%d", ($2-t0)*1000; exit}' "$W/ping")
  lost=$(awk '/packets transmitted/ {print $1 - $4}' "$W/ping")
  gap=$(awk -F'[][]' '/bytes from/ {t=$2+0; if (p && t-p>g) g=t-p; p=t} END {printf "%d", g*1000}' "$W/ping")
  # The outage is the longest silence around the event (the first answer after it can
  # be the old holder's, still answering).
  echo "${gap:-0} ${lost:-0} ${first:-none}"
}

summary() { # name values...
  local name=$1; shift
  printf '%s: ' "$name"
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "min %d / median %d / max %d ms over %d rounds\n", a[1], a[int((NR+1)/2)], a[NR], NR}'
}

# ---------------------------------------------------------------- flotilla
GROUPD_TUNED='(:timing (:heartbeat 10ms) (:suspect-after 30ms) (:verify-for 20ms) (:retry 5ms) (:ack-timeout 20ms) (:commit-timeout 100ms) (:hello 200ms))'

flotilla_start() { # node timing(default|tuned)
  local n=$1 k=${1#n} args=()
  for j in 0 1 2; do if [ $j != "$k" ]; then args+=(--join 10.98.0.$((j + 1)):4803); fi; done
  local lease=400
  if [ "$2" = tuned ]; then args+=(--config "$W/groupd-tuned.conf"); lease=20; fi
  ip netns exec $n "$FLOTILLA" groupd --name $n --listen 10.98.0.$((k + 1)):4803 \
    --socket "$W/$n.g" "${args[@]}" >>"$W/$n.glog" 2>&1 &
  PID[$n.g]=$!
  for _ in $(seq 100); do [ -S "$W/$n.g" ] && break; sleep 0.05; done
  ip netns exec $n "$FLOTILLA" vipd --node $n --config "$W/vip.conf" --groupd "$W/$n.g" \
    --socket "$W/$n.v" --lease $lease >>"$W/$n.vlog" 2>&1 &
  PID[$n.v]=$!
}
flotilla_kill() { kill -KILL "${PID[$1.g]}" "${PID[$1.v]}" 2>/dev/null || true; wait "${PID[$1.g]}" "${PID[$1.v]}" 2>/dev/null || true; }
members3() { "$FLOTILLA" members --daemon "$W/$1.g" 2>/dev/null | grep -q "members=3"; }

flotilla_rounds() { # timing
  local timing=$1 outs=() losts=()
  echo "$GROUPD_TUNED" >"$W/groupd-tuned.conf"
  cat >"$W/vip.conf" <<C
(:cluster (:group vip) (:nodes n0 n1 n2))
(:vip (:name web) (:address $VIP/24 eth0))
C
  for n in n0 n1 n2; do flotilla_start $n "$timing"; done
  one_holder >/dev/null
  for r in $(seq "$ROUNDS"); do
    local h
    h=$(one_holder)
    read -r gap lost first < <(measure 5 "ip link set p$h down; flotilla_kill $h")
    echo "flotilla $timing crash round $r: holder $h, outage ${gap} ms, ${lost} pings lost, first answer after ${first} ms"
    outs+=("$gap"); losts+=("$lost")
    flotilla_kill "$h"
    # The crashed node's address lapses by its kernel lifetime (3 s).
    for _ in $(seq 60); do holds "$h" || break; sleep 0.1; done
    ip link set p$h up
    flotilla_start "$h" "$timing"
    for _ in $(seq 100); do members3 n0 && members3 n1 && members3 n2 && break; sleep 0.1; done
    one_holder >/dev/null
  done
  summary "flotilla $timing crash outage" "${outs[@]}"
  echo "flotilla $timing crash lost pings: ${losts[*]}"
  if [ "$timing" = default ]; then
    outs=(); losts=()
    for r in $(seq "$ROUNDS"); do
      local h to start end
      h=$(one_holder)
      to=n$(( (${h#n} + 1) % 3 ))
      read -r gap lost first < <(measure 3 "start=\$(date +%s%N); \"$FLOTILLA\" vip --socket $W/$to.v move web $to >/dev/null; end=\$(date +%s%N); echo \$(( (end - start) / 1000000 )) > $W/movetime")
      echo "flotilla move round $r: $h -> $to in $(cat "$W/movetime") ms, longest silence ${gap} ms, ${lost} pings lost"
      outs+=("$(cat "$W/movetime")"); losts+=("$lost")
    done
    summary "flotilla forced move (command's own time)" "${outs[@]}"
    echo "flotilla forced move lost pings: ${losts[*]}"
  fi
  for n in n0 n1 n2; do flotilla_kill $n; done
  for n in n0 n1 n2; do ip -n $n addr del $VIP/24 dev eth0 2>/dev/null || true; done
}

# ---------------------------------------------------------------- keepalived
keepalived_start() { # node version advert
  local n=$1 prio
  case $n in n0) prio=150 ;; n1) prio=100 ;; *) prio=50 ;; esac
  rm -f "$W/$n.kpid" "$W/$n.vpid"
  cat >"$W/$n.ka" <<C
global_defs { router_id $n }
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  version $2
  priority $prio
  advert_int $3
  virtual_ipaddress { $VIP/24 dev eth0 }
}
C
  ip netns exec $n "$KEEPALIVED" -n -l -P -R -f "$W/$n.ka" -p "$W/$n.kpid" -r "$W/$n.vpid" >>"$W/$n.klog" 2>&1 &
  PID[$n.k]=$!
}
keepalived_kill() {
  kill -KILL "$(cat "$W/$1.vpid" 2>/dev/null)" "${PID[$1.k]}" 2>/dev/null || true
  wait "${PID[$1.k]}" 2>/dev/null || true
}

keepalived_rounds() { # name version advert
  local name=$1 outs=() losts=()
  for n in n0 n1 n2; do keepalived_start $n "$2" "$3"; done
  sleep 1
  one_holder >/dev/null
  for r in $(seq "$ROUNDS"); do
    local h
    h=$(one_holder)
    read -r gap lost first < <(measure 6 "ip link set p$h down; keepalived_kill $h")
    echo "keepalived $name crash round $r: holder $h, outage ${gap} ms, ${lost} pings lost"
    outs+=("$gap"); losts+=("$lost")
    keepalived_kill "$h"   # reaped here: a zombie in its pid file counts as running
    rm -f "$W/$h.kpid" "$W/$h.vpid"
    ip link set p$h up
    ip -n "$h" addr del $VIP/24 dev eth0 2>/dev/null || true
    keepalived_start "$h" "$2" "$3"
    sleep 1
    one_holder >/dev/null
    # The restarted node preempts back when it has the highest priority: wait for it.
    sleep 5
  done
  summary "keepalived $name crash outage" "${outs[@]}"
  echo "keepalived $name crash lost pings: ${losts[*]}"
  if [ "$name" = default ]; then
    outs=(); losts=()
    for r in $(seq "$ROUNDS"); do
      local h
      h=$(one_holder)
      read -r gap lost first < <(measure 4 "kill -TERM ${PID[$h.k]}")
      echo "keepalived stop-the-master round $r: from $h, longest silence ${gap} ms, ${lost} pings lost"
      outs+=("$gap"); losts+=("$lost")
      keepalived_kill "$h"
      rm -f "$W/$h.kpid" "$W/$h.vpid"
      keepalived_start "$h" "$2" "$3"
      sleep 6
    done
    summary "keepalived stop-the-master (its nearest to a move): longest silence" "${outs[@]}"
    echo "keepalived stop-the-master lost pings: ${losts[*]}"
  fi
  for n in n0 n1 n2; do keepalived_kill $n; done
  for n in n0 n1 n2; do ip -n $n addr del $VIP/24 dev eth0 2>/dev/null || true; done
}

echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores; $("$FLOTILLA" --version); $("$KEEPALIVED" --version 2>&1 | head -1); rounds $ROUNDS"
PHASES=${PHASES:-flotilla-default flotilla-tuned keepalived-default keepalived-tuned}
for phase in $PHASES; do
  case $phase in
    flotilla-default) flotilla_rounds default ;;
    flotilla-tuned) flotilla_rounds tuned ;;
    keepalived-default) keepalived_rounds default 2 1 ;;
    keepalived-tuned) keepalived_rounds tuned 3 0.03 ;;
    *) echo "unknown phase $phase"; exit 1 ;;
  esac
done
