#!/usr/bin/env bash
# VNN-COMP harness entry: run_instance.sh v1 <benchmark> <onnx> <vnnlib> <result_file> <timeout>
# Writes sat (with counterexample), unsat, timeout, unknown or error as the first line of <result_file>.
set -uo pipefail
if [ "$#" -ne 6 ] || [ "$1" != "v1" ]; then
  echo "usage: $0 v1 <benchmark> <onnx> <vnnlib> <result_file> <timeout>" >&2
  exit 1
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
glsverify="${GLSVERIFY:-$here/.venv/bin/glsverify}"
[ -x "$glsverify" ] || glsverify=glsverify
"$glsverify" certify "$3" --vnnlib "$4" --timeout "$6" --result-file "$5"
status=$?
[ -s "$5" ] || echo "error" > "$5"
exit $status
