#!/bin/sh
# Build stage of helm/docker/Dockerfile: rebuild every compiled model for the image's platform.
# A model's shared library is machine code for the machine that compiled it; the image rebuilds
# each compiled_models/<name>/<version>/ from its portable model file so what ships matches the
# image's CPU architecture and libc. No models: nothing to do.
#   $1  models root (default compiled_models)
#   ALLOW_PREBUILT_MODELS=1  ship libraries as they are when this authpilot cannot rebuild
set -eu
root="${1:-compiled_models}"
found=0
for manifest in "$root"/*/*/manifest.json; do
  [ -f "$manifest" ] || continue
  found=$((found + 1))
  dir="$(dirname "$manifest")"
  if authpilot compile --help 2>/dev/null | grep -q -- '--rebuild'; then
    echo "[compile-models] rebuilding $dir for $(uname -m)"
    authpilot compile --rebuild "$dir"
  elif [ "${ALLOW_PREBUILT_MODELS:-0}" = 1 ]; then
    echo "[compile-models] WARNING: shipping $dir as built elsewhere (authpilot compile has no --rebuild)"
  else
    echo "[compile-models] $dir: this authpilot's compile command cannot rebuild a model in place" >&2
    echo "  (no --rebuild); build with --build-arg ALLOW_PREBUILT_MODELS=1 to ship it as it is" >&2
    exit 1
  fi
done
echo "[compile-models] $found model(s) in $root"
