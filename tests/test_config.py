"""Config parsing: every error names the key at fault."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, load_config, parse_config_text, parse_duration

VALID = """
api:
  base_url: https://unpod.example/api/v2/platform/
  token: tok-abc
  timeout: 5s
  max_requests_per_minute: 100
poll:
  interval: 1m
  concurrency: 2
  max_staleness: 10m
orgs:
  - handle: acme
    interval: 30s
    spaces:
      - name: outbound-sales
        space_token: sp_1
  - handle: globex
    org_wide: false
    token: tok-globex
    spaces:
      - name: survey
        space_token: sp_2
"""


def test_valid_config_is_typed_and_defaults_apply():
    config = parse_config_text(VALID)
    assert config.api.base_url == "https://unpod.example/api/v2/platform"
    assert config.api.timeout == 5.0
    assert config.poll.interval == 60.0 and config.poll.max_staleness == 600.0
    acme, globex = config.orgs
    assert acme.interval == 30.0 and acme.org_wide is True
    assert acme.spaces[0].name == "outbound-sales"
    assert globex.org_wide is False
    assert config.token_for(globex).read() == "tok-globex"
    assert config.token_for(acme).read() == "tok-abc"
    assert "tok-abc" not in repr(config) and "sp_1" not in repr(config)


def test_defaults_when_only_orgs_are_given(monkeypatch):
    monkeypatch.setenv("UNPOD_API_TOKEN", "tok-env")
    config = parse_config_text("orgs: [{handle: acme}]")
    assert config.api.base_url == "https://unpod.ai/api/v2/platform"
    assert config.api.token.read() == "tok-env"
    assert (config.poll.interval, config.poll.concurrency, config.poll.max_staleness) == (
        60.0, 8, 300.0)


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), (45, 45),
    ("2.5", 2.5), (0.25, 0.25),
])
def test_durations(text, seconds):
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "-1s", 0, -3, True, None, [1], "1x"])
def test_bad_durations_name_the_key(bad):
    with pytest.raises(ConfigError, match=r"^poll\.interval: "):
        parse_duration(bad, "poll.interval")


ERRORS = [
    ("orgs: [{handle: acme}]\nextra: 1", "extra: unknown key"),
    ("orgs: [{handle: acme, colour: red}]", r"orgs\[0\]\.colour: unknown key"),
    ("api: {timeout: 5s, tokn: x}\norgs: [{handle: a}]", r"api\.tokn: unknown key"),
    ("orgs: [{handle: acme, spaces: [{name: a, space_token: s1}, {name: a, space_token: s2}]}]",
     r"orgs\[0\]\.spaces\[1\]\.name: duplicate space name 'a'"),
    ("orgs: [{handle: acme}, {handle: acme}]", r"orgs\[1\]\.handle: duplicate org handle"),
    ("orgs: [{handle: acme, spaces: [{name: a}]}]",
     r"orgs\[0\]\.spaces\[0\]\.space_token: required"),
    ("orgs: [{handle: 42}]", r"orgs\[0\]\.handle: expected a string"),
    ("orgs: [{handle: 'a b'}]", r"orgs\[0\]\.handle: invalid value"),
    ("orgs: [{handle: acme, org_wide: maybe}]", r"orgs\[0\]\.org_wide: expected true or false"),
    ("poll: {concurrency: 0}\norgs: [{handle: a}]", r"poll\.concurrency: must be at least 1"),
    ("poll: {concurrency: '8'}\norgs: [{handle: a}]", r"poll\.concurrency: expected an integer"),
    ("poll: {interval: 10m}\norgs: [{handle: a}]", r"poll\.interval: 600s .*exceeds"),
    ("orgs: [{handle: a, interval: 1h}]", r"orgs\[0\]\.interval: 3600s exceeds"),
    ("api: {base_url: 'ftp://x'}\norgs: [{handle: a}]", r"api\.base_url: expected an http"),
    ("api: {token: a, token_env: B}\norgs: [{handle: a}]", r"api: use only one of"),
    ("orgs: [{handle: a, token: ''}]", r"orgs\[0\]\.token: must be a non-empty string"),
    ("orgs: []", "orgs: at least one organization"),
    ("api: {}", "orgs: required"),
    ("orgs: {handle: a}", "orgs: expected a list"),
    ("- just\n- a list", "config: expected a mapping"),
    ("orgs: [{handle: a, org_wide: false}]", r"orgs\[0\]: org_wide is false and no spaces"),
    ("orgs: [{handle: a}\n", "invalid YAML"),
    ("orgs: [{handle: a}]\norgs: [{handle: b}]", "line 2: duplicate key 'orgs'"),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_config_errors_name_the_key(text, message, monkeypatch):
    monkeypatch.setenv("UNPOD_API_TOKEN", "tok")
    with pytest.raises(ConfigError, match=message):
        parse_config_text(text)


def test_token_env_missing(monkeypatch):
    monkeypatch.delenv("UNPOD_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"^api\.token_env: environment variable "
                                          r"UNPOD_API_TOKEN is unset or empty"):
        parse_config_text("orgs: [{handle: a}]")


def test_token_file_missing_and_empty(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"^orgs\[0\]\.token_file: cannot read .*nope"):
        parse_config_text(f"orgs: [{{handle: a, token_file: {missing}}}]")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"^orgs\[0\]\.token_file: file .* is empty"):
        parse_config_text(f"orgs: [{{handle: a, token_file: {empty}}}]")
    good = tmp_path / "good"
    good.write_text("tok-file\n")
    config = parse_config_text(f"orgs: [{{handle: a, token_file: {good}}}]")
    assert config.token_for(config.orgs[0]).read() == "tok-file"


def test_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_example_config_is_valid(monkeypatch, tmp_path):
    monkeypatch.setenv("UNPOD_API_TOKEN", "tok")
    from pathlib import Path
    text = (Path(__file__).parent.parent / "config.example.yaml").read_text()
    (tmp_path / "acme").write_text("tok-acme")
    config = parse_config_text(text.replace("/run/secrets/unpod-acme", str(tmp_path / "acme")))
    assert config.orgs


# The plain reader against the strict loader: the same data, the same verdict, on documents
# it builds itself and on those it hands over (anchors, tags, several documents, errors).
SAME_AS_THE_STRICT_LOADER = [
    VALID, "", "# only a comment\n", "---\n", "a: 1\n", "- 1\n- x\n", "x\n",
    "a: [1, 2.5, -3, 0x1f, 1e3, .inf, null, ~, true, no, 'yes', \"q\", 2020-01-02]\n",
    "t: 2001-12-14t21:59:43.10-05:00\nempty:\nnested: {a: {b: [{c: d}]}}\n",
    "1: one\n2.5: two\nnull: three\ntrue: four\n",
    "a: &x {b: 1}\nc: *x\n", "a: !!str 1\n", "a: !custom 1\n", "<<: {a: 1}\n", "a: =\n",
    "a: 1\n---\nb: 2\n", "a: 1\na: 2\n", "a:\n  b: 1\n  b: 2\n", "? [a]\n: 1\n", "a: [1\n",
    "a: b: c\n", "\t- x\n", "{a: 1, a: 1}\n", "a: 2001-13-45\n", "x: 1\n... \n",
]


@pytest.mark.parametrize("text", SAME_AS_THE_STRICT_LOADER)
def test_the_plain_reader_gives_what_the_strict_loader_gives(text):
    import yaml

    from exporter.config.loader import _StrictLoader, load_yaml

    def outcome(load):
        try:
            return "ok", load()
        except Exception as exc:  # the verdict, compared as it is
            return type(exc), str(exc)

    expected = outcome(lambda: yaml.load(text, Loader=_StrictLoader))
    assert outcome(lambda: load_yaml(text)) == expected


def test_a_plain_config_is_built_from_the_events_without_the_strict_loader():
    from exporter.config.loader import _NotPlain, _plain_load
    assert _plain_load(VALID)["orgs"][1]["spaces"][0] == {"name": "survey",
                                                          "space_token": "sp_2"}
    with pytest.raises(_NotPlain):
        _plain_load("a: &x 1\nb: *x\n")  # left to the strict loader
