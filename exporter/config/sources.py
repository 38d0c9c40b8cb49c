"""What the config points at outside itself: token sources and TLS files.

Validation only records where they are; reading them is a later, separate step
(``loader.check_sources`` at load time, and the token reader and client at run time), so that
a config's shape can be checked without touching the file system.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from exporter.config.fields import ConfigError
from exporter.config.section import join

TokenKind = Literal["token", "token_env", "token_file"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("token", "token_env", "token_file")
# systemd's LoadCredential= puts a private copy of a secret in a directory whose path only the
# running service knows (from this variable), so a token_file may start with it.
CREDENTIALS_PREFIX = "$CREDENTIALS_DIRECTORY/"


@dataclass(frozen=True)
class TokenSource:
    """Where an API token comes from. The secret itself is never part of ``repr``."""

    kind: TokenKind
    ref: str = field(repr=False)  # the token itself, an environment variable, or a path
    key: str = field(compare=False)  # config key, for error messages

    def describe(self) -> str:
        if self.kind == "token":
            return "inline token"
        return f"{self.kind} {self.ref}"

    def file_path(self) -> str | None:
        """A token_file's path now, ``$CREDENTIALS_DIRECTORY/`` resolved; None when it is
        not a file, or names that directory while it is unset."""
        if self.kind != "token_file":
            return None
        if not self.ref.startswith(CREDENTIALS_PREFIX):
            return self.ref
        directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
        if not directory:
            return None
        return os.path.join(directory, self.ref.removeprefix(CREDENTIALS_PREFIX))

    def read(self) -> str:
        """Return the current token; raises ConfigError naming the key when unusable."""
        path = self.file_path()
        if self.kind == "token":
            token = self.ref
        elif self.kind == "token_env":
            token = os.environ.get(self.ref, "")
            if not token.strip():
                raise ConfigError(f"{self.key}: environment variable {self.ref} is unset or empty")
        elif path is None:
            raise ConfigError(f"{self.key}: $CREDENTIALS_DIRECTORY is unset (systemd sets it "
                              "for a service with LoadCredential=)")
        else:
            try:
                token = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"{self.key}: cannot read {self.ref}: {reason}") from None
            if not token.strip():
                raise ConfigError(f"{self.key}: file {self.ref} is empty")
        token = token.strip()
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            raise ConfigError(f"{self.key}: token must be one printable word without spaces")
        return token


def token_source(raw: Mapping[str, Any], key: str) -> TokenSource | None:
    """The one of ``token`` / ``token_env`` / ``token_file`` a section gives, if any."""
    given = [kind for kind in TOKEN_KINDS if kind in raw]
    if len(given) > 1:
        raise ConfigError(f"{key}: use only one of token, token_env, token_file (got {given})")
    if not given:
        return None
    kind = given[0]
    where = join(key, kind)
    value = raw[kind]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string")
    return TokenSource(kind, value.strip() if kind != "token" else value, where)


def client_ssl_context(key: str, ca_file: str | None, insecure_skip_verify: bool,
                       cert_file: str | None, key_file: str | None) -> ssl.SSLContext | bool:
    """The ``ssl`` argument for aiohttp, reading the files now; raises ConfigError naming the
    key (``KEY.ca_file``, ``KEY.cert_file``) at fault."""
    if not (ca_file or cert_file):
        return not insecure_skip_verify  # aiohttp's default verification, or none
    context = ssl.create_default_context()
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{key}.ca_file: cannot use {ca_file}: "
                              f"{_ssl_reason(exc)}") from None
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{key}.cert_file: cannot use {cert_file} with "
                              f"{key_file or 'its key'}: {_ssl_reason(exc)}") from None
    return context


def _ssl_reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return exc.strerror or type(exc).__name__
