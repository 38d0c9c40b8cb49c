#!/usr/bin/env bash
# Install everything the tests need (Debian's prometheus and prometheus-alertmanager for the
# end-to-end tests, promtool and amtool; the package with its test extras in .venv for Python
# 3.11, .venv-312 for Python 3.12 and .venv-313 for Python 3.13; Helm's library in .venv-helm),
# then lint, type-check, build and run the real image (scripts/image-test.sh), and run the
# whole suite on every supported Python. Extra arguments go to pytest.
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

# Pythons 3.12 and 3.13 (pyenv has them on these machines): the suite runs on every supported
# version, and Helm's Go library (helm-sdkpy) needs 3.12.
find_python() {  # find_python 3.13: the path of a python of that version, or nothing
  local version=$1 candidate
  for candidate in "python$version" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version"*/bin/python \
                   "$(pyenv root 2>/dev/null)"/versions/"$version"*/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
        "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))" \
        2>/dev/null; then
      echo "$candidate"; return
    fi
  done
}
python312=$(find_python 3.12)
python313=$(find_python 3.13)
for pair in "3.12:$python312" "3.13:$python313"; do
  if [ -z "${pair#*:}" ]; then
    echo "Python ${pair%%:*} is needed (the suite runs on 3.11, 3.12 and 3.13)" >&2
    exit 1
  fi
done
[ -x .venv-helm/bin/python ] || "$python312" -m venv .venv-helm
.venv-helm/bin/python -m pip install -q --disable-pip-version-check helm-sdkpy

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
for version in 312 313; do
  python=python$version
  [ -x ".venv-$version/bin/python" ] || "${!python}" -m venv ".venv-$version"
  ".venv-$version/bin/python" -m pip install -q --upgrade pip >/dev/null
  ".venv-$version/bin/python" -m pip install -q -e '.[test]'
done

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== image (buildah + podman)"; ./scripts/image-test.sh
echo "== systemd unit under a real systemd (podman)"; ./scripts/systemd-test.sh
for venv in .venv .venv-312 .venv-313; do
  echo "== pytest, Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
done
