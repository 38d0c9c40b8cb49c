"""The systemd unit (``deploy/systemd/``): checked by systemd's own tools, and its commands run.

``systemd-analyze verify`` and ``security --offline`` read unit files without a running
manager, so they work on a machine (or a container) whose PID 1 is not systemd; a test here
shows each can fail. The unit's ExecStart and ExecReload are then run as systemd would run them
(environment file, credentials directory, ``$MAINPID``) against the fake API. The sandbox
itself needs a real systemd: ``scripts/systemd-test.sh`` runs the unit under one, in a container.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import TOKEN, free_port, parse_metrics, value, wait_for

DEPLOY = Path(__file__).parent.parent / "deploy" / "systemd"
UNIT = DEPLOY / "unpod-exporter.service"
ENV_FILE = DEPLOY / "unpod-exporter.env"
INSTALLED = "/opt/unpod-exporter/bin/unpod-exporter"  # where the unit expects the venv
ENTRY_POINT = Path(sys.executable).parent / "unpod-exporter"  # this checkout's, installed -e
MAX_EXPOSURE = 12  # systemd-analyze's tenths: "1.2 OK" at most


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemd-analyze")
    assert binary, "systemd-analyze is needed (Debian's systemd; scripts/test.sh installs it)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def unit_lines(text: str | None = None) -> list[tuple[str, str]]:
    """The unit's ``Key=value`` settings in order (keys repeat, as SystemCallFilter does)."""
    settings = []
    for line in (text or UNIT.read_text()).splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, setting = line.partition("=")
            settings.append((key, setting))
    return settings


def setting(key: str) -> str:
    values = [v for k, v in unit_lines() if k == key]
    assert len(values) == 1, (key, values)
    return values[0]


def local_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart on this checkout's entry point: verify checks it exists."""
    path = tmp_path / "unpod-exporter.service"
    path.write_text((text or UNIT.read_text()).replace(INSTALLED, str(ENTRY_POINT)))
    return path


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    assert ENTRY_POINT.exists()
    result = analyze("verify", "--man=false", str(local_unit(tmp_path)))
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result


def test_systemd_analyze_verify_finds_mistakes(tmp_path):
    """The check can fail: a misspelt value and a missing binary are reported."""
    typo = local_unit(tmp_path, UNIT.read_text().replace("ProtectSystem=strict",
                                                         "ProtectSystem=strickt"))
    result = analyze("verify", "--man=false", str(typo))
    assert "Failed to parse protect system value" in result.stderr, result
    missing = tmp_path / "missing" / "unpod-exporter.service"
    missing.parent.mkdir()
    missing.write_text(UNIT.read_text().replace(INSTALLED, str(tmp_path / "nope")))
    result = analyze("verify", "--man=false", str(missing))
    assert result.returncode != 0 and "is not executable" in result.stderr, result


def exposure(path: Path) -> tuple[int, dict[str, bool]]:
    result = analyze("security", "--offline=true", f"--threshold={MAX_EXPOSURE}",
                     "--json=short", str(path))
    checks = {entry["name"]: entry["set"] for entry in json.loads(result.stdout)}
    return result.returncode, checks


def test_the_sandbox_is_rated_ok(tmp_path):
    code, checks = exposure(local_unit(tmp_path))
    assert code == 0, "exposure over 1.2 (systemd-analyze security --offline)"
    for name in ("User=/DynamicUser=", "NoNewPrivileges=", "ProtectSystem=", "ProtectHome=",
                 "CapabilityBoundingSet=~CAP_SYS_ADMIN", "PrivateDevices=", "PrivateTmp=",
                 "RestrictNamespaces=~user", "SystemCallFilter=~@privileged",
                 "MemoryDenyWriteExecute=", "UMask="):
        assert checks.get(name) is True, name
    assert setting("ProtectSystem") == "strict" and setting("DynamicUser") == "yes"
    # the check can fail: the same unit without its sandbox is rated far worse
    bare = "\n".join(line for line in UNIT.read_text().splitlines()
                     if line.split("=")[0] in ("[Unit]", "[Service]", "[Install]", "Description",
                                               "Type", "ExecStart", "WantedBy"))
    (tmp_path / "bare").mkdir()
    code, checks = exposure(local_unit(tmp_path / "bare", bare))
    assert code != 0 and checks["NoNewPrivileges="] is False


