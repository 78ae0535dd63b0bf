#!/usr/bin/env bash
# VNN-COMP harness entry: prepare_instance.sh v1 <benchmark> <onnx> <vnnlib>
# Kills stale runs and checks that the network imports and the property parses (a clear error otherwise).
set -euo pipefail
if [ "$#" -ne 4 ] || [ "$1" != "v1" ]; then
  echo "usage: $0 v1 <benchmark> <onnx> <vnnlib>" >&2
  exit 1
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
glsverify="${GLSVERIFY:-$here/.venv/bin/glsverify}"
[ -x "$glsverify" ] || glsverify=glsverify
pkill -f "glsverify certify" 2>/dev/null || true
"$glsverify" info "$3" --json > /dev/null
"$glsverify" bounds "$3" --vnnlib "$4" --method ibp --json > /dev/null
