#!/usr/bin/env bash
# Installs the independent MoQ Transport draft-18 implementations that the interop tests
# (tests/tests/interop.rs) run against, from crates.io, into .interop/ (ignored by git):
#
#   moq-relay-ietf, moq-pub, moq-sub, moq-clock-ietf   (the moq-transport 0.17 family)
#   moq-relay                                           (a separate code base; speaks moqt-18 among others)
#
# Each is built with `cargo install --locked` at a pinned version; one already installed at
# that version is kept, so a second run takes a second. The builds share one
# CARGO_TARGET_DIR (.interop/target) so the moq-transport family compiles its common
# dependencies once. Builds run under `nice -n 10`: they are test partners, not urgent work.
#
# Usage: ./scripts/interop-peers.sh            install what is missing
#        ./scripts/interop-peers.sh --check    exit 1 (naming what is missing) unless all are installed
# Env:   STAGECAST_INTEROP_ROOT   install root (default: <repo>/.interop)
#        INTEROP_JOBS             cargo -j (default: cargo's own)
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="${STAGECAST_INTEROP_ROOT:-$PWD/.interop}"
export CARGO_TARGET_DIR="$ROOT/target"

# crate version [extra cargo install args]
# moq-relay is built without its default `iroh`, `cluster-lan`, `websocket` and `uds`
# features (peer-to-peer and LAN discovery, WebSocket fallback, Unix sockets): the tests
# speak QUIC to it on loopback, and iroh alone would double its build time. It is pinned
# to 0.17.8: the lock file of 0.17.9 and 0.17.10 names webpki-roots 1.0.11, which the
# registry no longer serves, so `--locked` cannot resolve them.
PEERS=(
  "moq-relay-ietf 0.8.0"
  "moq-pub 0.10.0"
  "moq-sub 0.5.0"
  "moq-clock-ietf 0.6.25"
  "moq-relay 0.17.8 --no-default-features --features noq"
)

installed() { # crate version
  [ -x "$ROOT/bin/$1" ] || return 1
  cargo install --list --root "$ROOT" 2>/dev/null | grep -qx "$1 v$2:"
}

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

missing=()
for entry in "${PEERS[@]}"; do
  read -r crate version _ <<<"$entry"
  installed "$crate" "$version" || missing+=("$entry")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "interop peers: all installed in $ROOT/bin"
  exit 0
fi
if [ $check_only -eq 1 ]; then
  for entry in "${missing[@]}"; do read -r crate version _ <<<"$entry"; echo "missing: $crate $version"; done
  echo "install them with ./scripts/interop-peers.sh"
  exit 1
fi

mkdir -p "$ROOT"
jobs=()
[ -n "${INTEROP_JOBS:-}" ] && jobs=(-j "$INTEROP_JOBS")
total_start=$(date +%s)
for entry in "${missing[@]}"; do
  read -r crate version extra <<<"$entry"
  start=$(date +%s)
  echo "interop peers: installing $crate $version"
  # shellcheck disable=SC2086 # $extra is a list of arguments
  nice -n 10 cargo install --locked --quiet --force --root "$ROOT" "${jobs[@]}" \
    "$crate" --version "=$version" $extra
  echo "interop peers: $crate $version took $(( $(date +%s) - start )) s"
done
echo "interop peers: installed in $(( $(date +%s) - total_start )) s ($ROOT/bin)"
