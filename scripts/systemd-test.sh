#!/usr/bin/env bash
# Run deploy/systemd/unpod-exporter.service under a real systemd, sandbox and all: a Debian
# container (podman --systemd=always) with systemd as PID 1, the exporter installed as
# docs/deployment.md says, the test suite's fake Unpod API as a second service. Checks that the
# service starts as its dynamic user, reads the token from its credential, resolves and polls
# the API (unpod_up 1), re-reads the config on `systemctl reload` (a new org polled), and stops
# cleanly; and that the token is never in the journal. tests/test_systemd.py checks the unit
# file offline; this checks that the sandbox lets the exporter work.
#
# Needs root (or rootless podman), buildah and podman, the python:3.11-slim-bookworm base
# image (scripts/image-test.sh pulls or bootstraps it) and a Debian mirror for systemd.
# Without them it says so and exits 0, loudly: the unit was NOT run.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/unpod-exporter-systemd:test
BASE=docker.io/library/python:3.11-slim-bookworm
TOKEN=tok-secret-123
PY=${PYTHON:-.venv/bin/python}  # with pip and PyYAML: scripts/test.sh makes it
work=$(mktemp -d)
name=unpod-systemd-test-$$

say() { echo "systemd-test: $*"; }
skip() {
  echo "systemd-test: SKIPPED: $* (the unit was NOT run under systemd)" >&2
  exit 0
}
fail() { echo "systemd-test: FAILED: $*" >&2; exit 1; }
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in buildah podman; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool missing (scripts/image-test.sh installs it)"
done
if [ "$(id -u)" -ne 0 ] && ! podman info >/dev/null 2>&1; then
  skip "not root and rootless podman does not work here"
fi
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
podman image exists "$BASE" || timeout 60 podman pull -q "$BASE" >/dev/null 2>&1 \
  || skip "$BASE is not available (scripts/image-test.sh bootstraps it)"

# The build context: the package as a wheel, the lock, the unit as shipped, the fake API.
ctx=$work/ctx
mkdir -p "$ctx/fake/tests" "$ctx/fake/bench"
"$PY" -m pip wheel -q --no-deps --disable-pip-version-check . -w "$ctx" >/dev/null
cp requirements.lock deploy/systemd/unpod-exporter.service deploy/systemd/unpod-exporter.env \
  "$ctx/"
cp tests/__init__.py tests/fakeapi.py tests/fakebacklog.py "$ctx/fake/tests/"
cp bench/fake_server.py "$ctx/fake/bench/"
# deploy/systemd/config.yaml with the fake API and its first org; "localhost" so that the
# sandbox's resolver (getaddrinfo) is used
"$PY" - "$ctx/config.yaml" <<'EOF'
import sys
import yaml
config = yaml.safe_load(open("deploy/systemd/config.yaml"))
config["api"]["base_url"] = "http://localhost:8000/api/v2/platform"
config["orgs"] = [{"handle": "org0"}]
yaml.safe_dump(config, open(sys.argv[1], "w"))
EOF
cat >"$ctx/unpod-fake.service" <<'EOF'
[Unit]
Description=The test suite's fake Unpod API
Before=unpod-exporter.service
[Service]
ExecStart=/opt/unpod-exporter/bin/python /opt/fake/bench/fake_server.py --port 8000 --orgs 2
[Install]
WantedBy=multi-user.target
EOF
cat >"$ctx/Containerfile" <<EOF
FROM $BASE
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
      --no-install-recommends systemd systemd-sysv >/dev/null && rm -rf /var/lib/apt/lists/*
COPY requirements.lock *.whl /tmp/pkg/
RUN python -m venv /opt/unpod-exporter \\
 && /opt/unpod-exporter/bin/pip install -q --require-hashes -r /tmp/pkg/requirements.lock \\
 && /opt/unpod-exporter/bin/pip install -q --no-deps /tmp/pkg/*.whl && rm -rf /tmp/pkg
COPY fake /opt/fake
COPY unpod-exporter.service unpod-fake.service /etc/systemd/system/
COPY unpod-exporter.env /etc/default/unpod-exporter
COPY config.yaml /etc/unpod-exporter/config.yaml
RUN install -m 0600 /dev/null /etc/unpod-exporter/api-token \\
 && printf '%s\n' '$TOKEN' > /etc/unpod-exporter/api-token \\
 && systemctl enable unpod-fake unpod-exporter
CMD ["/lib/systemd/systemd"]
EOF
say "building $IMAGE (Debian's systemd, the exporter inside /opt/unpod-exporter)"
started=$(date +%s)
buildah bud --quiet --isolation chroot --format docker --pull=never -t "$IMAGE" "$ctx" \
  >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; skip "the image did not build"; }
say "built in $(( $(date +%s) - started )) s"

podman run -d --name "$name" --systemd=always "$IMAGE" >/dev/null
inside() { podman exec "$name" "$@"; }
metric() {  # the value of one unpod_up series, or nothing
  inside /opt/unpod-exporter/bin/python -c '
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9877/metrics", timeout=5).read().decode()
print(*[l.split()[-1] for l in text.splitlines() if l.startswith(sys.argv[1] + " ")])
' "$1" 2>/dev/null || true
}
wait_for() {  # wait_for WHAT COMMAND...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  inside journalctl -u unpod-exporter --no-pager | tail -20 >&2 || true
  fail "$what"
}
up() { [ "$(metric "unpod_up{org=\"$1\"}")" = 1.0 ]; }

active() { inside systemctl is-active --quiet unpod-exporter 2>/dev/null; }
wait_for "unpod-exporter.service did not become active" active
wait_for "org0 was not polled with the credential's token (unpod_up 1)" up org0
say "active, and polling the API with the token from LoadCredential (unpod_up 1)"

pid=$(inside systemctl show -p MainPID --value unpod-exporter)
uid=$(inside stat -c %u "/proc/$pid")
# systemd's dynamic users are allocated from 61184-65519 (no nss-systemd here to name them)
[ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || fail "runs as UID $uid, not a dynamic user"
say "runs as a dynamic user (UID $uid)"

inside sed -i 's/- handle: org0/- handle: org0\n- handle: org1/' /etc/unpod-exporter/config.yaml
inside systemctl reload unpod-exporter || fail "systemctl reload failed (ExecReload)"
wait_for "org1 was not polled after systemctl reload" up org1
[ "$(inside systemctl show -p MainPID --value unpod-exporter)" = "$pid" ] \
  || fail "the reload restarted the process"
say "systemctl reload: the new org is polled, same process"

exposure=$(inside systemd-analyze security unpod-exporter --no-pager | tail -1)
say "${exposure#→ }"
inside systemctl stop unpod-exporter
[ "$(inside systemctl show -p Result --value unpod-exporter)" = success ] \
  || fail "did not stop cleanly"
say "systemctl stop: exited cleanly"
if inside journalctl --no-pager | grep -q "$TOKEN"; then fail "the token is in the journal"; fi
say "the token is not in the journal"
