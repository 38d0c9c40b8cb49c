"""Wiring: config -> targets -> poller -> API client -> store -> collector -> HTTP app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack

import aiohttp
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

from exporter.backlog.runner import BacklogScanner, Spare
from exporter.backlog.wiring import BacklogGateway, backlog_spare, plan_of, spaces_to_scan
from exporter.client import close_quietly
from exporter.clients import ApiClients
from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.collector import UnpodCollector
from exporter.config import Config, TokenSource
from exporter.discovery import Discoverer
from exporter.discovery_loop import DiscoveryLoop
from exporter.exposition import ExpositionCache
from exporter.freshness import Freshness
from exporter.gate import RequestGate
from exporter.plan import BudgetPlan, plan_budget
from exporter.poller import Poller
from exporter.probe import MAX_WAIT, Prober, Refusal, probe_wait
from exporter.readiness import all_explained, pause_of
from exporter.reload import Reloader
from exporter.scheduler import Scheduler
from exporter.server import make_app
from exporter.sharding import Shard
from exporter.store import SnapshotStore
from exporter.targets import Discovered, Target, TargetKey, build_targets
from exporter.tokens import TokenReader
from exporter.webconfig import WebConfigWatcher
from exporter.webhook import PollTrigger, WebhookService
from exporter.webhook.trigger import COOLDOWN_SHARE

log = logging.getLogger("unpod_exporter")
SHUTDOWN_GRACE = 4.0


def make_registry(store: SnapshotStore, targets: bool = True,
                  extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The exporter's metrics and the process/python ones (with the targets' unless the
    cached exposition renders those), and ``extra`` collectors (the webhook's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(UnpodCollector(store, targets=targets))
    for collector in extra:
        registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class Exporter:
    """One running exporter: its session, poller and store, and the web app serving them."""

    def __init__(self, config: Config, *, telemetry_path: str = "/metrics",
                 config_loader: Callable[[], Config] | None = None,
                 enable_lifecycle: bool = False,
                 web_config: WebConfigWatcher | None = None,
                 shard: Shard | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.shard = shard or Shard()
        self._discovered = Discovered()
        self._targets: tuple[Target, ...] = ()
        self._plan = BudgetPlan(caps=(0, None), stretches={}, intervals={}, idle_factors={},
                                accounting=frozenset(), probe_spare={})  # until start()
        self._tick = 1.0  # seconds between two looks at staleness and demand
        self._discovery: DiscoveryLoop | None = None
        self._config_loader = config_loader
        self._reloader: Reloader | None = None
        self.store = SnapshotStore(config.poll.max_staleness)
        self.tokens = TokenReader()
        # Off unless configured; built now so that an unreadable secret stops the start.
        self._trigger = PollTrigger(self._make_due, self._event_cooldown)
        self.webhook = (WebhookService(config.webhook, self.tokens, self._trigger)
                        if config.webhook is not None else None)
        self.exposition = ExpositionCache(self.store, make_registry(
            self.store, targets=False, extra=[self.webhook.metrics] if self.webhook else []))
        self._session: aiohttp.ClientSession | None = None
        self._clients: ApiClients | None = None
        self.freshness = Freshness()
        self._gate: RequestGate | None = None
        self._scheduler: Scheduler | None = None
        self._poller: Poller | None = None
        self._stack = AsyncExitStack()  # the teardown of what start() started
        self._grace = SHUTDOWN_GRACE
        self._backlog: BacklogScanner | None = None
        self._backlog_spares: dict[TokenSource, Spare] = {}
        self._ready = False
        self.probe_budget_wait = MAX_WAIT  # at most, whatever the scrape timeout
        self._prober: Prober | None = None
        self._stopping = False
        self.web_app = make_app(cache=self.exposition, store=self.store,
                                telemetry_path=telemetry_path, is_ready=self.is_ready,
                                reload=self.reload if enable_lifecycle else None,
                                web_config=web_config, probe=self.probe,
                                waiting=self.waiting)

    def is_ready(self) -> bool:
        """Ready once every target had an attempt or waits on an explained pause (a rate
        limit, an auth back-off: ``exporter.readiness``); stays so until shutdown begins."""
        if self._stopping:
            return False
        if not self._ready:
            self._ready = (self._scheduler is not None and self._discovery is not None
                           and not self._discovery.pending
                           and all_explained(self.store.states(), self.waiting))
        return self._ready

    def waiting(self, target: Target) -> str | None:
        """The explained pause that holds a target, if any."""
        if self._gate is None or self._poller is None:
            return None
        return pause_of(target, gate=self._gate, backoff=self._poller.auth_backoff)

    @property
    def poller(self) -> Poller:
        assert self._poller is not None, "start() first"
        return self._poller

    @property
    def scheduler(self) -> Scheduler:
        """When each target is due; ``make_due`` puts targets first in line now."""
        assert self._scheduler is not None, "start() first"
        return self._scheduler

    @property
    def gate(self) -> RequestGate:
        """Every request to the API passes here (budgets, slots, priorities)."""
        assert self._gate is not None, "start() first"
        return self._gate

    @property
    def prober(self) -> Prober:
        assert self._prober is not None, "start() first"
        return self._prober

    def _event_cooldown(self, key: TargetKey) -> float:
        """Events make a target due at most once per this share of its effective interval."""
        target = self._scheduler.target(key) if self._scheduler is not None else None
        interval = self.scheduler.interval(target) if target is not None \
            else self.config.poll.interval
        return interval * COOLDOWN_SHARE

    def _make_due(self, keys: Iterable[tuple[str, str]]) -> None:
        """An event of a mapped agent: its org-wide target and space are due now, through
        the scheduler and the gate like any poll; change-driven polling then polls the space
        once the org-wide answer shows the change. Under a request budget, only from what the
        scheduled polls leave (as /probe): events move figures forward when the budget has
        room and never take requests from the schedule (measured: taking them made the
        budget-paying stretch late for everything)."""
        if self._scheduler is None or self._stopping:
            return
        due = []
        for key in keys:
            target = self._scheduler.target(key)
            if target is None:
                continue
            if self._plan.capped and not self.prober.take_spare(target.token):
                continue  # no spare budget now: the schedule will get to it
            due.append(target.key)
        self._scheduler.make_due(due)

    async def start(self) -> None:
        """Start polling (and the webhook receiver, first: raises OSError if its address
        cannot be bound). Each part registers its teardown as it starts, so that ``stop``,
        or a start that fails half-way, undoes what started, in reverse order."""
        stack = AsyncExitStack()
        try:
            await self._start_parts(stack, self.config)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        config = self.config
        log.info("polling started", extra={"fields": {
            "targets": len(self.store.states()), "orgs": len(config.orgs),
            "base_url": config.api.base_url, "shard": f"{self.shard.index}/{self.shard.count}"}})

    async def _start_parts(self, stack: AsyncExitStack, config: Config) -> None:
        if self.webhook is not None:
            await self.webhook.start()
            stack.push_async_callback(self.webhook.stop)
        connector = aiohttp.TCPConnector(limit=config.poll.concurrency, ttl_dns_cache=300)
        # Proxy settings from the environment are resolved once per client (environment_proxy):
        # aiohttp's trust_env looks them up in a thread on every request, tripling the time
        # a round of polls takes.
        self._session = session = aiohttp.ClientSession(connector=connector)
        stack.push_async_callback(close_quietly, session)
        self._clients = clients = ApiClients(session)
        clients.use(config)
        clock = self.clock
        self._gate = RequestGate(concurrency=config.poll.concurrency, clock=clock)
        gate = self._gate
        # Twice the slots: a full set of admitted-next polls waits behind those in flight, so
        # a freed slot is taken at once while the scheduler refills on the poll's end.
        self._scheduler = Scheduler(refresh_at=self.freshness.refresh_at,
                                    live_limit=lambda: 2 * gate.concurrency, clock=clock)
        self._poller = Poller(gate=self._gate, client=clients.analytics, store=self.store,
                              tokens=self.tokens, scheduler=self._scheduler,
                              freshness=self.freshness, clock=clock)
        self._prober = Prober(poller=self._poller, scheduler=self._scheduler, store=self.store,
                              concurrency=config.poll.concurrency, clock=clock)
        self._discovery = discovery = DiscoveryLoop(
            Discoverer(gate=self._gate, client=clients.analytics, tokens=self.tokens,
                       store=self.store),
            self._discovered_lists, pending=config.discovery is not None)
        if self._config_loader is not None:
            self._reloader = Reloader(load=self._config_loader, clients=clients,
                                      gate=self._gate, auth_backoff=self._poller.auth_backoff,
                                      discovery=discovery, store=self.store, adopt=self._adopt)
        gateway = BacklogGateway(gate=self._gate, client=clients.backlog,
                                 tokens=self.tokens, store=self.store,
                                 auth_backoff=self._poller.auth_backoff)
        self._backlog = BacklogScanner(self.store, gateway.fetch_for, self._poller.is_secret,
                                       monotonic=clock.now)
        self._apply(config, announce=True)
        stack.push_async_callback(self._backlog.stop)
        stack.push_async_callback(_cancel, asyncio.create_task(self._backlog.run(),
                                                               name="backlog"))
        loop = asyncio.create_task(self._scheduler.run(self._poller.start), name="scheduler")
        stack.push_async_callback(self._stop_polls, self._scheduler, loop)
        stack.push_async_callback(_cancel, asyncio.create_task(self._watch_staleness(),
                                                               name="staleness"))
        stack.push_async_callback(discovery.stop)
        discovery.restart(config)

    async def _stop_polls(self, scheduler: Scheduler, loop: asyncio.Task[None]) -> None:
        """Polls in flight get the shutdown's grace to finish; then the loop ends."""
        await scheduler.stop(self._grace)
        await _cancel(loop)

    async def _watch_staleness(self) -> None:
        """Withdraw stale analytics on a timer, not only when a poll ends; stretch intervals
        again when the follow-up demand moved (within an interval, so that a calling window
        that opens is paid for at once)."""
        while True:
            await asyncio.sleep(self._tick)
            self.exposition.check_staleness()
            if self._plan.capped and self.freshness.demand_version != self._plan.demand_version:
                self._replan()

    def _discovered_lists(self, discovered: Discovered) -> None:
        """A discovery round ended: the targets it gives, under a plan for them."""
        self._discovered = discovered
        self._apply(self.config, announce=False)

    def _adopt(self, config: Config) -> None:
        """A reloaded config becomes the running one."""
        self.config = config
        self._apply(config, announce=True)

    def _apply(self, config: Config, announce: bool) -> None:
        """Point the parts at a config and the discovered targets (this shard's), under a
        budget plan for them."""
        self._targets = targets = build_targets(config, self._discovered, self.shard)
        self.store.max_staleness = config.poll.max_staleness
        self.store.set_targets(targets)
        self.poller.set_targets(targets)
        for source in {t.token for t in targets}:
            self.gate.budget(source)
        plan = self._new_plan(config)
        self._apply_plan(config, plan, announce)
        self.scheduler.set_targets(targets, plan.intervals)
        assert self._backlog is not None
        self._backlog.configure(plan_of(config), spaces_to_scan(config, targets),
                                self._backlog_spares)

    def _new_plan(self, config: Config) -> BudgetPlan:
        freshness = self.freshness
        version = freshness.demand_version
        return plan_budget(config, self._targets, self.shard, discovered=self._discovered,
                           demand=freshness.adopt_demand(), demand_version=version)

    def _replan(self) -> None:
        """A new plan for the follow-up demand measured since the last one."""
        plan = self._new_plan(self.config)
        self._apply_plan(self.config, plan, announce=False)
        self.scheduler.set_intervals(plan.intervals)
        if self._backlog is not None:
            self._backlog.set_spares(self._backlog_spares)

    def _apply_plan(self, config: Config, plan: BudgetPlan, announce: bool) -> None:
        """The one place a budget plan takes effect: the gate's caps, the probes' spare,
        change-driven polling's idle stretch and accounting, the exported intervals (the
        scheduler's are set by the caller, with the targets or alone)."""
        poll, api = config.poll, config.api
        self._plan = plan
        self.gate.configure(*plan.caps)
        self.prober.set_spare(plan.probe_spare)
        # the backlog scan spends what the polls leave; it stretches, never the polls
        self._backlog_spares = {token: backlog_spare(caps)
                                for token, caps in plan.probe_spare.items()}
        self.freshness.configure(poll.change_driven, poll.idle_interval, plan.targets,
                                 idle_factors=dict(plan.idle_factors),
                                 accounting=plan.accounting, intervals=plan.intervals)
        self.store.poll_intervals.clear()
        self.store.poll_intervals.update({t.org: plan.interval(t) for t in plan.targets})
        self._tick = min(1.0, plan.shortest_interval or poll.interval)
        for token, stretch in plan.stretches.items():
            log.debug("stretch", extra={"fields": {
                "token": token.describe(), "factor": f"{stretch.factor:.2f}",
                "idle_factor": f"{stretch.idle_factor:.2f}",
                "demand_per_minute": f"{stretch.demand_per_minute:.1f}"}})
        for token, stretch in plan.binding.items() if announce else ():
            log.warning("targets need more requests than the budget allows; stretching "
                        "their intervals", extra={"fields": {
                            "token": token.describe(), "factor": f"{stretch.factor:.2f}",
                            "demand_per_minute": f"{stretch.demand_per_minute:.1f}",
                            "max_requests_per_minute": api.max_requests_per_minute,
                            "max_requests_per_day": api.max_requests_per_day or "none"}})

    async def probe(self, org: str, space: str,
                    scrape_timeout: str | None = None) -> CollectorRegistry | Refusal:
        """``/probe``: one target polled now (``exporter.probe``), waiting for budget no
        longer than the scrape's timeout allows."""
        assert self._prober is not None, "start() first"
        return await self._prober.probe(org, space,
                                        probe_wait(scrape_timeout, self.probe_budget_wait))

    def reload(self) -> str | None:
        """Re-read the config; apply it only if valid (``exporter.reload``). Returns the
        error text, or None."""
        if self._reloader is None:
            return "reload is not available"
        return self._reloader.reload(self.config)

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop everything ``start`` started, in reverse order; in-flight polls get ``grace``
        seconds to finish."""
        self._stopping = True
        self._trigger.close()
        self._grace = grace
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
