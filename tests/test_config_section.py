"""The config package's parts on their own: the generic section parser, the named
cross-checks, and the rule that validation reads no file."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import (
    ApiConfig,
    Config,
    ConfigError,
    OrgConfig,
    PollConfig,
    parse_config,
    parse_config_text,
    parse_duration,
)
from exporter.config.checks import CHECKS
from exporter.config.fields import at_least, boolean, string
from exporter.config.section import (
    allowed_keys,
    keys,
    list_of,
    option,
    optional_section,
    parse_section,
    required,
)


@dataclass(frozen=True)
class Item:
    name: str = required(string)
    secret: str = required(string, shown=False)
    weight: int = option(1, at_least(0))


def _pair(raw, key):
    given = [name for name in ("left", "right") if name in raw]
    return "+".join(given) or None


@dataclass(frozen=True)
class Sample:
    """A section as a later one (``backlog:``, ``webhook:``) would be written."""

    enabled: bool = option(True, boolean)
    every: float = option(600.0, parse_duration)
    side: str = keys(("left", "right"), _pair, "none")
    items: tuple[Item, ...] = option((), list_of(Item))
    nested: Item | None = option(None, optional_section(Item))


def test_a_section_is_its_field_table():
    assert allowed_keys(Sample) == {"enabled", "every", "left", "right", "items", "nested"}
    assert parse_section(Sample, None, "sample") == Sample()
    parsed = parse_section(Sample, {"every": "1m", "right": 1, "items": [
        {"name": "a", "secret": "s"}, {"name": "b", "secret": "t", "weight": 3}]}, "sample")
    assert parsed.every == 60.0 and parsed.enabled is True and parsed.side == "right"
    assert [item.weight for item in parsed.items] == [1, 3]
    assert "'s'" not in repr(parsed) and "secret" not in repr(parsed)


@pytest.mark.parametrize("raw, message", [
    ({"colour": 1}, "sample.colour: unknown key (allowed: enabled, every, items, left, "
                    "nested, right)"),
    ({"enabled": "yes"}, "sample.enabled: expected true or false, got a string"),
    ({"items": [{"name": "a"}]}, "sample.items[0].secret: required"),
    ({"items": [{"name": "a", "secret": "s", "weight": -1}]},
     "sample.items[0].weight: must be at least 0, got -1"),
    ({"items": {"name": "a"}}, "sample.items: expected a list, got a mapping"),
    ({"nested": {}}, "sample.nested.name: required"),
    ([1], "sample: expected a mapping, got a list"),
])
def test_section_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_section(Sample, raw, "sample")
    assert str(caught.value) == message


def test_null_turns_an_optional_section_off_and_a_plain_one_to_its_defaults():
    assert parse_section(Sample, {"nested": None}, "s").nested is None
    assert parse_config({"poll": None, "api": None, "orgs": [{"handle": "a"}]}).poll == \
        PollConfig()


def test_each_default_is_the_dataclass_default():
    config = parse_config({"orgs": [{"handle": "a"}]})
    assert config.api == ApiConfig() and config.poll == PollConfig()
    assert config.orgs == (OrgConfig("a"),)
    assert config.discovery is None


def test_the_root_keys_are_the_sections():
    """Each field of Config is a top-level key, and the unknown-key message lists them all."""
    sections = {field.name for field in dataclasses.fields(Config)}
    assert allowed_keys(Config) == sections >= {"api", "poll", "orgs", "discovery"}
    with pytest.raises(ConfigError) as caught:
        parse_config({"webhooks": {}, "orgs": [{"handle": "a"}]})
    assert str(caught.value) == f"webhooks: unknown key (allowed: {', '.join(sorted(sections))})"


def test_the_cross_checks_are_named():
    names = [check.__name__ for check in CHECKS]
    assert "<lambda>" not in names and len(set(names)) == len(names)
    assert {"tls_key_needs_cert", "idle_interval_not_below_interval", "orgs_listed",
            "org_handles_unique", "spaces_unique", "org_intervals_fit", "poll_interval_fits",
            "orgs_poll_something"} <= set(names)


CROSS = [
    ("poll: {interval: 2m, idle_interval: 1m}\norgs: [{handle: a}]",
     "poll.idle_interval: 60s is below poll.interval (120s); it must be at least the interval"),
    ("poll: {idle_interval: 5m, max_staleness: 1h}\norgs: [{handle: a, interval: 10m}]",
     "orgs[0].interval: 600s exceeds poll.idle_interval (300s); the idle interval must be at "
     "least the interval"),
    ("orgs: [{handle: a, spaces: [{name: x, space_token: t}, {name: y, space_token: t}]}]",
     "orgs[0].spaces[1].space_token: same space_token as orgs[0].spaces[0]"),
    ("orgs: null", "orgs: at least one organization is required (or discovery.orgs: true)"),
    ("poll: {interval: 10m}\norgs: [{handle: a, interval: 1m}, {handle: b}]",
     "poll.interval: 600s (used by orgs[1]) exceeds poll.max_staleness (300s); series would "
     "vanish between polls"),
]


@pytest.mark.parametrize("text, message", CROSS)
def test_cross_check_messages(text, message, monkeypatch):
    monkeypatch.setenv("UNPOD_API_TOKEN", "tok")
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text)
    assert str(caught.value) == message


def test_discovery_alone_needs_no_orgs(monkeypatch):
    monkeypatch.setenv("UNPOD_API_TOKEN", "tok")
    config = parse_config_text("discovery: {orgs: {include: 'a.*'}}")
    assert config.orgs == () and config.discovers_orgs()
    assert config.discovery is not None and config.discovery.orgs is not None
    assert config.discovery.orgs.matches("acme") and not config.discovery.orgs.matches("b")


def test_validation_reads_no_file_and_no_variable(tmp_path, monkeypatch):
    """Shape and cross-checks pass on a config whose files do not exist; loading it reads
    them in a last step, with the messages it always had."""
    monkeypatch.delenv("UNPOD_API_TOKEN", raising=False)
    missing = tmp_path / "missing"
    text = (f"api: {{tls: {{ca_file: {missing}/ca.pem, cert_file: {missing}/c.pem}}}}\n"
            f"orgs: [{{handle: a, token_file: {missing}/token}}, {{handle: b}}]")
    config = parse_config(yaml.safe_load(text))
    assert config.api.tls.ca_file == f"{missing}/ca.pem"
    assert config.orgs[0].token is not None and config.orgs[0].token.kind == "token_file"
    with pytest.raises(ConfigError, match=re.escape(f"api.tls.ca_file: cannot use {missing}/")):
        parse_config_text(text)
    without_tls = text.split("\n", 1)[1]
    with pytest.raises(ConfigError, match=r"^orgs\[0\]\.token_file: cannot read"):
        parse_config_text(without_tls)
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "token").write_text("tok-file")
    with pytest.raises(ConfigError, match=r"^api\.token_env: environment variable"):
        parse_config_text(without_tls)  # orgs[1] uses the api token


FULL = {
    "api": {"base_url": "https://u.example/api/", "token": "t", "timeout": "5s",
            "max_requests_per_minute": 10, "max_requests_per_day": 100,
            "proxy_url": "http://p:3128", "auth_scheme": "bearer",
            "tls": {"insecure_skip_verify": True, "ca_file": "/ca.pem", "cert_file": "/c.pem",
                    "key_file": "/k.pem"}},
    "poll": {"interval": "1m", "concurrency": 2, "max_staleness": "10m", "change_driven": False,
             "idle_interval": "20m"},
    "discovery": {"interval": "5m", "orgs": {"include": "a.*", "exclude": "ab"}, "spaces": True},
    "backlog": {"enabled": True, "interval": "10m", "page_size": 50, "max_requests_per_scan": 20},
    "webhook": {"listen_address": ":9878", "path": "/webhook", "secret_env": "S",
                "secret_header": "X-S", "web_config_file": "w.yml",
                "agents": {"agent-1": {"org": "acme", "space": "s1"}}},
    "orgs": [{"handle": "acme", "interval": "30s", "token_env": "T", "org_wide": True,
              "spaces": [{"name": "s1", "space_token": "sp1"},
                         {"name": "s2", "space_token": "sp2"}],
              "discover_spaces": {"include": "x"}},
             {"handle": "globex", "org_wide": False, "token_file": "/t",
              "spaces": [{"name": "s1", "space_token": "sp3"}]}],
}


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    children = (node.items() if isinstance(node, dict)
                else enumerate(node) if isinstance(node, list) else ())
    for name, child in children:
        found += _paths(child, (*prefix, name))
    return found


PATHS = _paths(FULL)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6),
                     st.floats(allow_nan=True), st.sampled_from(
                         ["", "a", "30s", "0", "1h", "acme", "http://h", "x y", "[", "tok"]),
                     st.text(max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 3)), inner, max_size=3)),
    max_leaves=8)


def _has(node: object, step: object) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and step < len(node)


def _mutate(document: dict, path: tuple, value: object) -> None:
    node: Any = document
    for step in path[:-1]:
        if not _has(node, step):
            return  # an earlier change replaced this branch
        node = node[step]
    if isinstance(node, dict) or _has(node, path[-1]):
        node[path[-1]] = value


def test_the_full_document_is_valid():
    assert parse_config(copy.deepcopy(FULL)).webhook is not None


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(PATHS), _VALUES), min_size=1, max_size=3))
def test_any_change_gives_a_config_or_a_config_error(changes):
    """Bad input never crashes validation: a valid document with values anywhere replaced by
    anything gives ConfigError (naming a key) or a Config."""
    document = copy.deepcopy(FULL)
    for path, value in changes:
        _mutate(document, path, value)
    try:
        config = parse_config(document)
    except ConfigError as exc:
        assert str(exc).strip()
    else:
        assert isinstance(config, Config)
