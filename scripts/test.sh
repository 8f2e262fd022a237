#!/usr/bin/env bash
# Runs Stagecast's whole test suite: unit tests, the end-to-end tests that start real
# servers, relays and CLIs on loopback with media made by ffmpeg, the interop tests against
# independent MoQ implementations, the viewer's JavaScript unit tests, and the viewer's
# tests in a real headless Chromium.
#
# Installs what the tests need and is missing (Debian's ffmpeg, chromium, nodejs/npm; the
# browser tests' npm packages; the interop peers, built from crates.io into .interop/),
# builds the binaries the end-to-end tests start, then runs every test. A missing browser
# or peer is installed or the run fails: nothing is skipped.
# Usage: ./scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The network tests (tests/tests/network.rs) shape links with ip netns and tc tbf.
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -d tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

# The interop tests' peers (tests/tests/interop.rs): built once, several minutes on a
# clean machine, then kept in .interop/.
./scripts/interop-peers.sh

cargo build --workspace --bins
# The end-to-end tests each start several processes and ffmpeg; two at a time keeps them
# well inside a 2-core machine.
cargo test --workspace "$@" -- --test-threads=2

# Every fuzz target for 10 s (fuzz/; the long runs are done outside CI).
./scripts/fuzz.sh 10

echo "viewer: JavaScript unit tests"
node --test viewer/test/*.test.mjs
echo "viewer: browser tests (headless Chromium)"
(cd tests/browser && npm test)
