#!/usr/bin/env bash
# Mutation testing of one protocol of the core, on demand (configuration:
# .cargo/mutants.toml; scores and triage: TESTING.md).
#
#   scripts/mutants.sh PROTOCOL [FILE...]
#
# PROTOCOL is a module of core/src (membership, groups, ship, flood, heartbeat, ...):
# every mutant of its files (or of the FILEs given) is built and checked against
# `cargo test -p flotilla-core --lib PROTOCOL`. Results go to mutants.out/PROTOCOL/
# (caught.txt, missed.txt, timeout.txt, unviable.txt). Installs cargo-mutants if it is
# missing. One build at a time: this machine has two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/mutants.sh PROTOCOL [FILE...]" >&2
  exit 2
fi
protocol=$1
shift
if [ ! -d "core/src/$protocol" ] && [ ! -f "core/src/$protocol.rs" ]; then
  echo "no protocol $protocol in core/src" >&2
  exit 2
fi
if ! command -v cargo-mutants >/dev/null 2>&1; then
  cargo install --locked cargo-mutants
fi
files=()
if [ $# -gt 0 ]; then
  for f in "$@"; do files+=(--file "$f"); done
else
  files+=(--file "core/src/$protocol/**/*.rs")
  [ -f "core/src/$protocol.rs" ] && files+=(--file "core/src/$protocol.rs")
fi
mkdir -p "mutants.out"
start=$(date +%s)
set +e
cargo mutants --package flotilla-core "${files[@]}" --jobs 1 \
  --output "mutants.out/$protocol" -- --lib "$protocol"
code=$?
set -e
echo "mutants of $protocol: $(( $(date +%s) - start )) s"
for k in caught missed timeout unviable; do
  f="mutants.out/$protocol/mutants.out/$k.txt"
  printf '%-9s %s\n' "$k" "$( [ -f "$f" ] && wc -l <"$f" || echo 0)"
done
# cargo-mutants exits 2 when mutants survived: that is a result, not a failure here.
[ "$code" -eq 0 ] || [ "$code" -eq 2 ] || [ "$code" -eq 3 ]
