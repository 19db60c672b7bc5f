#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs every check.
#   - lavapipe (Mesa's Vulkan on the CPU) so the GPU tests have a real Vulkan device;
#     with CI=true the GPU tests fail rather than skip when no adapter opens (without it they
#     print `SKIPPED n GPU checks` and only compare the CPU reference with itself). When this
#     script installs lavapipe itself it sets CI=true for its test run, so a machine that had no
#     Vulkan driver before still runs the GPU tests strictly;
#   - formatting, clippy with warnings as errors, the wasm32 library build, all tests;
#   - the browser tests (tools/web.sh test): the library compiled to wasm32 in headless Chromium
#     with WebGPU (SwiftShader without a GPU), and the demo page driven by playwright-core. It
#     installs chromium/chromium-driver (apt), wasm-bindgen-cli at the pinned version and
#     playwright-core (npm) when missing. Under CI=true a missing browser or WebGPU fails; elsewhere
#     a machine that cannot get Chromium skips them with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

strict_gpu=""
have_lavapipe() { ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; }
if ! have_lavapipe; then
  echo "== installing mesa-vulkan-drivers (lavapipe)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  if ! have_lavapipe; then
    echo "ERROR: mesa-vulkan-drivers was installed but no lavapipe ICD (lvp_icd*.json) appeared" >&2
    exit 1
  fi
  # We put the driver here, so the GPU tests must use it: a missing adapter fails them.
  strict_gpu=1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== wasm32 library build"
if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  RUSTFLAGS="-D warnings" cargo build --lib --target wasm32-unknown-unknown --no-default-features
else
  echo "WARNING: the wasm32-unknown-unknown target could not be installed here: the wasm build was NOT checked"
fi
echo "== tests"
bash tools/models_minilm.sh || echo "WARNING: the int8 MiniLM model could not be fetched: tests/onnx_minilm.rs skips it (fails under CI=true)"
if [ -n "$strict_gpu" ]; then
  echo "(lavapipe was installed by this script: running the tests with CI=true)"
  export CI=true
fi
export WGEDGE_MODELS_DIR="${WGEDGE_MODELS_DIR:-$HOME/.cache/wgedge-models}"; bash tools/models.sh >/dev/null || echo "WARNING: tools/models.sh could not fetch the ONNX model files: tests/onnx_models.rs skips them (CI=true fails)"
# Tuned kernel choices go to a throwaway cache so a run never depends on an earlier one.
WGEDGE_CACHE_DIR="${WGEDGE_CACHE_DIR:-$(mktemp -d)}" cargo test --all-targets
cargo test --doc
echo "== browser tests"
set +e
bash tools/web.sh test
rc=$?
set -e
if [ "$rc" -eq 3 ] && [ "${CI:-}" != "true" ]; then
  echo "WARNING: no Chromium or npm here: the browser tests were NOT run (CI=true makes this a failure)"
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
