"""``python -m exporter.healthcheck [URL]``: exit 0 if the exporter answers /-/healthy.

For container HEALTHCHECKs, where no curl is installed. Without a URL it asks the exporter
running beside it where it listens: it reads that process's own command line
(``--web.listen-address``, and ``--web.config.file`` for the scheme) from /proc, so a container
started with another port or with TLS stays healthy. HTTPS is checked without verification
(the certificate may be for another name).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.request
from pathlib import Path

DEFAULT_LISTEN = ":9877"


def healthy(url: str, timeout: float = 3.0) -> bool:
    candidates = [url] if "://" in url else [f"http://{url}", f"https://{url}"]
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    for candidate in candidates:
        try:
            with urllib.request.urlopen(candidate, timeout=timeout,
                                        context=unverified) as response:
                if response.status == 200:
                    return True
        except OSError:
            continue
    return False


def _is_exporter(argv: list[str]) -> bool:
    names = [Path(arg).name for arg in argv[:3]]
    return "unpod-exporter" in names or ("-m" in argv[:3] and "exporter" in argv[:4])


def exporter_process(proc: Path = Path("/proc")) -> tuple[list[str], Path] | None:
    """The command line and working directory of the exporter: PID 1 in its container, else
    the first process that runs it."""
    pids = ["1", *sorted((p.name for p in proc.iterdir() if p.name.isdigit()), key=int)]
    for pid in pids:
        if pid == str(os.getpid()):
            continue
        try:
            argv = (proc / pid / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = (proc / pid / "cwd").resolve()
        except OSError:
            continue
        if _is_exporter(argv):
            return argv, cwd
    return None


def _scheme(web_config: str | None, cwd: Path) -> str | None:
    """https when the web config serves TLS, http when there is none; None if unknown."""
    if web_config is None:
        return "http"
    try:
        import yaml

        doc = yaml.safe_load((cwd / web_config).read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, ImportError, AttributeError):
        return None
    tls = doc.get("tls_server_config") if isinstance(doc, dict) else None
    return "https" if isinstance(tls, dict) and (tls.get("cert_file") or tls.get("cert")) \
        else "http"


def url_from(argv: list[str], cwd: Path) -> str:
    """The /-/healthy URL of an exporter started with ``argv``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN)
    parser.add_argument("--web.config.file", dest="web_config", default=None)
    args, _ = parser.parse_known_args(argv[1:])
    host, _, port = str(args.listen).rpartition(":")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    scheme = _scheme(args.web_config, cwd)
    address = f"{host}:{port}/-/healthy"
    return f"{scheme}://{address}" if scheme else address


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        url = args[0]
    else:
        found = exporter_process()
        url = url_from(*found) if found else f"127.0.0.1{DEFAULT_LISTEN}/-/healthy"
    return 0 if healthy(url) else 1


if __name__ == "__main__":
    raise SystemExit(main())
