#!/usr/bin/env bash
# Build the Dockerfile for real (buildah) and run the image (podman), no Docker engine needed,
# then check what a user relies on: --version, --demo serving /metrics, UID 10001, a read-only
# root, the image's own HEALTHCHECK on the default port, on another --web.listen-address and
# with TLS on, no compilers in the image, and its size.
#
# When the base image cannot be pulled (no registry, air-gapped), an equivalent is bootstrapped
# from Debian packages with mmdebstrap, trusting this host's CA bundle (so pip in the build
# works behind a TLS-inspecting proxy too). No system file is edited: podman reads its
# settings from CONTAINERS_CONF, a file of this script's own.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/unpod-exporter:test
BASE=docker.io/library/python:3.11-slim-bookworm
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
work=$(mktemp -d)
containers=()

say() { echo "image-test: $*"; }
skip() {
  echo "image-test: SKIPPED: $* (the image was NOT built or checked)" >&2
  exit 0
}
cleanup() {
  for name in "${containers[@]}"; do podman rm -f "$name" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------------------------
missing=()
for tool in buildah podman runc mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || skip "${missing[*]} missing, and not root to install them"
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    buildah podman runc mmdebstrap >/dev/null
fi
if [ "$(id -u)" -ne 0 ] && ! podman info >/dev/null 2>&1; then
  skip "not root and rootless podman does not work here"
fi

# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh

# --- base image ------------------------------------------------------------------------------
if ! podman image exists "$BASE"; then
  if ! timeout 60 podman pull -q "$BASE" >/dev/null 2>&1; then
    say "$BASE cannot be pulled: bootstrapping it from Debian packages (mmdebstrap)"
    # The host's CA bundle replaces the image's, and pip is told to use it.
    mmdebstrap --quiet --variant=minbase \
      --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
      --customize-hook="upload $HOST_CA /etc/ssl/certs/ca-certificates.crt" \
      --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
      bookworm "$work/base.tar"
    podman import --quiet \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$work/base.tar" "$BASE" >/dev/null
    rm -f "$work/base.tar"
  fi
fi

# --- build -----------------------------------------------------------------------------------
say "building $IMAGE with buildah"
started=$(date +%s)
buildah bud --quiet --isolation chroot --format docker --pull=never -t "$IMAGE" . >/dev/null
say "built in $(( $(date +%s) - started )) s"

# --- checks ----------------------------------------------------------------------------------
fail() { echo "image-test: FAILED: $*" >&2; exit 1; }

version=$(podman run --rm "$IMAGE" --version)
expected="unpod-exporter $(python3 -c 'import re,sys; print(re.search(r"__version__ = \"(.+)\"", open("exporter/__init__.py").read())[1])')"
[ "$version" = "$expected" ] || fail "--version said '$version', expected '$expected'"
say "--version: $version"

# Run a container (its own network namespace, root filesystem read-only) and wait for its
# HEALTHCHECK to pass; podman runs the image's own HEALTHCHECK command once per call.
start() {
  local name=$1; shift
  containers+=("$name")
  # no systemd timer here: the health check is run by hand below
  podman run -d --name "$name" --read-only --network none --health-interval disable "$@" \
    >/dev/null
}
healthcheck_passes() {
  local name=$1
  for _ in $(seq 1 60); do
    if podman healthcheck run "$name" >/dev/null 2>&1; then return 0; fi
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] \
      || { podman logs "$name" >&2; fail "$name exited"; }
    sleep 0.5
  done
  podman logs "$name" >&2
  return 1
}

start default "$IMAGE" --demo
healthcheck_passes default || fail "HEALTHCHECK failed with the default --web.listen-address"
say "HEALTHCHECK passes on the default port"
[ "$(podman exec default id -u)" = 10001 ] || fail "the image does not run as UID 10001"
say "runs as UID 10001 with a read-only root filesystem"
metrics=$(podman exec default python -c \
  'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9877/metrics").read().decode())')
grep -q '^unpod_org_calls{org="acme-telecom"}' <<<"$metrics" || fail "--demo serves no unpod_org_calls"
grep -q '^unpod_calls{org="acme-telecom",space="' <<<"$metrics" || fail "--demo serves no space unpod_calls"
grep -q '^unpod_up{' <<<"$metrics" || fail "--demo serves no unpod_up"
say "--demo serves /metrics ($(grep -c '^unpod_' <<<"$metrics") unpod_ series)"
podman exec default python -c \
  'from exporter.gzipmember import LIBZ_COMBINE; assert LIBZ_COMBINE' \
  || fail "the image cannot load zlib's crc32_combine64 (assemblies fall back to Python's)"
say "zlib's crc32_combine64 is loaded"

start other-port "$IMAGE" --demo --web.listen-address 127.0.0.1:19999
healthcheck_passes other-port || fail "HEALTHCHECK failed with --web.listen-address 127.0.0.1:19999"
say "HEALTHCHECK passes with --web.listen-address 127.0.0.1:19999"

mkdir -p "$work/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$work/tls/server.key" -out "$work/tls/server.crt" 2>/dev/null
printf 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n' \
  >"$work/tls/web.yml"
chmod -R a+rX "$work/tls"
start tls -v "$work/tls:/etc/unpod-exporter/tls:ro" "$IMAGE" --demo \
  --web.listen-address :9443 --web.config.file /etc/unpod-exporter/tls/web.yml
healthcheck_passes tls || fail "HEALTHCHECK failed with TLS on"
say "HEALTHCHECK passes with TLS on (:9443)"

tools=$(podman run --rm --entrypoint sh "$IMAGE" -c \
  'for t in gcc cc c++ g++ make ld as cmake; do command -v "$t"; done; true')
[ -z "$tools" ] || fail "build tools in the image: $tools"
say "no compilers or build tools in the image"

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "image size: $(( size / 1024 / 1024 )) MiB"
say "all checks passed"
