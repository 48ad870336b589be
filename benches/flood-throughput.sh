#!/usr/bin/env bash
# Updates per second and MB/s through three flood daemons on loopback: updates go into
# one daemon's client port (benches/flood_load.rs) and the clock stops when both other
# daemons have exported them all (their export command is `cat > /dev/null`, so the
# figure is the daemons', not a disk's). Updates of 100 bytes and of 64 KiB; each figure
# the median of RUNS runs. Results go in BENCHMARKS.md.
#
#   benches/flood-throughput.sh            # RUNS=3
set -euo pipefail

RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
cargo build --quiet --release -p flotilla -p flotilla-benches --bin flotilla --bin flood-load
FLOTILLA=target/release/flotilla
LOAD=target/release/flood-load

WORK=$(mktemp -d "$PWD/target/flood-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    while :; do
        p=$((30000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

declare -A CLIENT
conf="$WORK/flood.conf"
: >"$conf"
for s in a b c; do
    CLIENT[$s]=$(free_port)
    data=$(free_port)
    echo "(:site-define (:site-name $s) (:inet-address 127.0.0.1) (:client-port ${CLIENT[$s]}) (:data-port $data))" >>"$conf"
done
cat >>"$conf" <<CONF
(:group-define (:group-name g) (:master-site a) (:site a) (:site b) (:site c) (:connectivity 2))
(:local (:export-command "cat > /dev/null") (:data-storage-max 1073741824) (:log-purge-period 5))
CONF
for s in a b c; do
    "$FLOTILLA" floodd --config "$conf" --site "$s" >"$WORK/$s.out" 2>"$WORK/$s.err" &
    PIDS="$PIDS $!"
done
for s in a b c; do
    until grep -q listening "$WORK/$s.out" 2>/dev/null; do sleep 0.1; done
done
# Every daemon holds the topology before the clock starts.
until "$FLOTILLA" flood --daemon "127.0.0.1:${CLIENT[c]}" topology >/dev/null 2>&1; do sleep 0.1; done

measure() {
    : >"$WORK/runs"
    for _ in $(seq "$RUNS"); do
        "$LOAD" --updates "$1" --bytes "$2" "127.0.0.1:${CLIENT[a]}" "127.0.0.1:${CLIENT[b]}" "127.0.0.1:${CLIENT[c]}" \
            | tee -a "$WORK/log" | awk '{print $6, $8}' >>"$WORK/runs"
    done
    sort -n "$WORK/runs" | awk '{r[NR]=$0} END {print r[int((NR+1)/2)]}'
}

echo "three flood daemons on loopback, $(nproc) cores; median of $RUNS runs"
printf '%-22s %14s %10s\n' "updates" "updates/s" "MB/s"
read -r ups mbs <<<"$(measure 50000 100)"
printf '%-22s %14s %10s\n' "50,000 × 100 B" "$ups" "$mbs"
read -r ups mbs <<<"$(measure 2000 65536)"
printf '%-22s %14s %10s\n' "2,000 × 64 KiB" "$ups" "$mbs"
