#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer, no sanitizer: this works on the
# stable toolchain) for SECONDS each, one after another, and prints how many inputs each
# one executed. Fails if any target crashes, hangs or runs out of memory; the input that
# did is saved under fuzz/artifacts/<target>/ and its path printed.
#
# Seeds come from fuzz/corpus/<target>/ (committed, never written to); what the fuzzer
# learns is kept in fuzz/work/corpus/<target>/ (ignored by git), so a later run starts
# from there. Installs cargo-fuzz if it is missing.
# Usage: ./scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 60 s, every target)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
triple="x86_64-unknown-linux-gnu"

# libFuzzer itself is C++, built by libfuzzer-sys.
if ! command -v c++ >/dev/null 2>&1; then
  echo "installing: g++"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz: building ${#targets[@]} targets"
cargo fuzz build -s none --target "$triple"

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "work/corpus/$target" "corpus/$target"
  log="work/$target.log"
  echo "fuzz: $target for ${secs}s"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: over 2 GiB is an OOM.
  # The new corpus directory comes first: libFuzzer adds what it finds to that one only.
  if cargo fuzz run -s none --target "$triple" "$target" \
      "work/corpus/$target" "corpus/$target" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
    grep -E "^(==[0-9]+== ERROR|SUMMARY|thread '|artifact_prefix|Test unit written)" "$log" \
      | head -20 || true
    echo "fuzz: $target failed; full log in fuzz/$log"
  fi
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  summary+=("$(printf '%-22s %12s executions  %s' "$target" "${execs:-?}" "$status")")
done

echo "fuzz: executions per target (${secs}s each)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
