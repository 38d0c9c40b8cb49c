"""Content negotiation as Prometheus's ``content_negotiation.md`` (prometheus/docs) asks, with the
exact ``Accept`` headers Prometheus 2 and 3 send: the highest-weighted protocol this exporter
writes, text 0.0.4 as the last resort, and a ``Content-Type`` with version and escaping."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.negotiation import TEXT, negotiate
from tests.conftest import config_yaml, wait_for
from tests.prometheus import Prometheus

# prometheus/prometheus config/config.go ScrapeProtocolsHeaders, and the order of
# DefaultScrapeProtocols / DefaultProtoFirstScrapeProtocols.
PROTO = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
HEADERS = {"PrometheusProto": PROTO, "PrometheusText0.0.4": "text/plain;version=0.0.4",
           "PrometheusText1.0.0": "text/plain;version=1.0.0",
           "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
           "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0"}
DEFAULT_2 = ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4"]
DEFAULT_3 = ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0",
             "PrometheusText0.0.4"]


def accept_header(protocols: list[str], known: int, escaping: str | None = None,
                  escape_all: bool = False) -> str:
    """A port of scrape/scrape.go ``acceptHeader``: weights from ``0.{known+1}`` down, the
    escaping parameter on the 1.0.0 text formats (on every protocol in the variant that took
    a validation scheme), then ``*/*``."""
    values, weight = [], known + 1
    for protocol in protocols:
        value = HEADERS[protocol]
        if escaping and (escape_all or protocol in ("PrometheusText1.0.0",
                                                    "OpenMetricsText1.0.0")):
            value += f";escaping={escaping}"
        values.append(f"{value};q=0.{weight}")
        weight -= 1
    return ",".join([*values, f"*/*;q=0.{weight}"])


# Prometheus 2.0-2.48: scrape/scrape.go's constant scrapeAcceptHeader (Debian 12 ships 2.42;
# the real one is captured below).
PROMETHEUS_2_CONSTANT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                         "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_2_49 = ("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-"
                   "text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
PROMETHEUS_2_49_PROTO_FIRST = (f"{PROTO};q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,"
                               "application/openmetrics-text;version=0.0.1;q=0.3,text/plain;"
                               "version=0.0.4;q=0.2,*/*;q=0.1")
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf8;q=0.6,"
                "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
                "escaping=allow-utf8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
PROMETHEUS_3_PROTO_FIRST = (f"{PROTO};q=0.6,application/openmetrics-text;version=1.0.0;"
                            "escaping=allow-utf8;q=0.5,application/openmetrics-text;"
                            "version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf8;"
                            "q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1")


def test_the_headers_are_what_prometheus_builds():
    assert accept_header(DEFAULT_2, 4) == PROMETHEUS_2_49
    assert accept_header(["PrometheusProto", *DEFAULT_2], 4) == PROMETHEUS_2_49_PROTO_FIRST
    assert accept_header(DEFAULT_3, 5, "allow-utf8") == PROMETHEUS_3
    assert accept_header(["PrometheusProto", *DEFAULT_3], 5, "allow-utf8") == \
        PROMETHEUS_3_PROTO_FIRST


def openmetrics(escaping: str) -> str:
    return f"application/openmetrics-text; version=1.0.0; charset=utf-8; escaping={escaping}"


