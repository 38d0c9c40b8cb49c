"""``python -m exporter`` and the ``unpod-exporter`` script."""

from exporter.early import EarlyReload


def main() -> int:
    early = EarlyReload.installed()  # before the imports that follow: they take half a second
    from exporter.cli import main as cli_main

    return cli_main(early=early)


if __name__ == "__main__":
    raise SystemExit(main())