def test_the_token_comes_through_a_credential():
    name, _, source = setting("LoadCredential").partition(":")
    assert source == "/etc/unpod-exporter/api-token"
    example = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    assert example["api"]["token_file"] == f"$CREDENTIALS_DIRECTORY/{name}"
    assert not any(key in example["api"] for key in ("token", "token_env"))
    # the shell's kill builtin: /bin/kill (procps) is not on minimal systems
    assert shlex.split(setting("ExecReload")) == ["/bin/sh", "-c", 'kill -HUP "$MAINPID"']


def env_file(port: int, config: Path) -> dict[str, str]:
    """The environment file as systemd reads it (KEY=value, quotes removed), pointed at a
    free port and the test's config."""
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, raw = line.partition("=")
            env[key] = " ".join(shlex.split(raw))
    assert "--web.listen-address=:9877" in env["ARGS"]
    env["ARGS"] = env["ARGS"].replace(":9877", f"127.0.0.1:{port}")
    env["UNPOD_EXPORTER_CONFIG"] = str(config)
    return env


def command(line: str, env: dict[str, str]) -> list[str]:
    """An Exec line as systemd runs it: ``$VAR`` split into words, ``${VAR}`` kept whole."""
    words = []
    for word in line.split():
        if match := re.fullmatch(r"\$(\w+)", word):
            words.extend(env.get(match.group(1), "").split())
        else:
            words.append(word)
    return [str(ENTRY_POINT) if w == INSTALLED else w for w in words]


async def test_exec_start_and_exec_reload_as_systemd_runs_them(fake_api, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("globex")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    name = setting("LoadCredential").partition(":")[0]
    (credentials / name).write_text(TOKEN + "\n")
    example = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    example["api"]["base_url"] = base
    example["orgs"] = [{"handle": "acme"}]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(example))
    port = free_port()
    env = {**os.environ, **env_file(port, config), "CREDENTIALS_DIRECTORY": str(credentials)}
    env.pop("UNPOD_API_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        *command(setting("ExecStart"), env), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            async def up(org: str) -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                        return value(parse_metrics(await response.text()), "unpod_up",
                                     org=org) == 1
                except aiohttp.ClientError:
                    return False

            await wait_for(lambda: up("acme"), 15, "acme polled with the credential's token")
            example["orgs"].append({"handle": "globex"})
            config.write_text(yaml.safe_dump(example))
            # systemd gives ExecReload the main process as $MAINPID
            kill = await asyncio.create_subprocess_exec(
                *shlex.split(setting("ExecReload")), env={**env, "MAINPID": str(proc.pid)})
            assert await asyncio.wait_for(kill.wait(), 10) == 0
            await wait_for(lambda: up("globex"), 15, "globex polled after ExecReload")
        proc.send_signal(signal.SIGTERM)  # systemd's KillSignal
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        assert "config reloaded" in err.decode() and TOKEN not in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("unset", [True, False])
def test_credentials_directory_outside_systemd(tmp_path, unset):
    """``--config.check`` names the key when the directory is unset, and reads it when set."""
    config = tmp_path / "config.yaml"
    example = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    config.write_text(yaml.safe_dump(example))
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    if not unset:
        (tmp_path / "unpod-api-token").write_text("tok-from-credential")
        env["CREDENTIALS_DIRECTORY"] = str(tmp_path)
    result = subprocess.run([str(ENTRY_POINT), "--config.file", str(config), "--config.check"],
                            env=env, capture_output=True, text=True, timeout=30, check=False)
    if unset:
        assert result.returncode != 0
        assert "api.token_file: $CREDENTIALS_DIRECTORY is unset" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "tok-from-credential" not in result.stdout + result.stderr
