"""The real program in a subprocess: flags, exit codes, demo, signals, reload."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from exporter.cli import StartupError, parse_listen_address
from tests.conftest import EXE, free_port, get, parse_metrics, value


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=30,
                          env=env)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    from exporter import __version__
    assert result.stdout.strip() == f"unpod-exporter {__version__}"


def test_config_check_lists_targets_without_secrets(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("api: {token: tok-very-secret}\norgs:\n"
                      "  - {handle: acme, spaces: [{name: sales, space_token: sp_hidden}]}\n")
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "org=acme space=(org-wide)" in result.stdout
    assert "org=acme space=sales" in result.stdout
    assert "tok-very-secret" not in result.stdout + result.stderr
    assert "sp_hidden" not in result.stdout + result.stderr


@pytest.mark.parametrize("text, message", [
    ("orgs: [{handle: acme, bogus: 1}]", "orgs[0].bogus: unknown key"),
    ("orgs: [{handle: a}, {handle: a}]", "orgs[1].handle: duplicate org handle"),
    ("orgs: [{handle: a, spaces: [{name: x, space_token: s}, {name: x, space_token: t}]}]",
     "orgs[0].spaces[1].name: duplicate space name"),
    ("api: {token_env: NOT_SET_ANYWHERE}\norgs: [{handle: a}]",
     "api.token_env: environment variable NOT_SET_ANYWHERE is unset or empty"),
    ("api: {token_file: /nonexistent/token}\norgs: [{handle: a}]", "api.token_file: cannot read"),
    ("poll: {interval: soon}\norgs: [{handle: a}]", "poll.interval: invalid duration"),
])
@pytest.mark.parametrize("check", [True, False])
def test_config_errors_exit_1_naming_the_key(tmp_path, text, message, check):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    args = ["--config.file", str(config), "--web.listen-address", f"127.0.0.1:{free_port()}"]
    result = run(*args, *(["--config.check"] if check else []))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_1():
    result = run("--config.file", "/nonexistent/config.yaml")
    assert result.returncode == 1 and "/nonexistent/config.yaml" in result.stderr


def test_demo_serves_nonzero_analytics_soon_and_stops_on_sigterm(process):
    # Start-up speed is measured by bench/startup.py; here only a generous bound (a cold
    # first run on a busy machine took over 5 s).
    started = time.monotonic()
    demo = process("--demo")
    deadline = started + 20
    calls = None
    while time.monotonic() < deadline:
        try:
            _, text = get(demo.base + "/metrics")
            calls = value(parse_metrics(text), "unpod_org_calls", org="acme-telecom")
            if calls:
                break
        except OSError:
            pass
        time.sleep(0.1)
    assert calls and calls > 0, "no analytics within 5 s of start"
    m = parse_metrics(get(demo.base + "/metrics")[1])
    stuck = value(m, "unpod_tasks_by_status", org="globex-health", space="patient-survey",
                  status="pending")
    assert stuck and stuck > 0
    # both shapes of the real API, and a space without runs (empty figures)
    assert value(m, "unpod_analytics_shape_info", org="acme-telecom", shape="published") == 1
    assert value(m, "unpod_analytics_shape_info", org="globex-health", shape="platform") == 1
    assert value(m, "unpod_org_calls_by_outcome", org="globex-health", outcome="interested") > 0
    assert value(m, "unpod_org_calls_completed", org="globex-health") is None
    outreach = {"org": "globex-health", "space": "vaccine-outreach"}
    assert value(m, "unpod_analytics_shape_info", shape="platform", **outreach) == 1
    assert value(m, "unpod_up", **outreach) == 1 and value(m, "unpod_calls", **outreach) is None
    assert get(demo.base + "/-/ready")[0] == 200
    stop_started = time.monotonic()
    code, err = demo.stop()
    assert code == 0
    assert time.monotonic() - stop_started < 5
    assert "shutting down" in err


def open_fifo_writer(path: Path, exporter) -> int:
    """Open a FIFO for writing once the exporter has opened it to read its config: it is then
    inside its start-up, past the interpreter's."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        assert exporter.proc.poll() is None, exporter.proc.communicate()[1]
        assert time.monotonic() < deadline, "the exporter never read its config"
        time.sleep(0.01)


