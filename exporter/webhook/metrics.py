"""The receiver's metrics, ``unpod_webhook_*``: what deliveries said and what the receiver
did with each request. Counted in the event loop, collected with the exposition's other
non-target metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.config.webhook import Place
from exporter.webhook.events import OTHER, CallEvent, Event, TaskFinished
from exporter.webhook.labels import MAX_AGENTS, MAX_VALUES, LabelCap

RESULTS = ("accepted", "duplicate", "unauthorized", "too_large", "invalid", "rate_limited")
# Voice calls: from a missed ring to a long consultation.
DURATION_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0,
                    3600.0)
MAX_SERIES = 2_000  # per family; further label sets fold into agent/status/outcome "other"


class _Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
        self.count += 1
        self.total += seconds

    def samples(self) -> list[tuple[str, float]]:
        pairs = [(floatToGoString(bound), float(n))  # type: ignore[no-untyped-call]
                 for bound, n in zip(DURATION_BUCKETS, self.buckets, strict=True)]
        return [*pairs, ("+Inf", float(self.count))]


def _bounded(table: Mapping[tuple[str, ...], object], labels: tuple[str, ...],
             keep: int) -> tuple[str, ...]:
    """``labels`` while the family has room, else its first ``keep`` labels (org, space)
    and ``other`` for the rest: a bound on series whatever the caps multiply to."""
    if labels in table or len(table) < MAX_SERIES:
        return labels
    return labels[:keep] + (OTHER,) * (len(labels) - keep)


class WebhookMetrics(Collector):
    def __init__(self, agents: Mapping[str, Place] | None = None,
                 forbidden: Callable[[], Collection[str]] = frozenset,
                 clock: Callable[[], float] = time.time) -> None:
        self._places = dict(agents or {})
        self._clock = clock
        self._agents = LabelCap(MAX_AGENTS, keep=self._places, forbidden=forbidden)
        self._outcomes = LabelCap(MAX_VALUES, forbidden=forbidden)
        self._statuses = LabelCap(MAX_VALUES, forbidden=forbidden)
        self._events = LabelCap(MAX_VALUES, forbidden=forbidden)
        self.requests = dict.fromkeys(RESULTS, 0)
        self._tasks: dict[tuple[str, ...], int] = {}
        self._calls: dict[tuple[str, ...], int] = {}
        self._durations: dict[tuple[str, ...], _Histogram] = {}
        self._last: dict[tuple[str, ...], float] = {}

    def place(self, agent: str) -> Place | None:
        """The mapped org and space of an agent handle, None when unmapped."""
        return self._places.get(agent)

    def count_request(self, result: str) -> None:
        self.requests[result] += 1

    def record(self, event: Event) -> None:
        """Count an accepted event under capped labels."""
        place = self._places.get(event.agent)
        org, space = (place.org, place.space) if place is not None else ("", "")
        who = (org, space, self._agents.label(event.agent))
        if isinstance(event, TaskFinished):
            labels = _bounded(self._tasks, (*who, self._statuses.label(event.status),
                                            self._outcomes.label(event.outcome)), 2)
            self._tasks[labels] = self._tasks.get(labels, 0) + 1
        elif isinstance(event, CallEvent):
            labels = _bounded(self._calls, (*who, self._events.label(event.event)), 2)
            self._calls[labels] = self._calls.get(labels, 0) + 1
            if event.duration is not None:
                key = _bounded(self._durations, who, 2)
                self._durations.setdefault(key, _Histogram()).observe(event.duration)
        self._last[_bounded(self._last, who, 2)] = self._clock()

    def collect(self) -> Iterator[Metric]:
        who = ["org", "space", "agent"]
        tasks = CounterMetricFamily(
            "unpod_webhook_tasks_finished", "Task-finished webhook deliveries from Unpod.",
            labels=[*who, "status", "outcome"])
        for labels, count in self._tasks.items():
            tasks.add_metric(list(labels), count)
        calls = CounterMetricFamily("unpod_webhook_call_events",
                                    "Live call events delivered by Unpod's webhook.",
                                    labels=[*who, "event"])
        for labels, count in self._calls.items():
            calls.add_metric(list(labels), count)
        durations = HistogramMetricFamily(
            "unpod_webhook_call_duration_seconds",
            "Call durations from call_hang_up events (end minus start).", labels=who)
        for labels, histogram in self._durations.items():
            durations.add_metric(list(labels), histogram.samples(), histogram.total)
        last = GaugeMetricFamily("unpod_webhook_last_event_timestamp_seconds",
                                 "When the receiver last accepted an event of this agent.",
                                 labels=who)
        for labels, when in self._last.items():
            last.add_metric(list(labels), when)
        requests = CounterMetricFamily("unpod_webhook_requests",
                                       "Webhook requests by what the receiver did with them.",
                                       labels=["result"])
        for result, count in self.requests.items():
            requests.add_metric([result], count)
        yield from (tasks, calls, durations, last, requests)
