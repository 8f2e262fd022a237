#!/usr/bin/env bash
# Runs Stagecast's whole test suite: unit tests and the end-to-end tests that start real
# servers, relays and CLIs on loopback with media made by ffmpeg.
#
# Installs what the tests need and is missing (Debian's ffmpeg), builds the binaries the
# end-to-end tests start, then runs every test. Usage: ./scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo build --workspace --bins
# The end-to-end tests each start several processes and ffmpeg; two at a time keeps them
# well inside a 2-core machine.
cargo test --workspace "$@" -- --test-threads=2