CASES = [
    ("Prometheus 2.0-2.48", PROMETHEUS_2_CONSTANT, openmetrics("underscores")),
    ("Prometheus 2, acceptHeader with four protocols", PROMETHEUS_2_49, openmetrics("underscores")),
    ("Prometheus 2, acceptHeader, native histograms", PROMETHEUS_2_49_PROTO_FIRST,
     openmetrics("underscores")),
    ("Prometheus 3", PROMETHEUS_3, openmetrics("allow-utf8")),
    ("Prometheus 3, protobuf first", PROMETHEUS_3_PROTO_FIRST, openmetrics("allow-utf8")),
    ("Prometheus 3, UTF8NamesHeader on every protocol",
     accept_header(DEFAULT_3, 5, "allow-utf8", escape_all=True), openmetrics("allow-utf8")),
    ("Prometheus 3, legacy name validation", accept_header(DEFAULT_3, 5, "underscores"),
     openmetrics("underscores")),
    ("Prometheus 3, escaping values", accept_header(DEFAULT_3, 5, "values"),
     openmetrics("values")),
    # dots doubles every underscore; the body does not, so it says what it does satisfy
    ("Prometheus 3, escaping dots", accept_header(DEFAULT_3, 5, "dots"),
     openmetrics("underscores")),
    ("Prometheus 3, text formats only",
     accept_header(["PrometheusText1.0.0", "PrometheusText0.0.4"], 5, "allow-utf8"),
     TEXT.content_type),
    ("Prometheus 3, protobuf only: the last resort",
     accept_header(["PrometheusProto"], 5, "allow-utf8"), TEXT.content_type),
    ("Prometheus 3, OpenMetrics 0.0.1 only",
     accept_header(["OpenMetricsText0.0.1"], 5, "allow-utf8"), TEXT.content_type),
    ("content_negotiation.md's example, as printed",
     "application/openmetrics-text;version=1.0.0;escaping=allow-utf8;q=0.5,application/"
     "openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf8;q=0.3,"
     "text/plain;version=0.0.4;q=0.2,/;q=0.1", openmetrics("allow-utf8")),
    ("an escaping scheme that does not exist",
     "application/openmetrics-text;version=1.0.0;escaping=<script>", openmetrics("underscores")),
    ("curl", "*/*", TEXT.content_type),
    ("a browser", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,*/*;q=0.8", TEXT.content_type),
    ("no header", None, TEXT.content_type),
    ("nothing this exporter writes", "application/json", TEXT.content_type),
]


@pytest.mark.parametrize("accept, content_type", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_negotiated_content_type(accept, content_type):
    negotiated = negotiate(accept)
    assert negotiated.content_type == content_type
    assert negotiated.openmetrics is content_type.startswith("application/openmetrics-text")


@pytest.mark.parametrize("path", ["/metrics", "/probe?org=acme"])
@pytest.mark.parametrize("accept, content_type", [
    (PROMETHEUS_3, openmetrics("allow-utf8")), (PROMETHEUS_2_CONSTANT, openmetrics("underscores")),
    ("*/*", TEXT.content_type)])
async def test_served_bodies_match_their_content_type(fake_api, start_exporter, path, accept,
                                                      content_type):
    fake, base = fake_api
    fake.set_analytics("acme")
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    response = await running.client.get(path, headers={"Accept": accept})
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert "Accept" in response.headers["Vary"]
    text = await response.text()
    if content_type == TEXT.content_type:
        assert "# EOF" not in text and "unpod_up{" in text
    else:
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "unpod_up" in names


async def test_real_prometheus_2_sends_that_header_and_reads_the_answer(fake_api, start_exporter,
                                                                        tmp_path):
    """Debian's Prometheus scrapes a server that records its Accept header, and the exporter:
    the header is the constant above, and the OpenMetrics answer (with its escaping
    parameter) is ingested."""
    fake, base = fake_api
    fake.set_analytics("acme")
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept", ""))
        return web.Response(text="probe_ok 1\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", record)
    capture = TestServer(app, host="127.0.0.1")
    await capture.start_server()
    exporter_address = f"127.0.0.1:{running.client.server.port}"
    prometheus = Prometheus(tmp_path, {"capture": f"127.0.0.1:{capture.port}",
                                       "exporter": exporter_address}, [])
    try:
        await asyncio.to_thread(prometheus.wait_ready)

        async def ingested() -> bool:
            result = await asyncio.to_thread(prometheus.query, 'unpod_up{job="exporter"}')
            return bool(result) and bool(seen)

        await wait_for(ingested, 30, "Prometheus to scrape both servers")
        assert seen[0] == PROMETHEUS_2_CONSTANT
        assert negotiate(seen[0]).content_type == openmetrics("underscores")
        up = await asyncio.to_thread(prometheus.query, 'up{job="exporter"}')
        assert up[0]["value"][1] == "1"
    finally:
        prometheus.stop()
        await capture.close()
