"""``--config.check.api``: the real program against the fake API, for success, each failure
reason with the config key it names, secrecy, and the request budget."""

from __future__ import annotations

import asyncio
import sys

import yaml

from exporter.apicheck import check_api
from exporter.config import parse_config_text
from tests.conftest import TOKEN, config_yaml

SPACES = [{"name": "sales", "space_token": "sp_sales_secret"},
          {"name": "survey", "space_token": "sp_survey_secret"},
          {"name": "fresh", "space_token": "sp_fresh_secret"}]


async def run_check(config_text: str, tmp_path) -> tuple[int, str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--config.file", str(path), "--config.check.api",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def row(out: str, target: str) -> str:
    rows = [line for line in out.splitlines() if line.split("  ")[0].strip() == target]
    assert len(rows) == 1, (target, out)
    return rows[0]


async def test_success_shapes_and_a_space_without_runs(fake_api, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme", calls=1250, completed=1100, failed=150)
    fake.set_analytics("acme", "sp_sales_secret")
    fake.set_platform("acme", "sp_survey_secret")
    fake.set_empty("acme", "sp_fresh_secret")
    code, out, err = await run_check(config_yaml(base, [{"handle": "acme", "spaces": SPACES}]),
                                     tmp_path)
    assert code == 0, out + err
    assert out.splitlines()[1].split() == ["TARGET", "HTTP", "SHAPE", "FIGURES", "RESULT"]
    org = row(out, "acme")
    assert "200" in org and "published" in org and "calls=1250 completed=1100" in org
    assert "platform" in row(out, "acme/survey") and "calls=419" in row(out, "acme/survey")
    fresh = row(out, "acme/fresh")
    assert "platform" in fresh and "ok: no runs yet" in fresh
    assert "4 of 4 answered usefully" in out
    assert fake.count() == 4  # one request per target


async def test_each_failure_names_its_reason_and_config_key(fake_api, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("acme", "sp_survey_secret")
    fake.fail("acme", "sp_sales_secret", "no_space_access")
    fake.set_analytics("globex")
    fake.fail("globex", None, "invalid_org")
    fake.fail("initech", None, "server_error_html")
    orgs = [{"handle": "acme", "spaces": SPACES},  # sp_fresh_secret is unknown: 206
            {"handle": "globex", "token": "other-token"},
            {"handle": "ghost"},
            {"handle": "initech"}]
    code, out, err = await run_check(config_yaml(base, orgs), tmp_path)
    assert code == 1, out + err
    assert "ok" in row(out, "acme") and "ok" in row(out, "acme/survey")
    fresh = row(out, "acme/fresh")
    assert "206" in fresh and "not_found" in fresh and "Invalid Space Token" in fresh
    assert "orgs[0].spaces[2].space_token" in fresh
    sales = row(out, "acme/sales")
    assert "forbidden" in sales and "orgs[0].spaces[0].space_token" in sales
    globex = row(out, "globex")
    assert "403" in globex and "forbidden" in globex and "orgs[1].token" in globex
    ghost = row(out, "ghost")
    assert "404" in ghost and "not_found" in ghost and "orgs[2].handle" in ghost
    assert "server_error" in row(out, "initech")
    assert "2 of 7 answered usefully; 5 failed" in out
    # secrets: neither the API token nor any space token is printed
    for secret in (TOKEN, "other-token", *(s["space_token"] for s in SPACES)):
        assert secret not in out + err


async def test_data_null_and_a_missing_route_are_failures_with_their_own_hints(fake_api,
                                                                             tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_no_data("acme", "sp_sales_secret")
    fake.set_analytics("acme", "sp_survey_secret")
    fake.set_analytics("acme", "sp_fresh_secret")
    code, out, _ = await run_check(config_yaml(base, [{"handle": "acme", "spaces": SPACES}]),
                                   tmp_path)
    assert code == 1
    sales = row(out, "acme/sales")
    assert "no_data" in sales and "analytics store failed" in sales
    assert "poll.max_staleness" in sales
    # the public platform source has no analytics route: Django's HTML 404, not the JSON
    # "Organization not found", so the hint names the base URL, not the org
    fake.fail("acme", None, "no_route")
    code, out, _ = await run_check(config_yaml(base, [{"handle": "acme"}]), tmp_path)
    acme = row(out, "acme")
    assert code == 1 and "not_found" in acme and "404" in acme
    assert "route does not exist at api.base_url" in acme and "orgs[0].handle" not in acme


async def test_wrong_token_and_unreachable_api(fake_api, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    text = config_yaml(base, [{"handle": "acme"}], api={"token": "wrong-secret"})
    code, out, _ = await run_check(text, tmp_path)
    assert code == 1 and "unauthorized" in row(out, "acme") and "api.token" in row(out, "acme")
    assert "wrong-secret" not in out
    text = config_yaml("http://127.0.0.1:9/api", [{"handle": "acme"}], api={"timeout": "1s"})
    code, out, _ = await run_check(text, tmp_path)
    assert code == 1 and "connection_error" in row(out, "acme")
    assert "api.base_url" in row(out, "acme")


async def test_lists_refusing_token_credentials_point_at_auth_scheme(fake_api, tmp_path):
    fake, base = fake_api
    fake.platform()
    fake.set_analytics("acme")
    doc = yaml.safe_load(config_yaml(base, [{"handle": "acme"}]))
    doc["discovery"] = {"orgs": True, "spaces": True}
    code, out, _ = await run_check(yaml.safe_dump(doc), tmp_path)
    assert code == 1
    listing = row(out, "list organizations")
    assert "401" in listing and "asks for JWT" in listing and "api.auth_scheme" in listing
    assert "ok" in row(out, "acme")  # the configured target is still checked
    doc["api"]["auth_scheme"] = "JWT"
    fake.add_space("acme", "Sales", "sp_1")
    code, out, _ = await run_check(yaml.safe_dump(doc), tmp_path)
    assert code == 0, out
    assert "orgs=1" in row(out, "list organizations")
    assert "spaces=1" in row(out, "list spaces of acme") and "ok" in row(out, "acme/Sales")


async def test_the_request_budget_is_respected(fake_api):
    fake, base = fake_api
    fake.set_analytics("acme")
    for space in SPACES:
        fake.set_analytics("acme", space["space_token"])
    config = parse_config_text(config_yaml(base, [{"handle": "acme", "spaces": SPACES}],
                                           api={"max_requests_per_minute": 2}))
    task = asyncio.create_task(check_api(config))
    await asyncio.sleep(1.5)
    assert fake.count() == 2  # the other two wait for the budget (a minute)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
