"""What a scraper accepts: exposition format from ``Accept``, gzip from ``Accept-Encoding``.

The format follows Prometheus's scrape protocol content negotiation (``prometheus/docs``,
``content_negotiation.md``): of the protocols this exporter writes (OpenMetrics 1.0.0 and the
Prometheus text format 0.0.4), the one the ``Accept`` header weights highest is served; when
it accepts neither, text 0.0.4 is the last resort. The ``Content-Type`` names the version and,
for OpenMetrics 1.0.0 (a text format of version 1.0.0), the escaping scheme. q-values are
honoured (``gzip;q=0`` means no gzip), and anything unparseable or unknown falls back to the
plain text format, uncompressed: a header never makes a scrape fail, and nothing from it is
echoed except one of the fixed escaping scheme names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporter.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE

OPENMETRICS = "application/openmetrics-text"
OPENMETRICS_VERSIONS = frozenset({None, "1.0.0"})  # what this exporter writes
TEXT_VERSIONS = frozenset({None, "0.0.4"})
_TEXT_RANGES = frozenset({"text/*", "*/*"})
MAX_HEADER_ITEMS = 64  # an absurdly long header is read only this far

# Every metric and label name this exporter writes is a valid legacy (pre-UTF-8) name, and
# these schemes leave such names as they are, so the body is already escaped by any of them.
# "dots" is not among them: it doubles every underscore. When the scraper asks for none of
# these, the body is described as "underscores", the scheme it does satisfy.
SCHEMES_SATISFIED = frozenset({"allow-utf8", "underscores", "values"})
DEFAULT_SCHEME = "underscores"


@dataclass(frozen=True)
class Format:
    """The body to serve and the ``Content-Type`` that describes it."""

    openmetrics: bool  # OpenMetrics 1.0.0, else the Prometheus text format 0.0.4
    content_type: str


TEXT = Format(False, TEXT_CONTENT_TYPE)


def _items(header: str | None) -> Iterator[tuple[str, dict[str, str], float]]:
    """(value, parameters, q) of each comma-separated item; items with a bad q are skipped."""
    for index, item in enumerate((header or "").split(",")):
        if index >= MAX_HEADER_ITEMS:
            return
        value, *params = (part.strip() for part in item.split(";"))
        parameters: dict[str, str] = {}
        for param in params:
            name, _, text = param.partition("=")
            parameters[name.strip().lower()] = text.strip().strip('"')
        try:
            q = float(parameters.pop("q", "1"))
        except ValueError:
            continue
        if not 0 <= q <= 1:  # also NaN
            continue
        if value:
            yield value.lower(), parameters, q


def openmetrics_content_type(escaping: str | None) -> str:
    scheme = escaping if escaping in SCHEMES_SATISFIED else DEFAULT_SCHEME
    return f"{OPENMETRICS_CONTENT_TYPE}; escaping={scheme}"


def negotiate(accept: str | None) -> Format:
    """OpenMetrics when it is acceptable (a known version, q > 0) and weighted at least as
    high as the text format; the text format otherwise."""
    openmetrics = text = 0.0
    escaping: str | None = None
    for media, params, q in _items(accept):
        if media == OPENMETRICS and params.get("version") in OPENMETRICS_VERSIONS:
            if q > openmetrics:
                openmetrics, escaping = q, params.get("escaping")
        elif ((media == "text/plain" and params.get("version") in TEXT_VERSIONS)
              or media in _TEXT_RANGES):
            text = max(text, q)
    if openmetrics > 0 and openmetrics >= text:
        return Format(True, openmetrics_content_type(escaping))
    return TEXT


def wants_openmetrics(accept: str | None) -> bool:
    return negotiate(accept).openmetrics


def accepts_gzip(accept_encoding: str | None) -> bool:
    """gzip when named with q > 0, or when ``*`` allows it and gzip is not named."""
    named: float | None = None
    wildcard = 0.0
    for coding, _, q in _items(accept_encoding):
        if coding in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding == "*":
            wildcard = max(wildcard, q)
    return (wildcard if named is None else named) > 0
