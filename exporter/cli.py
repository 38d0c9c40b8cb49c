"""Command line: flags, config check, start-up, signals and graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from exporter import __version__
from exporter.address import overlap, split_address
from exporter.apicheck import check_api, render
from exporter.app import Exporter
from exporter.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from exporter.demo import DemoApi, demo_config
from exporter.early import EarlyReload
from exporter.listener import run_web
from exporter.logs import LEVELS, setup_logging
from exporter.sharding import Shard, ShardError, parse_shard
from exporter.targets import build_targets
from exporter.webconfig import WebConfigWatcher, load_web_config

log = logging.getLogger("unpod_exporter")
DEFAULT_LISTEN = ":9877"


class StartupError(Exception):
    pass


def parse_listen_address(address: str) -> tuple[str | None, int]:
    try:
        return split_address(address, "--web.listen-address")
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unpod-exporter", description="Prometheus exporter for Unpod campaign analytics.")
    parser.add_argument("--config.file", dest="config_file",
                        default=os.environ.get("UNPOD_EXPORTER_CONFIG", DEFAULT_CONFIG_PATH),
                        help="YAML config (default: $UNPOD_EXPORTER_CONFIG or %(default)s)")
    parser.add_argument("--config.check", dest="config_check", action="store_true",
                        help="validate the config and token sources, print the targets, exit")
    parser.add_argument("--config.check.api", dest="config_check_api", action="store_true",
                        help="validate the config, then make one real request per target (and "
                        "list), within the request budget, print what each answered, exit")
    parser.add_argument("--web.listen-address", dest="listen_address", default=DEFAULT_LISTEN)
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    parser.add_argument("--web.config.file", dest="web_config_file", default=None,
                        help="exporter-toolkit web config: TLS, basic auth, headers")
    parser.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                        help="enable POST/PUT /-/reload")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=list(LEVELS))
    parser.add_argument("--log.format", dest="log_format", default="logfmt",
                        choices=["logfmt", "json"])
    parser.add_argument("--shard.count", dest="shard_count", type=int, default=1,
                        help="split the targets over this many replicas (default 1)")
    parser.add_argument("--shard.index", dest="shard_index", default="0",
                        help="this replica's shard, 0-based, or 'auto' (hostname's ordinal)")
    parser.add_argument("--demo", action="store_true",
                        help="run against a built-in simulated Unpod API (no token, no network)")
    parser.add_argument("--version", action="version", version=f"unpod-exporter {__version__}")
    return parser


def shard_from(args: argparse.Namespace) -> Shard:
    try:
        return parse_shard(args.shard_count, args.shard_index)
    except ShardError as exc:
        raise StartupError(str(exc)) from None


def describe_targets(config: Config, shard: Shard) -> str:
    lines = []
    if config.discovery is not None:
        lines.append(f"  plus discovered targets (every {config.discovery.interval:g}s)")
    for target in build_targets(config, shard=shard):
        lines.append(f"  {target.describe()} interval={target.interval:g}s "
                     f"token={target.token.describe()}")
    return "\n".join(lines)


def check_listeners(args: argparse.Namespace, config: Config) -> None:
    """The webhook must be reachable from Unpod's servers, /metrics should not be: never one
    port for both."""
    if config.webhook is not None and overlap(parse_listen_address(args.listen_address),
                                              config.webhook.address):
        raise StartupError(f"webhook.listen_address: {config.webhook.listen_address} is the "
                           f"port of --web.listen-address ({args.listen_address}); the webhook "
                           "needs a listener of its own")


async def serve(args: argparse.Namespace, early: EarlyReload) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    host, port = parse_listen_address(args.listen_address)
    telemetry_path = args.telemetry_path
    if not telemetry_path.startswith("/"):
        raise StartupError(f"--web.telemetry-path: must start with '/', got {telemetry_path!r}")

    demo_runner: web.AppRunner | None = None
    if args.demo:
        demo_runner = await run_web(DemoApi().app(), "127.0.0.1", 0)
        demo_port = demo_runner.addresses[0][1]
        config = demo_config(f"http://127.0.0.1:{demo_port}")
        loader = None
        log.info("demo mode: polling the built-in simulated Unpod API",
                 extra={"fields": {"api": f"127.0.0.1:{demo_port}"}})
    else:
        config = load_config(args.config_file)

        def loader() -> Config:
            return load_config(args.config_file)

    check_listeners(args, config)
    web_config = WebConfigWatcher(args.web_config_file) if args.web_config_file else None
    exporter = Exporter(config, telemetry_path=telemetry_path, config_loader=loader,
                        enable_lifecycle=args.enable_lifecycle, web_config=web_config,
                        shard=shard_from(args))
    # before the port opens: a SIGTERM sent as soon as it accepts must stop us cleanly
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        runner = await run_web(exporter.web_app, host, port,
                               web_config if web_config and web_config.tls else None)
    except OSError as exc:
        if demo_runner is not None:
            await demo_runner.cleanup()
        raise StartupError(f"cannot listen on {args.listen_address}: {exc.strerror}") from None
    try:
        await exporter.start()
    except OSError as exc:  # the webhook's listener
        await exporter.stop()
        await runner.cleanup()
        if demo_runner is not None:
            await demo_runner.cleanup()
        assert config.webhook is not None
        raise StartupError(f"webhook.listen_address: cannot listen on "
                           f"{config.webhook.listen_address}: {exc.strerror}") from None
    loop.add_signal_handler(signal.SIGHUP, exporter.reload)
    if early.asked:
        log.info("reloading: a SIGHUP came while starting")
        exporter.reload()
    log.info("listening", extra={"fields": {"address": args.listen_address,
                                             "telemetry_path": telemetry_path,
                                             "version": __version__}})

    await stop.wait()
    log.info("shutting down")
    await exporter.stop()
    await runner.cleanup()
    if demo_runner is not None:
        await demo_runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None, early: EarlyReload | None = None) -> int:
    early = early or EarlyReload.installed()  # first: the config load can take seconds
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        if args.config_check:
            config = load_config(args.config_file)
            check_listeners(args, config)
            if args.web_config_file:
                load_web_config(args.web_config_file)
                print(f"web config {args.web_config_file} is valid")
            if config.webhook is not None and config.webhook.web_config_file:
                load_web_config(config.webhook.web_config_file)
                print(f"webhook web config {config.webhook.web_config_file} is valid")
            if config.api.tls.insecure_skip_verify:
                print("warning: api.tls.insecure_skip_verify is set: the API's certificate "
                      "is not verified", file=sys.stderr)
            print(f"config {args.config_file} is valid; proxy: {config.api.proxy_display()}; "
                  "would poll:")
            print(describe_targets(config, shard_from(args)))
            return 0
        if args.config_check_api:
            config = load_config(args.config_file)
            print(f"config {args.config_file} is valid; asking {config.api.base_url} "
                  "(one request per target and list, within the request budget)")
            rows = asyncio.run(check_api(config, shard_from(args)))
            print(render(rows))
            return 0 if all(row.ok for row in rows) else 1
        return asyncio.run(serve(args, early))
    except (ConfigError, StartupError) as exc:
        print(f"unpod-exporter: {exc}", file=sys.stderr)
        if args.log_level == "debug":
            raise
        return 1
