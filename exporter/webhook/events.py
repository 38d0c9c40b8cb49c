"""Unpod's webhook deliveries, read strictly and narrowly into events.

The platform (``varun-ag1/unpod``, ``super_services/orchestration/webhook/webhook_handler.py``
and ``calls_cron.py``) POSTs the finished task's document: ``task_id``, ``status``,
``assignee`` (the agent handle), ``output`` (with ``post_call_data.summary.status``, the call
outcome) and much personal data besides. Live call events (``super/core/voice/common/common.py``
``send_web_notification``) are ``{"event", "status", "data": {call_id, task_id, config: {agent_id,
...}, start_time, end_time, contact_number, transcript, ...}}``.

Only the fields named above are read; nothing else of a payload leaves this module, so the
phone numbers, names, transcripts and recordings in it are never kept, logged or exported.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the name rule of statuses and outcomes
OTHER = "other"  # a value that breaks the name rule, or one past a cap
UNKNOWN_OUTCOME = "unknown"
MAX_CALL_SECONDS = 24 * 3600.0  # a longer "call" is two clocks disagreeing, not a call
_OUTCOME_SEPARATORS = re.compile(r"[^a-z0-9]+")


class NotAnEvent(ValueError):
    """The body is not JSON, or not a task document or call event. The message names what
    is wrong, never a value from the body."""


@dataclass(frozen=True)
class TaskFinished:
    task_id: str = ""
    agent: str = ""  # the task's assignee, "" when absent
    status: str = ""
    outcome: str = UNKNOWN_OUTCOME

    def dedup_key(self) -> bytes:
        return _digest("task", self.task_id, self.status)


@dataclass(frozen=True)
class CallEvent:
    call_id: str = ""  # or a digest of the body when the event names no call
    agent: str = ""  # data.config.agent_id, "" when absent
    event: str = ""
    duration: float | None = None  # seconds, call_hang_up events only

    def dedup_key(self) -> bytes:
        return _digest("call", self.call_id, self.event)


Event = TaskFinished | CallEvent


def _digest(*parts: str) -> bytes:
    """A short fixed-size key: the de-duplication memory holds digests, never payload ids."""
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"),
                           digest_size=16).digest()


def name(value: object) -> str:
    """A label value under the name rule: the value itself, or ``other``."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return value
    return OTHER


def outcome(value: object) -> str:
    """``Call Back`` -> ``call_back``: lower-cased, each run of other characters one ``_``;
    ``unknown`` when absent or empty, ``other`` when still too long."""
    if not isinstance(value, str) or not value.strip():
        return UNKNOWN_OUTCOME
    return name(_OUTCOME_SEPARATORS.sub("_", value.lower()))


def _field(document: object, *path: str) -> object:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _agent(value: object) -> str:
    return "" if value is None or value == "" else name(value)


def _time(value: object) -> datetime | float | None:
    """The platform sends ``str(datetime)`` (``2025-01-31 10:00:00.123456``, naive),
    ISO 8601, ``"None"``, or now and then epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value) if math.isfinite(value) and value > 0 else None
        except OverflowError:  # a JSON integer too large for a float
            return None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def call_duration(start: object, end: object) -> float | None:
    """End minus start in seconds; None when either is unreadable, they are of different
    kinds (naive and aware, text and epoch), or the result is negative or absurd (the
    platform mixes ``datetime.now()`` and ``utcnow()``)."""
    first, last = _time(start), _time(end)
    try:
        if isinstance(first, datetime) and isinstance(last, datetime):
            seconds = (last - first).total_seconds()
        elif isinstance(first, float) and isinstance(last, float):
            seconds = last - first
        else:
            return None
    except TypeError:  # naive against aware
        return None
    return seconds if 0 <= seconds <= MAX_CALL_SECONDS else None


def _call_event(document: dict[str, Any], body: bytes) -> CallEvent:
    event = document["event"]
    if not isinstance(event, str) or not event:
        raise NotAnEvent("event: expected a non-empty string")
    data = document.get("data")
    data = data if isinstance(data, dict) else {}
    call_id = data.get("call_id") or data.get("task_id")
    if not isinstance(call_id, str) or not call_id:
        # A call event naming no call (a handover's summary may replace ``data``): its own
        # bytes identify its re-sends.
        call_id = hashlib.blake2b(body, digest_size=16).hexdigest()
    label = name(event)
    duration = None
    if label == "call_hang_up":
        duration = call_duration(data.get("start_time"), data.get("end_time"))
    return CallEvent(call_id=call_id, agent=_agent(_field(data, "config", "agent_id")),
                     event=label, duration=duration)


def _task(document: dict[str, Any]) -> TaskFinished:
    task_id, status = document.get("task_id"), document.get("status")
    if not isinstance(task_id, str) or not task_id:
        raise NotAnEvent("task_id: expected a non-empty string")
    if not isinstance(status, str) or not status:
        raise NotAnEvent("status: expected a non-empty string")
    return TaskFinished(
        task_id=task_id, agent=_agent(document.get("assignee")), status=name(status),
        outcome=outcome(_field(document, "output", "post_call_data", "summary", "status")))


def parse_event(body: bytes) -> Event:
    """A delivery's body as an event; raises NotAnEvent."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise NotAnEvent("body is not JSON") from None
    if not isinstance(document, dict):
        raise NotAnEvent("body is not a JSON object")
    if "event" in document:
        return _call_event(document, body)
    if "task_id" in document:
        return _task(document)
    raise NotAnEvent("neither a task document (task_id) nor a call event (event)")
