"""From a file to a checked Config, in four steps that each finish before the next:
YAML (strict), shape (``section.parse_section`` over the root), named cross-checks
(``checks.py``), and last the files and variables the config points at (``check_sources``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import yaml

from exporter.config.checks import run_checks
from exporter.config.fields import ConfigError
from exporter.config.model import Config
from exporter.config.section import allowed_keys, mapping, parse_section

DEFAULT_CONFIG_PATH = "/etc/unpod-exporter/config.yaml"


if TYPE_CHECKING or not getattr(yaml, "__with_libyaml__", False):
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = yaml.CSafeLoader


class _StrictLoader(_SafeLoader):
    """SafeLoader (libyaml's when there: 10,000 targets load 10x faster) that refuses
    duplicate keys, which plain YAML silently overwrites."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"line {line}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


class _NotPlain(Exception):
    """The document uses something the plain reader leaves to PyYAML's loader."""


_STR_TAG = "tag:yaml.org,2002:str"


class _Events(Protocol):
    """The loader's event side, as the plain reader uses it (PyYAML's is untyped)."""

    yaml_constructors: dict[Any, Any]

    def get_event(self) -> yaml.Event: ...

    def check_event(self, *choices: type[yaml.Event]) -> bool: ...

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str: ...


def _plain_node(loader: _Events) -> object:
    """The next node of the event stream as Python data, built as its events come."""
    event = loader.get_event()
    if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
        raise _NotPlain  # anchors and aliases share objects: PyYAML's business
    if getattr(event, "tag", None) is not None:
        raise _NotPlain  # an explicit tag, "!" included
    if isinstance(event, yaml.ScalarEvent):
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR_TAG:
            return event.value
        construct = loader.yaml_constructors.get(tag)
        if construct is None:
            raise _NotPlain  # the merge key "<<", "=": PyYAML's own verdict
        # no marks: an error goes to the strict loader, which says where
        return construct(loader, yaml.ScalarNode(tag, event.value, None, None))
    if isinstance(event, yaml.SequenceStartEvent):
        items = []
        while not loader.check_event(yaml.SequenceEndEvent):
            items.append(_plain_node(loader))
        loader.get_event()
        return items
    if isinstance(event, yaml.MappingStartEvent):
        mapping: dict[Any, Any] = {}
        while not loader.check_event(yaml.MappingEndEvent):
            if not loader.check_event(yaml.ScalarEvent):
                raise _NotPlain  # a collection as a key
            key = _plain_node(loader)
            if key in mapping:
                raise _NotPlain  # a duplicate key: refused with its line by the strict loader
            mapping[key] = _plain_node(loader)
        loader.get_event()
        return mapping
    raise _NotPlain


def _plain_load(text: str) -> object:
    """One YAML document as Python data, or _NotPlain."""
    strict = _StrictLoader(text)
    loader = cast(_Events, strict)
    try:
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # document start
        data = _plain_node(loader)
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            raise _NotPlain  # a second document
        return data
    finally:
        strict.dispose()


def load_yaml(text: str) -> Any:
    """The YAML document of a config, as ``yaml.load`` with the strict loader gives it.

    Plain documents (no anchor, alias or explicit tag: what configs are) are built from the
    event stream as it comes: ``yaml.load`` first composes every node of the document, each
    with two marks, before it builds any value, and that graph (about 100 MiB for 50,000
    spaces) left the heap at its high-water mark for good (fragments of it are pinned by the
    strings kept). Anything else, or any error, goes through ``yaml.load``, whose result or
    error is the one that counts."""
    try:
        return _plain_load(text)
    except Exception:  # whatever it was, the strict loader below gives the verdict
        return yaml.load(text, Loader=_StrictLoader)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a config file, including its token sources."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"config file {path}: cannot read: {reason}") from None
    return parse_config_text(text, str(path))


def parse_config_text(text: str, source: str = "config") -> Config:
    """Parse and validate YAML text, then read what it points at (tokens, TLS files)."""
    try:
        raw = load_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}:{where}: invalid YAML: {problem}") from None
    config = parse_config(raw)
    check_sources(config)
    return config


def parse_config(raw: object) -> Config:
    """Validate an already-parsed YAML document: shape, then cross-checks. Reads no file and
    no environment variable."""
    top = mapping(raw, "", allowed_keys(Config))
    config = parse_section(Config, top, "")
    run_checks(config, frozenset(top))
    return config


def check_sources(config: Config) -> None:
    """Raise ConfigError for the first TLS file or token source that cannot be used now."""
    config.api.tls.ssl_context()
    check_token_sources(config)


def check_token_sources(config: Config) -> None:
    """Raise ConfigError for the first token source that cannot give a token now."""
    # in config order, so that the same file always reports the same source first
    sources = dict.fromkeys(config.token_for(org) for org in config.orgs)
    if config.discovery is not None:
        sources[config.api.token] = None  # discovered orgs use the api token
    if config.webhook is not None:
        sources[config.webhook.secret] = None
    for source in sources:
        source.read()
