#!/usr/bin/env bash
# wgedge in the browser (examples/browser): the demo page and the browser tests.
#
#   bash tools/web.sh serve [PORT]  build the demo (release) and serve it on http://127.0.0.1:PORT
#                                   (default 8080); open it in a browser with WebGPU
#   bash tools/web.sh build [--dev] build the page into target/web-demo/ (--dev: the test profile,
#                                   reusing the browser tests' build)
#   bash tools/web.sh test          the browser tests: wasm-bindgen-test in headless Chromium with
#                                   WebGPU (kernels, conformance subset, the demo model in f32/int8/
#                                   int4 against the CPU reference), then the demo page itself
#                                   driven by playwright-core (draw a digit, switch backends)
#   bash tools/web.sh tools         only install what the above need, when missing
#
# Needs: rustup's wasm32-unknown-unknown target; wasm-bindgen-cli at exactly the version the
# crate pins (installed here when missing, into $WGEDGE_TOOLS_DIR, default
# ~/.cache/wgedge-tools, with a cheap release profile: it is a build tool, not a hot path);
# `test` also needs Debian's chromium and chromium-driver (installed with apt when missing) and
# node/npm (playwright-core goes into target/web-node; it drives /usr/bin/chromium, it never
# downloads a browser). Under CI=true a missing browser or WebGPU fails the tests. Exit status 3:
# the browser or npm is missing and could not be installed (tools/test.sh skips on that outside CI).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CRATE=examples/browser
OUT=target/web-demo
PLAYWRIGHT_VERSION=1.65.1

log() { echo "== $*"; }

bindgen_version() {
  sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' "$CRATE/Cargo.toml"
}

# Puts wasm-bindgen and wasm-bindgen-test-runner of the pinned version on PATH, installing them
# once when missing.
need_bindgen() {
  local v dir
  v=$(bindgen_version)
  [ -n "$v" ] || { echo "ERROR: no exact wasm-bindgen pin in $CRATE/Cargo.toml" >&2; exit 1; }
  if command -v wasm-bindgen >/dev/null 2>&1 &&
    [ "$(wasm-bindgen --version | awk '{print $2}')" = "$v" ] &&
    command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
    return
  fi
  dir="${WGEDGE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wgedge-tools}/wasm-bindgen-cli-$v"
  if [ ! -x "$dir/bin/wasm-bindgen" ] || [ ! -x "$dir/bin/wasm-bindgen-test-runner" ]; then
    log "installing wasm-bindgen-cli $v into $dir (once)"
    local t0=$SECONDS
    # Optimisation barely matters for the CLI (it rewrites one small wasm file per build) and
    # costs most of the install time on small machines; without default features it has no TLS
    # stack (rustls, ring: it only talks to chromedriver on 127.0.0.1). Measured cold on 2 cores:
    # 3.6 min, against about 5 with TLS.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
      CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
      cargo install --quiet wasm-bindgen-cli --version "$v" --root "$dir" \
      --no-default-features --bin wasm-bindgen --bin wasm-bindgen-test-runner
    log "wasm-bindgen-cli installed in $((SECONDS - t0)) s"
  fi
  export PATH="$dir/bin:$PATH"
}

need_target() {
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' || {
    echo "ERROR: the wasm32-unknown-unknown target is not installed" >&2
    exit 1
  }
}

need_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return; fi
  log "installing chromium and chromium-driver (apt)"
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null || true
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "ERROR: chromium/chromium-driver are missing and could not be installed" >&2
    exit 3
  fi
}

need_playwright() {
  if [ -d target/web-node/node_modules/playwright-core ] &&
    grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" target/web-node/node_modules/playwright-core/package.json; then
    return
  fi
  command -v npm >/dev/null 2>&1 || { echo "ERROR: npm is missing (needed for playwright-core)" >&2; exit 3; }
  log "installing playwright-core $PLAYWRIGHT_VERSION (npm, no browser download)"
  mkdir -p target/web-node
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund \
    --prefix target/web-node "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
}

build() {
  local profile=release flag=--release dir=release
  if [ "${1:-}" = "--dev" ]; then profile=dev flag= dir=debug; fi
  need_target
  need_bindgen
  log "building the demo ($profile)"
  (cd "$CRATE" && cargo build --lib --target wasm32-unknown-unknown $flag)
  rm -rf "$OUT"
  mkdir -p "$OUT/pkg" "$OUT/models"
  wasm-bindgen --target web --no-typescript --out-dir "$OUT/pkg" \
    "target/wasm32-unknown-unknown/$dir/wgedge_browser.wasm"
  cp "$CRATE"/www/* "$OUT/"
  cp models/mnist-cnn.safetensors models/mnist-test.safetensors "$OUT/models/"
  # The imported-model section reads the PP-OCRv4 recogniser's ONNX file (tools/models.sh
  # fetches it; the page says so when it is absent).
  local rec="${WGEDGE_MODELS_DIR:-$HOME/.cache/wgedge-models}/ppocrv4_rec.onnx"
  if [ -s "$rec" ]; then
    cp "$rec" "$OUT/models/"
  else
    echo "NOTE: $rec is missing (bash tools/models.sh fetches it): the page's text-recognition section will say so"
  fi
  log "demo in $OUT ($(du -k "$OUT/pkg/wgedge_browser_bg.wasm" | cut -f1) KiB of wasm)"
}

serve() {
  local port=${1:-8080}
  build
  log "serving http://127.0.0.1:$port/ (Ctrl-C stops)"
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$OUT"
}

run_tests() {
  need_target
  need_bindgen
  need_chromium
  export CHROMEDRIVER=/usr/bin/chromedriver
  # Building SwiftShader pipelines takes seconds; the runner's default is 20 s for the whole run.
  export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-300}
  log "browser tests (wasm-bindgen-test in headless Chromium)"
  (cd "$CRATE" && cargo test --target wasm32-unknown-unknown)
  log "demo page in headless Chromium (playwright-core)"
  need_playwright
  build --dev
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$OUT" >/dev/null 2>&1 &
  local server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  PLAYWRIGHT_DIR="$ROOT/target/web-node" DEMO_URL="http://127.0.0.1:$port/" \
    SCREENSHOT="$ROOT/target/web-demo.png" node "$CRATE/page-test.mjs"
  kill $server 2>/dev/null || true
  trap - EXIT
}

case "${1:-serve}" in
  serve) shift || true; serve "$@" ;;
  build) shift; build "$@" ;;
  test) run_tests ;;
  tools) need_target; need_bindgen; need_chromium; need_playwright ;;
  *) echo "usage: bash tools/web.sh [serve [PORT] | build [--dev] | test | tools]" >&2; exit 2 ;;
esac
