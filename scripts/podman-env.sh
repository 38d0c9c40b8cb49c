# Sourced by scripts/image-test.sh and scripts/systemd-test.sh (after `work` is set): podman as
# these machines need it.

# podman has no systemd to time health checks here and says so on every run: quiet that line.
podman() { command podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }

# Low ulimits and runc: the defaults are refused on these machines (see shared notes).
export CONTAINERS_CONF=$work/containers.conf
cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=8192:8192", "nproc=8192:8192"]

[engine]
runtime = "runc"
CONF
