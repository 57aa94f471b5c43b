#!/usr/bin/env bash
# deploy/ renders and validates offline: kustomize overlays against the
# Kubernetes schemas and KEDA's CRDs, the operational rules, the Dockerfile
# against the README and the built binaries, detect-secrets against the
# audited baseline. No servers needed.
set -euo pipefail
BUILD=${1:?build dir}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# A sanitizer build links libasan/libubsan, which the runtime image rightly
# does not carry: check the libraries only on a normal build.
if grep -q '^LT_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  exec "$ROOT/deploy/validate"
fi
# A valgrind build (cmake/Valgrind.cmake) has scripts at the programs' usual
# paths and the binaries under valgrind-real/.
if grep -q '^LT_VALGRIND:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  exec "$ROOT/deploy/validate" "$BUILD/valgrind-real"
fi
exec "$ROOT/deploy/validate" "$BUILD"
