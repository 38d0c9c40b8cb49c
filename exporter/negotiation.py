"""What a scraper accepts: exposition format from ``Accept``, gzip from ``Accept-Encoding``.

q-values are honoured (``gzip;q=0`` means no gzip), and anything unparseable or unknown falls
back to the plain text format, uncompressed: a header never makes a scrape fail.
"""

from __future__ import annotations

from collections.abc import Iterator

OPENMETRICS = "application/openmetrics-text"
OPENMETRICS_VERSIONS = frozenset({None, "1.0.0"})  # what this exporter writes
_TEXT_RANGES = frozenset({"text/plain", "text/*", "*/*"})
MAX_HEADER_ITEMS = 64  # an absurdly long header is read only this far


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


def wants_openmetrics(accept: str | None) -> bool:
    """OpenMetrics when it is acceptable (a known version, q > 0) and preferred at least as
    much as the text format."""
    openmetrics = text = 0.0
    for media, params, q in _items(accept):
        if media == OPENMETRICS and params.get("version") in OPENMETRICS_VERSIONS:
            openmetrics = max(openmetrics, q)
        elif media in _TEXT_RANGES:
            text = max(text, q)
    return openmetrics > 0 and openmetrics >= text


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
