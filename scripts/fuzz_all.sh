#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 180), seeded as fuzz/README.md says; not part
# of CI. Uses `cargo +nightly fuzz` when cargo-fuzz is installed, else builds the targets with
# cargo-fuzz's instrumentation flags and runs the libFuzzer binaries directly (fuzz/README.md).
# Prints one line per target; exits non-zero if any target found a crash (see fuzz/artifacts/).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-180}"
declare -A ARGS=(
  [pickle]="fuzz/seeds/pickle"
  [safetensors_header]="fuzz/seeds/safetensors_header"
  [checkpoint]="tests/fixtures/torch -max_len=16384"
  [jpeg]="tests/fixtures/images/jpeg -max_len=4096 -rss_limit_mb=2048"
  [tokenizer]="-max_len=4096"
  [audio]="fuzz/seeds/audio -max_len=8192 -rss_limit_mb=2048"
)
TARGETS=(pickle safetensors_header checkpoint jpeg tokenizer audio)
fail=0
split() { dirs="" flags=""; for a in ${ARGS[$1]}; do case "$a" in -*) flags="$flags $a" ;; *) dirs="$dirs $a" ;; esac; done; }
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  run() { split "$1"; cargo +nightly fuzz run -s none "$1" "fuzz/corpus/$1" $dirs -- -max_total_time="$SECONDS_EACH" $flags; }
else
  export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
  (cd fuzz && cargo +nightly build --release --target x86_64-unknown-linux-gnu --bins) || exit 1
  run() {
    split "$1"
    mkdir -p "fuzz/corpus/$1" "fuzz/artifacts/$1"
    "fuzz/target/x86_64-unknown-linux-gnu/release/$1" -artifact_prefix="fuzz/artifacts/$1/" -max_total_time="$SECONDS_EACH" $flags "fuzz/corpus/$1" $dirs
  }
fi
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  if run "$t" > "/tmp/fuzz-$t.log" 2>&1; then
    echo "$t: ok ($(grep -o 'Done [0-9]* runs' "/tmp/fuzz-$t.log" | tail -1))"
  else
    echo "$t: FOUND A CRASH (log /tmp/fuzz-$t.log, inputs in fuzz/artifacts/$t/)"; fail=1
  fi
done
exit $fail
