"""Every answer the real platform is known to give (unpod-api.md), through the whole exporter:
both success shapes, ``data: null``, the 206 answers, auth schemes and the real list views.
The classification of each error body is in test_exporter's parametrised fault table."""

from __future__ import annotations

import logging

from tests.conftest import TOKEN, config_yaml, value, wait_for
from tests.test_discovery import discovery_config, labels

ORGS = [{"handle": "acme", "spaces": [{"name": "sales", "space_token": "sp_sales"},
                                      {"name": "survey", "space_token": "sp_survey"}]}]
SALES = {"org": "acme", "space": "sales"}
SURVEY = {"org": "acme", "space": "survey"}


async def test_platform_shape_end_to_end(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")  # org-wide: the published shape
    fake.set_platform("acme", "sp_sales")  # the example body of unpod-api.md
    fake.set_platform("acme", "sp_survey", voicemail=3, **{"bad name!": 2})
    running = await start_exporter(config_yaml(base, ORGS))
    await running.wait_ready()
    m = await running.metrics()
    assert value(m, "unpod_up", **SALES) == 1
    assert value(m, "unpod_calls", **SALES) == 419
    assert value(m, "unpod_calls_failed", **SALES) == 200
    assert value(m, "unpod_tasks", **SALES) == 419
    outcomes = {dict(lab)["outcome"]: v for (n, lab), v in m.items()
                if n == "unpod_calls_by_outcome" and dict(lab).get("space") == "sales"}
    assert outcomes == {"interested": 77, "call_back": 13, "send_details": 1,
                        "not_interested": 20, "not_connected": 35, "failed": 200}
    statuses = {dict(lab)["status"]: v for (n, lab), v in m.items()
                if n == "unpod_tasks_by_status" and dict(lab).get("space") == "sales"}
    assert statuses == {"completed": 302, "failed": 109, "pending": 2, "in_progress": 1}
    assert value(m, "unpod_task_success_ratio", **SALES) == 302 / 419
    # absent, never invented: no completed calls, no duration, no call ratio, no 72.08
    for missing in ("unpod_calls_completed", "unpod_call_average_duration_seconds",
                    "unpod_call_success_ratio"):
        assert value(m, missing, **SALES) is None, missing
    assert all(v <= 1 for (n, _), v in m.items() if n.endswith("_ratio"))
    assert value(m, "unpod_analytics_shape_info", shape="platform", **SALES) == 1
    assert value(m, "unpod_analytics_shape_info", shape="published", org="acme") == 1
    assert value(m, "unpod_org_calls_completed", org="acme") == 90
    assert value(m, "unpod_org_task_success_ratio", org="acme") == 35 / 50
    # extra outcomes pass through; bad names do not
    assert value(m, "unpod_calls_by_outcome", outcome="voicemail", **SURVEY) == 3
    assert not [lab for (n, lab) in m if n == "unpod_calls_by_outcome"
                and ("outcome", "bad name!") in lab]
    page = await (await running.client.get("/")).text()
    assert "<td>platform</td>" in page and "<td>published</td>" in page


async def test_a_space_without_runs_is_up_with_no_figures(fake_api, start_exporter, caplog):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_empty("acme", "sp_sales")  # unpod-api.md: empty figures, not null
    fake.set_analytics("acme", "sp_survey")
    running = await start_exporter(config_yaml(base, ORGS))
    await running.wait_ready()
    m = await running.metrics()
    assert value(m, "unpod_up", **SALES) == 1
    assert value(m, "unpod_analytics_shape_info", shape="platform", **SALES) == 1
    assert value(m, "unpod_calls", **SALES) is None  # never zeros
    assert value(m, "unpod_tasks", **SALES) is None
    assert value(m, "unpod_tasks_last_progress_timestamp_seconds", **SALES) is None
    assert value(m, "unpod_last_success_timestamp_seconds", **SALES) is not None
    assert value(m, "unpod_api_requests_total", org="acme", endpoint="analytics",
                 outcome="ok") == 3
    assert not [r for r in caplog.records if r.getMessage() == "target down"]


async def test_data_null_fails_the_poll_but_keeps_figures_and_the_progress_clock(
        fake_api, start_exporter, caplog):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("acme", "sp_sales", calls=10, breakdown={"pending": 3, "completed": 4})
    fake.set_analytics("acme", "sp_survey")
    running = await start_exporter(config_yaml(base, ORGS))
    await running.wait_ready()
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", reason="no_data", **SALES) == 0  # initialised
    poller = running.exporter.poller
    target = running.exporter.scheduler.target(("acme", "sales"))
    assert target is not None
    before = running.exporter.store.get(target.key)
    assert before is not None and before.analytics is not None and before.up
    fake.set_no_data("acme", "sp_sales")  # the platform's analytics store failed
    await poller.poll_once(target)
    after = running.exporter.store.get(target.key)
    assert after is not None and not after.up
    assert after.last_error is not None and after.last_error.reason == "no_data"
    assert after.analytics == before.analytics  # kept until max_staleness
    assert after.progress_timestamp == before.progress_timestamp
    assert after.last_success == before.last_success
    assert fake.count("acme", "sp_sales") == 2  # not retried: the store failed for ~10 s
    down = [r for r in caplog.records if r.getMessage() == "target down"]
    assert len(down) == 1 and down[0].fields["reason"] == "no_data"

    async def shown_down() -> bool:  # the body served may be up to a second old
        return value(await running.metrics(), "unpod_up", **SALES) == 0
    await wait_for(shown_down, 3, "the failed poll on /metrics")
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", reason="no_data", **SALES) == 1
    assert value(m, "unpod_calls", **SALES) == 10  # the previous figures, not zeros
    assert value(m, "unpod_tasks_by_status", status="pending", **SALES) == 3
    assert value(m, "unpod_analytics_shape_info", shape="published", **SALES) == 1
    assert value(m, "unpod_poll_errors_total", reason="invalid_response", **SALES) == 0


async def test_a_missing_route_says_so_in_the_log(fake_api, start_exporter, caplog):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.fail("acme", None, "no_route")  # Django's HTML 404: no such route at this base URL
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    down = [r for r in caplog.records if r.getMessage() == "target down"]
    assert len(down) == 1 and down[0].fields["reason"] == "not_found"
    assert "no such route at api.base_url" in down[0].fields["error"]


async def test_no_access_to_a_space_does_not_back_off_the_org(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("acme", "sp_survey")
    fake.fail("acme", "sp_sales", "no_space_access")
    running = await start_exporter(config_yaml(base, ORGS))
    await running.wait_ready()
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", reason="forbidden", **SALES) == 1
    poller, targets = running.exporter.poller, running.exporter.scheduler
    assert poller.auth_backoff.blocked("acme", targets.target(("acme", "")).token) is None
    sent = fake.count("acme")
    await poller.poll_once(targets.target(("acme", "survey")))
    assert fake.count("acme") == sent + 1 and value(
        await running.metrics(), "unpod_up", **SURVEY) == 1


async def test_a_403_still_backs_off_the_org(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.fail("acme", None, "invalid_org")
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    poller = running.exporter.poller
    target = running.exporter.scheduler.target(("acme", ""))
    assert poller.auth_backoff.blocked("acme", target.token) is not None


async def test_auth_scheme_is_sent_on_every_request(fake_api, start_exporter):
    fake, base = fake_api
    fake.schemes = ("JWT",)  # the unlisted page's route: JWT only
    fake.list_schemes = ("JWT",)
    fake.add_space("acme", "Sales", "sp_sales")
    fake.set_analytics("acme")
    running = await start_exporter(discovery_config(
        base, {"spaces": True}, [{"handle": "acme"}]).replace(
        "api:", "api:\n  auth_scheme: jwt", 1))
    await running.wait_ready()
    m = await running.metrics()
    assert labels(m) == {("acme", ""), ("acme", "Sales")}
    assert value(m, "unpod_up", org="acme", space="Sales") == 1
    assert {r.authorization for r in fake.requests} == {f"JWT {TOKEN}"}


async def test_token_scheme_against_a_jwt_only_route_is_unauthorized(fake_api, start_exporter):
    fake, base = fake_api
    fake.schemes = ("JWT",)
    fake.set_analytics("acme")
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", reason="unauthorized", org="acme") == 1


async def test_lists_refusing_token_credentials_fail_soft_with_one_clear_line(
        fake_api, start_exporter, caplog):
    fake, base = fake_api
    fake.platform()  # list views: JWT only, as in the platform source
    fake.set_analytics("acme")
    fake.add_space("acme", "Sales", "sp_sales")
    caplog.set_level(logging.INFO)
    orgs = [{"handle": "acme", "spaces": [{"name": "sales", "space_token": "sp_sales"}]}]
    running = await start_exporter(discovery_config(base, {"orgs": True, "spaces": True,
                                                           "interval": "200ms"}, orgs))
    await running.wait_ready()
    await wait_for(lambda: len(fake.list_requests) >= 6, 5, "three discovery rounds")
    m = await running.metrics()
    # the configured targets keep polling
    assert labels(m) == {("acme", ""), ("acme", "sales")}
    assert value(m, "unpod_up", org="acme", space="sales") == 1
    assert value(m, "unpod_exporter_discovery_success", kind="orgs") == 0
    assert value(m, "unpod_exporter_discovery_success", kind="spaces") == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "unpod_exporter.discovery"]
    assert len([line for line in lines if "orgs list refuses Token" in line]) == 1, lines
    assert len([line for line in lines if "spaces list refuses Token" in line]) == 1, lines
    assert all("asks for JWT" in line and "orgs[].spaces" in line for line in lines)
    assert not any(TOKEN in r.getMessage() or TOKEN in str(getattr(r, "fields", ""))
                   for r in caplog.records)


async def test_real_list_items_and_errors(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.add_space("acme", "Sales", "sp_1")
    fake.add_space("acme", "Survey", "sp_2")
    # a handle the API does not know: its spaces list answers 404, the others keep going
    orgs = [{"handle": "acme"}, {"handle": "ghost"}]
    running = await start_exporter(discovery_config(base, {"spaces": True}, orgs))
    await running.wait_ready()
    m = await running.metrics()
    assert labels(m) == {("acme", ""), ("acme", "Sales"), ("acme", "Survey"), ("ghost", "")}
    assert value(m, "unpod_up", org="acme", space="Survey") == 1
    assert value(m, "unpod_exporter_discovery_success", kind="spaces") == 0
    assert value(m, "unpod_poll_errors_total", reason="not_found", org="ghost") == 1
