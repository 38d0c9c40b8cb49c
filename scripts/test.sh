#!/usr/bin/env bash
# Install everything the tests need (Debian's prometheus for promtool and the end-to-end tests,
# the package with its test extras in .venv), then lint, type-check and run the whole suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Debian's prometheus package is needed: sudo apt-get install prometheus" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Helm's Go library (helm-sdkpy) needs Python >= 3.12: a venv of its own for the chart tests.
if [ ! -x .venv-helm/bin/python ]; then
  helm_python=""
  for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[23]*/bin/python \
                   "$(pyenv root 2>/dev/null)"/versions/3.1[23]*/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      helm_python=$candidate; break
    fi
  done
  if [ -z "$helm_python" ]; then
    echo "Python >= 3.12 is needed for helm-sdkpy (the Helm chart tests)" >&2
    exit 1
  fi
  "$helm_python" -m venv .venv-helm
fi
.venv-helm/bin/python -m pip install -q --disable-pip-version-check helm-sdkpy

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
