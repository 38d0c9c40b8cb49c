"""A prometheus_client custom collector that turns the store's snapshots into metric families."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter import __version__
from exporter.analytics import Analytics
from exporter.backlog.metrics import BACKLOG_FAMILIES, backlog_samples
from exporter.store import SnapshotStore, TargetState
from exporter.targets import ORG_WIDE, Target, TargetKey

# Per-target families in exposition order: (name, type, help). Counters are named without
# their suffix, as prometheus_client wants: unpod_poll_errors exposes unpod_poll_errors_total.
# The analytics of a space, labels org and space.
SPACE_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("unpod_calls", "gauge", "Total calls of the target (all-time, as recomputed by Unpod)."),
    ("unpod_calls_completed", "gauge", "Completed calls of the target (published shape only)."),
    ("unpod_calls_failed", "gauge", "Failed calls of the target."),
    ("unpod_call_success_ratio", "gauge",
     "Completed calls divided by total calls (0..1; published shape only)."),
    ("unpod_call_average_duration_seconds", "gauge",
     "Average call duration in seconds (published shape only)."),
    ("unpod_calls_by_outcome", "gauge",
     "Calls by outcome, from call_analytics (platform shape only)."),
    ("unpod_tasks", "gauge", "Total tasks across all runs of the target."),
    ("unpod_tasks_by_status", "gauge",
     "Tasks by status, from task_status_breakdown or call_status."),
    ("unpod_task_success_ratio", "gauge", "Completed tasks divided by total tasks (0..1)."),
    ("unpod_tasks_last_progress_timestamp_seconds", "gauge",
     "Unix time at which finished tasks (completed + failed) last grew, or were first seen."),
)
ORG_PREFIX = "unpod_org_"


def org_family(name: str) -> str:
    """The org-wide name of a space family: a total never shares a name with its parts
    (writing_exporters.md), so ``sum(unpod_calls)`` adds spaces only."""
    return ORG_PREFIX + name.removeprefix("unpod_")


# The same analytics of an org-wide target (the organization's totals), label org.
ORG_FAMILIES = tuple((org_family(name), kind, "Org-wide: " + doc.replace(" of the target", ""))
                     for name, kind, doc in SPACE_FAMILIES)
_ORG_NAME = {name: org_family(name) for name, _, _ in SPACE_FAMILIES}
# Health of every target (org-wide ones labelled org alone): they count targets, not totals.
HEALTH_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("unpod_up", "gauge", "1 if the last poll of the target succeeded, else 0."),
    ("unpod_analytics_shape_info", "gauge",
     "The shape of the target's last successful answer: published, platform or none "
     "(data: null)."),
    ("unpod_last_success_timestamp_seconds", "gauge",
     "Unix time of the last successful poll of the target."),
    ("unpod_poll_duration_seconds", "gauge", "Duration of the last poll of the target in seconds."),
    ("unpod_poll_errors", "counter",
     "Failed polls of the target by final reason (retries not counted separately)."),
    *BACKLOG_FAMILIES,
)
TARGET_FAMILIES = SPACE_FAMILIES + ORG_FAMILIES + HEALTH_FAMILIES
_KIND_AND_HELP = {name: (kind, doc) for name, kind, doc in TARGET_FAMILIES}


def target_labels(target: Target) -> dict[str, str]:
    """``org`` always; ``space`` for space targets (org-wide series carry none: their
    analytics have names of their own, ``unpod_org_*``)."""
    if target.space == ORG_WIDE:
        return {"org": target.org}
    return {"org": target.org, "space": target.space}


class _Families:
    """Metric families in a fixed order, filled sample by sample."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, name: str, kind: str, doc: str, labels: dict[str, str], value: float) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = Metric(name, doc, kind)
        sample_name = f"{name}_total" if kind == "counter" else name
        family.samples.append(Sample(sample_name, labels, value))

    def target(self, name: str, labels: dict[str, str], value: float) -> None:
        kind, doc = _KIND_AND_HELP[name]
        self.add(name, kind, doc, labels, value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


# One sample of a target: family, an extra label (name, value) or None, and the value.
TargetSample = tuple[str, tuple[str, str] | None, float]


def _analytics_samples(analytics: Analytics, progress: float | None) -> list[TargetSample]:
    """Every figure the answer carried; one it lacked is absent, never a made-up 0."""
    figures: tuple[tuple[str, float | None], ...] = (
        ("unpod_calls", analytics.total_calls),
        ("unpod_calls_completed", analytics.completed_calls),
        ("unpod_calls_failed", analytics.failed_calls),
        ("unpod_call_success_ratio", analytics.success_ratio),
        ("unpod_call_average_duration_seconds", analytics.avg_duration_seconds),
    )
    samples: list[TargetSample] = [(name, None, v) for name, v in figures if v is not None]
    samples.extend(("unpod_calls_by_outcome", ("outcome", outcome), count)
                   for outcome, count in zip(analytics.outcome_names,
                                             analytics.outcome_counts, strict=True))
    if analytics.total_tasks is not None:
        samples.append(("unpod_tasks", None, analytics.total_tasks))
    samples.extend(("unpod_tasks_by_status", ("status", status), count)
                   for status, count in zip(analytics.status_names, analytics.status_counts,
                                            strict=True))
    if (task_ratio := analytics.task_success_ratio) is not None:
        samples.append(("unpod_task_success_ratio", None, task_ratio))
    if progress is not None:
        samples.append(("unpod_tasks_last_progress_timestamp_seconds", None, progress))
    return samples


def _health_samples(state: TargetState) -> list[TargetSample]:
    samples: list[TargetSample] = []
    if state.attempted:
        samples.append(("unpod_up", None, 1.0 if state.up else 0.0))
    if state.last_success is not None:
        samples.append(("unpod_analytics_shape_info", ("shape", state.shape), 1.0))
    if state.last_success is not None:
        samples.append(("unpod_last_success_timestamp_seconds", None, state.last_success))
    if state.poll_duration is not None:
        samples.append(("unpod_poll_duration_seconds", None, state.poll_duration))
    samples.extend(("unpod_poll_errors", ("reason", reason), count)
                   for reason, count in state.errors.pairs())
    return samples


def target_samples(store: SnapshotStore, state: TargetState,
                   now: float) -> tuple[list[TargetSample], bool]:
    """A target's samples (analytics unless stale, then health); True if analytics shown.
    The one place that decides what a target exports: the collector and the cached
    exposition both render from it."""
    analytics = store.fresh_analytics(state, now)
    samples = [] if analytics is None else _analytics_samples(analytics,
                                                              state.progress_timestamp)
    if samples and state.target.space == ORG_WIDE:
        samples = [(_ORG_NAME[family], extra, value) for family, extra, value in samples]
    backlog = backlog_samples(state.backlog, now, store.backlog_stale_after)
    return samples + _health_samples(state) + backlog, analytics is not None


def _add_target(out: _Families, store: SnapshotStore, state: TargetState, now: float) -> None:
    labels = target_labels(state.target)
    for family, extra, value in target_samples(store, state, now)[0]:
        out.target(family, {**labels, extra[0]: extra[1]} if extra else labels, value)


def _add_exporter(out: _Families, store: SnapshotStore, target_count: int) -> None:
    out.add("unpod_exporter_build_info", "gauge", "Build information of unpod-exporter.",
            {"version": __version__}, 1)
    out.add("unpod_exporter_targets", "gauge", "Targets this exporter polls.", {}, target_count)
    out.add("unpod_exporter_config_last_reload_successful", "gauge",
            "1 if the last config (re)load succeeded.", {}, 1 if store.reload_successful else 0)
    out.add("unpod_exporter_config_last_reload_success_timestamp_seconds", "gauge",
            "Unix time of the last successful config (re)load.", {}, store.reload_success_time)
    for org, interval in sorted(store.poll_intervals.items()):
        out.add("unpod_exporter_poll_interval_seconds", "gauge",
                "Effective poll interval of the organization's targets, budget applied.",
                {"org": org}, interval)
    for (org, endpoint, outcome), count in sorted(store.api_requests.items()):
        out.add("unpod_api_requests", "counter",
                "Requests sent to the Unpod API (every attempt, retries included) by endpoint "
                "and outcome.", {"org": org, "endpoint": endpoint, "outcome": outcome}, count)
    for org, skipped in sorted(store.polls_skipped.items()):
        out.add("unpod_exporter_polls_skipped", "counter",
                "Space polls saved by change-driven polling (the org-wide figures were "
                "unchanged).", {"org": org}, skipped)
    for kind, success in sorted(store.discovery_success.items()):
        out.add("unpod_exporter_discovery_success", "gauge",
                "1 if the last discovery of organizations or spaces succeeded.",
                {"kind": kind}, 1 if success else 0)
    for kind, when in sorted(store.discovery_success_time.items()):
        out.add("unpod_exporter_discovery_last_success_timestamp_seconds", "gauge",
                "Unix time of the last successful discovery.", {"kind": kind}, when)
    for org, remaining in sorted(store.ratelimit_remaining.items()):
        out.add("unpod_api_ratelimit_remaining", "gauge",
                "Last X-RateLimit-Remaining header seen from the Unpod API.",
                {"org": org}, remaining)


class UnpodCollector(Collector):
    """Every target and the exporter's own metrics; with ``only``, one target alone; with
    ``targets=False``, the exporter's own metrics alone (the cached exposition renders the
    targets itself)."""

    def __init__(self, store: SnapshotStore, only: TargetKey | None = None,
                 targets: bool = True) -> None:
        self._store = store
        self._only = only
        self._targets = targets

    def collect(self) -> Iterator[Metric]:
        store = self._store
        now = store.clock()
        out = _Families()
        if self._only is not None:
            state = store.get(self._only)
            states = [state] if state is not None else []
        else:
            states = store.states()
        if self._targets:
            for state in states:
                _add_target(out, store, state, now)
        if self._only is None:
            _add_exporter(out, store, len(states))
        return iter(out)
