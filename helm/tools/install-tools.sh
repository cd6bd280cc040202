#!/usr/bin/env bash
# Installs the chart test tools on a fresh machine (idempotent, fast when present):
#   helm     built from its Go module with the Go toolchain (no prebuilt binary downloads)
#   promtool from Debian's prometheus package
# Kubernetes schemas for offline validation come from the kubernetes-validate Python package
# (a dev dependency in pyproject.toml).
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
tools="${AUTHPILOT_TOOLS:-$HOME/.cache/authpilot/tools}"
mkdir -p "$tools/bin"
if [ ! -x "$tools/bin/helm" ] || ! "$tools/bin/helm" version --short 2>/dev/null | grep -q "${HELM_VERSION}"; then
  echo "[tools] building helm ${HELM_VERSION} from helm.sh/helm/v3 (a few minutes, once)" >&2
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "[tools] installing promtool (Debian package prometheus)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
fi
echo "$tools/bin/helm"
