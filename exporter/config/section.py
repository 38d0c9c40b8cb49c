"""The generic section parser: a frozen dataclass is a section's field table.

Each field says how it is read (``option``, ``required``, ``keys``), so the key, its parser
and its default are written once, in the dataclass; the allowed keys of the section (for the
unknown-key check) come from the same table. ``parse_section`` checks the shape of one mapping
and nothing else: rules that relate two keys are named cross-checks (``checks.py``), run after
the whole document has its shape, and files are read after that (``loader.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from exporter.config.fields import ConfigError, type_name

T = TypeVar("T")
S = TypeVar("S")
_READER = "exporter.config.reader"
_ABSENT: Any = object()  # a reader's "not given": the dataclass default applies


def join(key: str, name: str) -> str:
    """``orgs[0]`` + ``handle`` -> ``orgs[0].handle``; at the top level, just ``handle``."""
    return f"{key}.{name}" if key else name


@dataclass(frozen=True)
class Reader:
    """How one field is read from its section: the keys it owns and a function of the raw
    mapping, the section's key and the field's name that returns the value or ``_ABSENT``."""

    keys: tuple[str, ...] | None  # None: the field's own name
    read: Callable[[Mapping[str, Any], str, str], Any]


def _field(reader: Reader, default: Any = dataclasses.MISSING, shown: bool = True) -> Any:
    return dataclasses.field(default=default, repr=shown, metadata={_READER: reader})


def option(default: T, parse: Callable[[Any, str], T], *, shown: bool = True) -> T:
    """A key that may be left out; ``parse(value, key)`` when given, ``default`` otherwise.
    ``shown=False`` keeps a secret out of ``repr``."""

    def read(raw: Mapping[str, Any], key: str, name: str) -> Any:
        return parse(raw[name], join(key, name)) if name in raw else _ABSENT

    return cast(T, _field(Reader(None, read), default, shown))


def required(parse: Callable[[Any, str], T], *, shown: bool = True) -> T:
    """A key that must be given (``KEY: required`` otherwise). Declare required fields before
    the others: the dataclass has no default for them."""

    def read(raw: Mapping[str, Any], key: str, name: str) -> Any:
        if name not in raw:
            raise ConfigError(f"{join(key, name)}: required")
        return parse(raw[name], join(key, name))

    return cast(T, _field(Reader(None, read), shown=shown))


def keys(names: tuple[str, ...], read: Callable[[Mapping[str, Any], str], T | None],
         default: T) -> T:
    """One field spelled by several keys (``token`` / ``token_env`` / ``token_file``):
    ``read(raw, section_key)`` sees the whole section and returns None when none is given."""

    def reader(raw: Mapping[str, Any], key: str, name: str) -> Any:
        value = read(raw, key)
        return _ABSENT if value is None else value

    return cast(T, _field(Reader(names, reader), default))


def mapping(value: object, key: str, allowed: AbstractSet[str]) -> Mapping[str, Any]:
    """A mapping whose keys are all ``allowed``; null is an empty mapping."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {type_name(value)}")
    for name in value:
        if not isinstance(name, str) or name not in allowed:
            raise ConfigError(f"{join(key, str(name))}: unknown key "
                              f"(allowed: {', '.join(sorted(allowed))})")
    return value


_Table = tuple[frozenset[str], tuple[tuple[str, Reader], ...]]
_TABLES: dict[type[Any], _Table] = {}  # built once per section class: 50,000 orgs reuse it


def _table(cls: type[Any]) -> _Table:
    table = _TABLES.get(cls)
    if table is None:
        readers = tuple((f.name, f.metadata[_READER]) for f in dataclasses.fields(cls)
                        if _READER in f.metadata)
        allowed = frozenset(name for field, reader in readers
                            for name in reader.keys or (field,))
        table = _TABLES[cls] = (allowed, readers)
    return table


def allowed_keys(cls: type[Any]) -> frozenset[str]:
    return _table(cls)[0]


def parse_section(cls: type[S], value: object, key: str) -> S:
    """Read one section (``value`` at ``key``) into ``cls``, its fields in declared order."""
    allowed, readers = _table(cls)
    raw = mapping(value, key, allowed)
    given: dict[str, Any] = {}
    for name, reader in readers:
        got = reader.read(raw, key, name)
        if got is not _ABSENT:
            given[name] = got
    return cls(**given)


def section(cls: type[S]) -> Callable[[object, str], S]:
    """A nested section as a field parser; null or absent gives its defaults."""
    return lambda value, key: parse_section(cls, value, key)


def optional_section(cls: type[S]) -> Callable[[object, str], S | None]:
    """A nested section that is off (None) unless given; ``KEY: {}`` turns it on."""
    return lambda value, key: None if value is None else parse_section(cls, value, key)


def list_of(cls: type[S]) -> Callable[[object, str], tuple[S, ...]]:
    """A list of sections, each at ``KEY[i]``; null is an empty list."""

    def parse(value: object, key: str) -> tuple[S, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type_name(value)}")
        return tuple(parse_section(cls, item, f"{key}[{index}]")
                     for index, item in enumerate(value))

    return parse
