"""The YAML config: loaded, shaped and checked into frozen, typed objects.

Every error names the key at fault (``orgs[0].spaces[1].name: ...``) so that a user can fix a
config without reading the source. Nothing here talks to the network, and validation reads no
file: the loader reads token sources and TLS files in a last step of its own.

Where things are:

- ``fields.py``: field parsers ``(value, key) -> value`` (durations, integers, URLs, ...).
- ``section.py``: the generic section parser. A frozen dataclass is a section's field table:
  ``option(default, parse)``, ``required(parse)`` and ``keys(names, read, default)`` declare
  each key, its parser and its default once, and the unknown-key check comes from the same
  table.
- one module per section: ``api.py``, ``poll.py``, ``orgs.py``, ``discovery.py``,
  ``webhook.py``;
  ``sources.py`` for what a config points at (token sources, TLS files).
- ``model.py``: the root section ``Config``; ``checks.py``: named cross-checks;
  ``loader.py``: YAML -> shape -> cross-checks -> sources.

Adding a section (say ``backlog:``):

1. ``exporter/config/backlog.py`` with its dataclass, each field an ``option(...)``::

       @dataclass(frozen=True)
       class BacklogConfig:
           enabled: bool = option(True, boolean)
           interval: float = option(600.0, parse_duration)
           page_size: int = option(50, between(1, 200))  # a new field parser in fields.py

2. one line in ``Config`` (``model.py``), after the others and with a default:
   ``backlog: BacklogConfig = option(BacklogConfig(), section(BacklogConfig))``, or
   ``optional_section(...)`` with ``None`` for a section that is off unless given.
3. rules that relate it to other sections are functions in ``checks.py`` (or in the new
   module), appended to ``CHECKS``; a key inside an existing section (``orgs[].backlog``)
   is one more ``option(...)`` line in that section's dataclass.
4. re-export its dataclass here, and test its messages in ``tests/test_config.py``.
"""

from exporter.config.api import AUTH_SCHEMES, DEFAULT_BASE_URL, ApiConfig, ApiTlsConfig
from exporter.config.backlog import BacklogConfig
from exporter.config.discovery import DiscoveryConfig, NameFilter
from exporter.config.fields import ConfigError, parse_duration
from exporter.config.loader import (
    DEFAULT_CONFIG_PATH,
    check_sources,
    check_token_sources,
    load_config,
    parse_config,
    parse_config_text,
)
from exporter.config.model import Config
from exporter.config.orgs import OrgConfig, SpaceConfig
from exporter.config.poll import PollConfig
from exporter.config.sources import TOKEN_KINDS, TokenKind, TokenSource
from exporter.config.webhook import Place, WebhookConfig

__all__ = [
    "AUTH_SCHEMES",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG_PATH",
    "TOKEN_KINDS",
    "ApiConfig",
    "ApiTlsConfig",
    "BacklogConfig",
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "NameFilter",
    "OrgConfig",
    "Place",
    "PollConfig",
    "SpaceConfig",
    "TokenKind",
    "TokenSource",
    "WebhookConfig",
    "check_sources",
    "check_token_sources",
    "load_config",
    "parse_config",
    "parse_config_text",
    "parse_duration",
]