def test_a_sighup_while_starting_reloads_once_started(process, tmp_path):
    """systemctl reload right after start: the default action of SIGHUP would end the
    process. The config is a FIFO, so the signal comes while the exporter reads it."""
    config = tmp_path / "c.yaml"
    os.mkfifo(config)
    api = f"http://127.0.0.1:{free_port()}"
    exporter = process("--config.file", str(config))
    writer = open_fifo_writer(config, exporter)
    exporter.proc.send_signal(signal.SIGHUP)
    os.write(writer, f"api: {{base_url: '{api}', token: t}}\norgs: [{{handle: one}}]\n".encode())
    os.close(writer)
    deadline = time.monotonic() + 20
    while True:  # listening: past the first read (the config is read before the port opens)
        try:
            socket.create_connection(("127.0.0.1", exporter.port), timeout=1).close()
            break
        except OSError:
            assert exporter.proc.poll() is None, exporter.proc.communicate()[1]
            assert time.monotonic() < deadline, "the exporter never listened"
            time.sleep(0.01)
    writer = open_fifo_writer(config, exporter)  # the reload reads it again
    os.write(writer, f"api: {{base_url: '{api}', token: t}}\norgs: [{{handle: two}}]\n".encode())
    os.close(writer)
    exporter.wait_http("/-/ready")
    m = parse_metrics(get(exporter.base + "/metrics")[1])
    assert value(m, "unpod_up", org="two") == 0 and value(m, "unpod_up", org="one") is None
    code, err = exporter.stop()
    assert code == 0 and "a SIGHUP came while starting" in err


def test_sighup_and_lifecycle_reload(process, tmp_path):
    config = tmp_path / "c.yaml"
    # an unreachable API: reload is about targets, not about data
    api = f"http://127.0.0.1:{free_port()}"
    config.write_text(f"api: {{base_url: '{api}', token: t}}\norgs: [{{handle: one}}]\n")
    exporter = process("--config.file", str(config), "--web.enable-lifecycle")
    exporter.wait_http("/-/ready")
    m = parse_metrics(get(exporter.base + "/metrics")[1])
    assert value(m, "unpod_up", org="one") == 0

    config.write_text(f"api: {{base_url: '{api}', token: t}}\norgs: [{{handle: two}}]\n")
    exporter.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while value(parse_metrics(get(exporter.base + "/metrics")[1]), "unpod_up", org="two") is None:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.05)
    m = parse_metrics(get(exporter.base + "/metrics")[1])
    assert value(m, "unpod_up", org="one") is None

    config.write_text("orgs: [{handle: three, nope: 1}]\n")
    code, body = get(exporter.base + "/-/reload", "POST")
    assert code == 500 and "orgs[0].nope: unknown key" in body
    m = parse_metrics(get(exporter.base + "/metrics")[1])
    assert value(m, "unpod_exporter_config_last_reload_successful") == 0
    assert value(m, "unpod_up", org="two") is not None  # the old config keeps running

    config.write_text(f"api: {{base_url: '{api}', token: t}}\norgs: [{{handle: four}}]\n")
    code, _ = get(exporter.base + "/-/reload", "PUT")
    assert code == 200
    m = parse_metrics(get(exporter.base + "/metrics")[1])
    assert value(m, "unpod_exporter_config_last_reload_successful") == 1
    assert value(m, "unpod_exporter_targets") == 1
    assert exporter.stop()[0] == 0


def test_reload_is_forbidden_without_the_flag(process, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"api: {{base_url: 'http://127.0.0.1:{free_port()}', token: t}}\n"
                      "orgs: [{handle: one}]\n")
    exporter = process("--config.file", str(config))
    exporter.wait_http()
    assert get(exporter.base + "/-/reload", "POST")[0] == 403


def test_port_in_use_exits_1(process):
    first = process("--demo")
    first.wait_http()
    result = run("--demo", "--web.listen-address", f"127.0.0.1:{first.port}")
    assert result.returncode == 1 and "cannot listen" in result.stderr


@pytest.mark.parametrize("address, expected", [
    (":9877", (None, 9877)), ("[::]:9877", ("::", 9877)), ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("localhost:80", ("localhost", 80)),
])
def test_listen_address(address, expected):
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9877", "host:", ":99999", "::1:80"])
def test_bad_listen_address(address):
    with pytest.raises(StartupError, match="--web.listen-address"):
        parse_listen_address(address)


def test_readme_first_command_is_the_demo():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = [b for b in readme.split("```") if b.startswith(("sh\n", "bash\n"))]
    assert "--demo" in blocks[0] or "unpod-exporter" in blocks[0]


@pytest.mark.parametrize("address, reachable, unreachable", [
    (":{port}", ["127.0.0.1", "::1"], []),
    ("[::]:{port}", ["::1"], ["127.0.0.1"]),
    ("0.0.0.0:{port}", ["127.0.0.1"], ["::1"]),
])
def test_listen_address_families(address, reachable, unreachable):
    import socket
    port = free_port()
    proc = subprocess.Popen([*EXE, "--demo", "--web.listen-address", address.format(port=port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def connects(host: str) -> bool:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return True
            except OSError:
                return False
        deadline = time.monotonic() + 10
        while not connects(reachable[0]):
            assert time.monotonic() < deadline, f"{address} not listening"
            time.sleep(0.05)
        assert all(connects(host) for host in reachable)
        assert not any(connects(host) for host in unreachable)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
