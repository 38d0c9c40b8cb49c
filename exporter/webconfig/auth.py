"""Basic auth: bcrypt checks on a pool of their own, with caches and equal cost for users that
do not exist."""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import hmac
import secrets
from collections import Counter
from collections.abc import Callable, Mapping

import bcrypt

MAX_PASSWORD_BYTES = 72  # bcrypt ignores what follows; refuse instead of truncating
REALM = 'Basic realm="unpod-exporter", charset="UTF-8"'


class AuthBusy(Exception):
    """Too many different password checks are queued: answer 429 at once."""


def bcrypt_cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def credentials(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) of a ``Basic`` Authorization header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class _Cache:
    """A bounded set of keyed fingerprints, emptied when full."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: set[bytes] = set()

    def __contains__(self, item: bytes) -> bool:
        return item in self._items

    def add(self, item: bytes) -> None:
        if len(self._items) >= self._size:
            self._items.clear()
        self._items.add(item)


class BasicAuth:
    """bcrypt on one worker thread of its own (never the default executor, which the
    exposition's assembly uses). Results are cached under a keyed hash of user, password and
    stored hash, successes and failures apart (a flood of wrong passwords cannot evict the
    valid ones); concurrent checks of the same credentials share one bcrypt run, and at most
    ``max_pending`` different ones wait, further ones get AuthBusy. An unknown user is checked
    against a dummy hash of the cost most configured users have."""

    def __init__(self, users: Callable[[], Mapping[str, bytes]], cache_size: int = 1024,
                 max_pending: int = 8) -> None:
        self._users = users
        self._key = secrets.token_bytes(32)
        self._ok = _Cache(cache_size)
        self._refused = _Cache(cache_size)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "bcrypt")
        self._max_pending = max_pending
        self._running: dict[bytes, asyncio.Future[bool]] = {}
        self._dummies: dict[int, bytes] = {}

    def _verify(self, password: bytes, stored: bytes | None,
                users: Mapping[str, bytes]) -> bool:
        """In the pool."""
        if stored is None:
            costs = Counter(bcrypt_cost(h) for h in users.values())
            cost = min(costs, key=lambda c: (-costs[c], c)) if costs else 10
            if cost not in self._dummies:
                self._dummies[cost] = bcrypt.hashpw(secrets.token_bytes(16),
                                                    bcrypt.gensalt(cost))
            bcrypt.checkpw(password, self._dummies[cost])
            return False
        return bcrypt.checkpw(password, stored)

    async def check(self, user: str, password: bytes) -> bool:
        users = self._users()
        stored = users.get(user)
        if len(password) > MAX_PASSWORD_BYTES:
            return False
        fingerprint = hmac.new(self._key, b"\0".join([user.encode(), password, stored or b""]),
                               hashlib.sha256).digest()
        if fingerprint in self._ok:
            return True
        if fingerprint in self._refused:
            return False
        running = self._running.get(fingerprint)
        if running is None:
            if len(self._running) >= self._max_pending:
                raise AuthBusy
            running = asyncio.get_running_loop().run_in_executor(
                self._pool, self._verify, password, stored, users)
            self._running[fingerprint] = running
            running.add_done_callback(lambda _: self._running.pop(fingerprint, None))
        ok = await asyncio.shield(running)
        (self._ok if ok else self._refused).add(fingerprint)
        return ok

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
