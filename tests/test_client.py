"""The API client against the loopback fake API, and its classification as properties."""

from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analytics import Analytics
from exporter.client import REASONS, ApiError, UnpodClient, interpret, parse_retry_after
from exporter.reasons import Reason
from tests.conftest import TOKEN
from tests.fakeapi import EMPTY, FAULTS, NO_DATA, Fault


@pytest.fixture
async def client(fake_api):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("acme", "sp_1", calls=7, completed=7, failed=0)
    async with aiohttp.ClientSession() as session:
        yield fake, UnpodClient(session, base, timeout=1.0, max_body_bytes=64 * 1024)


async def test_success_and_space_scoping(client):
    fake, api = client
    org = await api.fetch_analytics("acme", TOKEN, None)
    space = await api.fetch_analytics("acme", TOKEN, "sp_1")
    assert isinstance(org.outcome, Analytics) and org.outcome.total_calls == 100
    assert isinstance(space.outcome, Analytics) and space.outcome.total_calls == 7
    assert [(r.org, r.space_token) for r in fake.requests] == [("acme", None), ("acme", "sp_1")]


async def test_ratelimit_headers_are_read(client):
    fake, api = client
    fake.extra_headers = {"X-RateLimit-Remaining": "42"}
    assert (await api.fetch_analytics("acme", TOKEN, None)).ratelimit_remaining == 42
    fake.fail("acme", None, "rate_limited")
    response = await api.fetch_analytics("acme", TOKEN, None)
    assert response.retry_after == 1
    assert isinstance(response.outcome, ApiError) and response.outcome.reason == "rate_limited"


@pytest.mark.parametrize("fault, reason, text", [
    (Fault(302, b"", {"Location": "http://elsewhere/"}), "invalid_response", "redirect"),
    (Fault(200, b"x" * (65 * 1024)), "invalid_response", "too large"),
    (Fault(200, json.dumps({"status_code": 200, "data": {}}).encode() * 10, reset_after=20),
     "connection_error", ""),
    (Fault(200, b"{}", delay=2.0), "timeout", "within 1s"),
    (Fault(418, b"teapot"), "bad_request", "HTTP 418"),
    (Fault(503, b"", {"Content-Type": "text/html"}), "server_error", "HTTP 503"),
    (Fault(200, {"status_code": 500, "message": "boom"}), "server_error", "status_code 500"),
    (Fault(200, {"status_code": 429, "message": "slow"}), "rate_limited", "status_code 429"),
    (Fault(206, {"status_code": 200, "data": {}}), "invalid_response", "status_code 200"),
    (Fault(204, b""), "invalid_response", "not JSON"),
    (Fault(200, b"[" * 100000 + b"]" * 100000), "invalid_response", ""),
    (Fault(200, {"status_code": "200", "data": {}}), "invalid_response", "status_code"),
])
async def test_faults_are_classified(client, fault, reason, text):
    fake, api = client
    fake.fail("acme", None, fault)
    response = await api.fetch_analytics("acme", TOKEN, None)
    assert isinstance(response.outcome, ApiError)
    assert response.outcome.reason == reason
    assert text in response.outcome.message


async def test_secrets_are_redacted_from_messages(client):
    fake, api = client
    fake.fail("acme", "sp_1", Fault(400, {"message": f"bad token {TOKEN} for sp_1"}))
    response = await api.fetch_analytics("acme", TOKEN, "sp_1")
    assert isinstance(response.outcome, ApiError)
    assert TOKEN not in response.outcome.message and "sp_1" not in response.outcome.message
    assert "<redacted>" in response.outcome.message


async def test_refused_connection():
    from tests.conftest import free_port
    async with aiohttp.ClientSession() as session:
        api = UnpodClient(session, f"http://127.0.0.1:{free_port()}", timeout=1.0)
        response = await api.fetch_analytics("acme", TOKEN, "sp_secret")
    assert isinstance(response.outcome, ApiError)
    assert response.outcome.reason == "connection_error"
    assert "sp_secret" not in response.outcome.message


def test_retry_after_forms():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
envelopes = st.fixed_dictionaries({}, optional={
    "status_code": st.sampled_from([200, 206, 400, 401, 500, "200", None, True]),
    "message": st.text(max_size=10),
    "data": st.fixed_dictionaries({}, optional={
        key: st.integers(-2, 10**20) | st.floats() | st.none() | st.text(max_size=3)
        for key in ("total_calls", "completed_calls", "failed_calls", "avg_duration_seconds",
                    "total_tasks")
    } | {"task_status_breakdown": st.dictionaries(st.text(max_size=70), json_values,
                                                  max_size=40)}),
})


@settings(max_examples=300, deadline=None)
@given(status=st.integers(100, 599), body=json_values | envelopes)
def test_any_json_body_gives_a_snapshot_or_a_classified_error(status, body):
    outcome = interpret(status, json.dumps(body).encode())
    assert isinstance(outcome, Analytics | ApiError)
    if isinstance(outcome, ApiError):
        assert outcome.reason in REASONS
    else:
        assert status == 200
        assert outcome.total_calls >= 0 and outcome.avg_duration_seconds >= 0


@settings(max_examples=300, deadline=None)
@given(status=st.integers(100, 599), raw=st.binary(max_size=200))
def test_any_bytes_give_a_snapshot_or_a_classified_error(status, raw):
    outcome = interpret(status, raw)
    assert isinstance(outcome, ApiError) and outcome.reason in REASONS


def test_data_null_is_a_no_data_failure():
    # unpod-api.md: data: null appears only when the platform's analytics store fails
    outcome = interpret(200, json.dumps(NO_DATA).encode())
    assert isinstance(outcome, ApiError) and outcome.reason == Reason.NO_DATA
    assert outcome.reason == "no_data" and "data is null" in outcome.message
    assert "No analytics data available" in outcome.message


def test_a_space_without_runs_is_a_success_with_no_figures():
    outcome = interpret(200, json.dumps({"status_code": 200, "message": "ok",
                                         "data": EMPTY}).encode())
    assert isinstance(outcome, Analytics) and outcome.shape == "platform" and outcome.empty


def test_a_404_that_is_not_json_means_no_such_route():
    page = FAULTS["no_route"]
    outcome = interpret(page.status, page.body)
    assert isinstance(outcome, ApiError) and outcome.reason == Reason.NOT_FOUND
    assert outcome.route_missing and "no such route at api.base_url" in outcome.message
    unknown_org = interpret(404, json.dumps(FAULTS["org_not_found"].body).encode())
    assert isinstance(unknown_org, ApiError) and unknown_org.reason == Reason.NOT_FOUND
    assert not unknown_org.route_missing and "Organization not found" in unknown_org.message
