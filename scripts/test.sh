#!/usr/bin/env bash
# Install everything the tests need (Debian's prometheus and prometheus-alertmanager for the
# end-to-end tests, promtool and amtool; the package with its test extras in .venv for Python
# 3.11 and in .venv-312 for Python 3.12; Helm's library in .venv-helm), then lint, type-check,
# build and run the real image (scripts/image-test.sh), and run the whole suite on both Pythons.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
  || packages+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
  || packages+=(prometheus-alertmanager)
# systemd-analyze checks deploy/systemd/ offline: systemd need not be PID 1 (containers, CI).
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Debian packages are needed: sudo apt-get install ${packages[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

# Python 3.12 (pyenv has it on these machines): Helm's Go library (helm-sdkpy) needs it, and
# the suite runs on it as well as on 3.11.
python312=""
for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python \
                 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python; do
  if command -v "$candidate" >/dev/null 2>&1 \
     && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
    python312=$candidate; break
  fi
done
if [ -z "$python312" ]; then
  echo "Python 3.12 is needed (helm-sdkpy, and the suite's second Python)" >&2
  exit 1
fi
[ -x .venv-helm/bin/python ] || "$python312" -m venv .venv-helm
.venv-helm/bin/python -m pip install -q --disable-pip-version-check helm-sdkpy

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
[ -x .venv-312/bin/python ] || "$python312" -m venv .venv-312
.venv-312/bin/python -m pip install -q --upgrade pip >/dev/null
.venv-312/bin/python -m pip install -q -e '.[test]'

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== image (buildah + podman)"; ./scripts/image-test.sh
echo "== systemd unit under a real systemd (podman)"; ./scripts/systemd-test.sh
echo "== pytest, Python $(.venv/bin/python -c 'import platform; print(platform.python_version())')"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
echo "== pytest, Python $(.venv-312/bin/python -c 'import platform; print(platform.python_version())')"
.venv-312/bin/python -m pytest -q -p no:cacheprovider "$@"
