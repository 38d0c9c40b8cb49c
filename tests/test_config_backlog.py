"""The ``backlog:`` section and ``orgs[].backlog``: defaults, and errors that name the key."""

from __future__ import annotations

import pytest

from exporter.backlog.wiring import plan_of, spaces_to_scan
from exporter.config import BacklogConfig, ConfigError, parse_config_text
from exporter.targets import build_targets

BASE = """
api: {token: tok-abc}
orgs:
  - handle: acme
    spaces: [{name: sales, space_token: sp_1}]
  - handle: globex
    backlog: false
    spaces: [{name: survey, space_token: sp_2}]
"""


def test_defaults_as_the_spec_names_them():
    config = parse_config_text(BASE)
    assert config.backlog == BacklogConfig(enabled=True, interval=600.0, page_size=50,
                                           max_requests_per_scan=20)
    acme, globex = config.orgs
    assert config.scans_backlog(acme) and not config.scans_backlog(globex)
    assert config.scans_backlog(None)  # a discovered org follows backlog.enabled


def test_the_section_is_read():
    config = parse_config_text(BASE + """
backlog: {enabled: false, interval: 1s, page_size: 200, max_requests_per_scan: 1}
""")
    assert config.backlog == BacklogConfig(False, 1.0, 200, 1)
    assert not config.scans_backlog(config.orgs[0]) and not config.scans_backlog(None)


@pytest.mark.parametrize("section, message", [
    ("{page_size: 0}", r"^backlog\.page_size: must be at least 1, got 0$"),
    ("{page_size: 201}", r"^backlog\.page_size: must be at most 200, got 201$"),
    ("{page_size: '50'}", r"^backlog\.page_size: expected an integer, got a string$"),
    ("{interval: 500ms}", r"^backlog\.interval: must be at least 1s, got '500ms'$"),
    ("{interval: soon}", r"^backlog\.interval: invalid duration 'soon'"),
    ("{max_requests_per_scan: 0}", r"^backlog\.max_requests_per_scan: must be at least 1"),
    ("{enabled: 'yes'}", r"^backlog\.enabled: expected true or false"),
    ("{page: 2}", r"^backlog\.page: unknown"),
    ("[]", r"^backlog: expected a mapping"),
])
def test_errors_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(BASE + f"backlog: {section}\n")


def test_an_orgs_backlog_is_a_boolean():
    with pytest.raises(ConfigError, match=r"^orgs\[0\]\.backlog: expected true or false"):
        parse_config_text(BASE.replace("  - handle: acme\n", "  - handle: acme\n    backlog: 0\n"))


def test_the_spaces_the_scan_covers():
    config = parse_config_text(BASE)
    targets = build_targets(config)
    assert {(t.org, t.space) for t in targets} >= {("acme", ""), ("globex", "survey")}
    # spaces only (no org-wide backlog), and not those of an org with backlog: false
    assert [(t.org, t.space) for t in spaces_to_scan(config, targets)] == [("acme", "sales")]
    off = parse_config_text(BASE + "backlog: {enabled: false}\n")
    assert spaces_to_scan(off, build_targets(off)) == []
    plan = plan_of(parse_config_text(BASE + "poll: {max_staleness: 7m}\n"))
    assert (plan.interval, plan.page_size, plan.max_requests, plan.max_staleness) == (
        600.0, 50, 20, 420.0)
