"""The Pythons the package claims are the ones CI runs the suite on: 3.11, 3.12 and 3.13."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.11", "3.12", "3.13")


def test_requires_python_and_classifiers_name_every_supported_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requires = SpecifierSet(project["requires-python"])
    assert all(version in requires for version in SUPPORTED)
    assert "3.10" not in requires  # enum.StrEnum and asyncio.timeout are 3.11
    classified = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert classified == set(SUPPORTED)


def test_ci_runs_the_suite_on_every_supported_version():
    script = (ROOT / "scripts/test.sh").read_text()
    assert "for venv in .venv .venv-312 .venv-313; do" in script
    assert 'find_python 3.12' in script and 'find_python 3.13' in script
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("exec ./scripts/test.sh")
