#!/usr/bin/env bash
# Installs what the chart tests need, on a fresh Debian machine that reaches only package
# registries. Idempotent, and fast (well under a second) when everything is in place.
#
#   helm        built from its Go module (helm.sh/helm/v3) with the Go toolchain, with the
#               release ldflags (version, Kubernetes version for lint and .Capabilities)
#   kubeconform built from its Go module (github.com/yannh/kubeconform)
#   schemas     Kubernetes JSON schemas from the PyPI package kubernetes-validate, rewritten
#               into a directory kubeconform reads offline (refs point at a local file)
#   promtool    from Debian's prometheus package
#   dockerfile-check  helm/tools/dockerfile-check (BuildKit's Dockerfile parser + build checks)
#
# Prints KEY=VALUE lines on stdout (HELM, KUBECONFORM, DOCKERFILE_CHECK, PROMTOOL, K8S_SCHEMAS,
# CRD_SCHEMAS, K8S_VERSION); progress and tool output go to stderr. Exits non-zero when any
# tool cannot be installed.
# Environment: AUTHPILOT_TOOLS (cache dir, default ~/.cache/authpilot/tools), PYTHON (a Python
# with pip, default python3), and the *_VERSION variables below.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
K8S_VALIDATE_VERSION="${K8S_VALIDATE_VERSION:-1.37.0}"  # PyPI kubernetes-validate
K8S_VERSION="${K8S_VERSION:-1.33.0}"                   # schemas to validate against
PYTHON="${PYTHON:-python3}"
tools="${AUTHPILOT_TOOLS:-$HOME/.cache/authpilot/tools}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$tools/bin"
cd "$tools"  # no go.mod around: go commands act on modules by path@version
# One installer at a time (two test sessions may start together); the second finds it all done.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$tools/.install.lock"
  flock 9
fi
log() { echo "[install-tools] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# --- Go toolchain ------------------------------------------------------------------------------
need_go() {
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "no Go toolchain: installing Debian's golang-go"
    apt_install golang-go ca-certificates
  fi
  # A Go >= 1.21 fetches a newer toolchain a module asks for from the Go module proxy.
  export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
  local minor
  minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  if [ "${minor:-0}" -lt 21 ]; then
    log "Go $(go env GOVERSION) is too old to build helm (needs go1.21+ to fetch a toolchain)"
    exit 1
  fi
}

# --- helm --------------------------------------------------------------------------------------
helm_bin="$tools/bin/helm"
if ! [ -x "$helm_bin" ] || ! [ -f "$tools/bin/.helm-$HELM_VERSION" ]; then
  need_go
  log "building helm $HELM_VERSION from helm.sh/helm/v3 (a few minutes, once)"
  # The release Makefile tells helm which Kubernetes it targets (lint deprecation checks and
  # .Capabilities.KubeVersion): client-go v0.N -> Kubernetes 1.N. Without it helm says 1.20.
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
  k8s_minor="$(sed -nE 's#^[[:space:]]*k8s.io/client-go v0\.([0-9]+)\..*#\1#p' "$gomod" | head -1)"
  [ -n "$k8s_minor" ] || { log "cannot read client-go's version from $gomod"; exit 1; }
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
  done
  GOBIN="$tools/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  rm -f "$tools/bin"/.helm-*
  touch "$tools/bin/.helm-$HELM_VERSION"
fi

# --- kubeconform -------------------------------------------------------------------------------
kc_bin="$tools/bin/kubeconform"
if ! [ -x "$kc_bin" ] || ! [ -f "$tools/bin/.kubeconform-$KUBECONFORM_VERSION" ]; then
  need_go
  log "building kubeconform $KUBECONFORM_VERSION from github.com/yannh/kubeconform"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
  rm -f "$tools/bin"/.kubeconform-*
  touch "$tools/bin/.kubeconform-$KUBECONFORM_VERSION"
fi

# --- dockerfile-check (BuildKit's Dockerfile parser and build checks; source in this repo) ------
dfc_bin="$tools/bin/dockerfile-check"
dfc_sum="$(cat "$here/dockerfile-check/go.mod" "$here/dockerfile-check/go.sum" "$here/dockerfile-check/main.go" | sha256sum | cut -c1-16)"
if ! [ -x "$dfc_bin" ] || ! [ -f "$tools/bin/.dockerfile-check-$dfc_sum" ]; then
  need_go
  log "building dockerfile-check (github.com/moby/buildkit frontend)"
  (cd "$here/dockerfile-check" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath -o "$dfc_bin" .) >&2
  rm -f "$tools/bin"/.dockerfile-check-*
  touch "$tools/bin/.dockerfile-check-$dfc_sum"
fi

# --- Kubernetes JSON schemas (offline) ---------------------------------------------------------
# kubernetes-validate ships v<k8s>-local[-strict]/<kind>-<group>-<version>.json, the file names
# kubeconform looks for. Their "$ref": "/api/_definitions.json#..." resolves against an https
# "$id"; rewrite it to the absolute file so kubeconform never goes to the network.
schemas="$tools/k8s-schemas/kubernetes-validate-$K8S_VALIDATE_VERSION"
out="$schemas/v$K8S_VERSION-standalone-strict"
if ! [ -f "$out/.complete" ]; then
  pkg="$tools/pypi/kubernetes-validate-$K8S_VALIDATE_VERSION"
  if ! [ -d "$pkg/kubernetes_validate/kubernetes-json-schema" ]; then
    log "fetching kubernetes-validate==$K8S_VALIDATE_VERSION from PyPI (schemas only)"
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
      apt_install python3-pip
      PYTHON=python3
    fi
    rm -rf "$pkg.tmp"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
      --target "$pkg.tmp" "kubernetes-validate==$K8S_VALIDATE_VERSION" >&2
    rm -rf "$pkg" && mv "$pkg.tmp" "$pkg"
  fi
  src="$pkg/kubernetes_validate/kubernetes-json-schema/v$K8S_VERSION-local-strict"
  [ -d "$src" ] || { log "kubernetes-validate $K8S_VALIDATE_VERSION has no schemas for $K8S_VERSION"; exit 1; }
  rm -rf "$out" && mkdir -p "$out"
  cp "$src"/*.json "$out"/
  find "$out" -name '*.json' -exec sed -i "s#\"/api/_definitions.json\\##\"file://$out/_definitions.json\\##g" {} +
  touch "$out/.complete"
fi

# --- promtool ----------------------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus)"
  apt_install prometheus
  # the package starts a Prometheus server where an init system runs; tests need only promtool
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

echo "HELM=$helm_bin"
echo "KUBECONFORM=$kc_bin"
echo "DOCKERFILE_CHECK=$dfc_bin"
echo "PROMTOOL=$(command -v promtool)"
echo "K8S_SCHEMAS=$schemas"
echo "CRD_SCHEMAS=$here/crd-schemas"
echo "K8S_VERSION=$K8S_VERSION"
