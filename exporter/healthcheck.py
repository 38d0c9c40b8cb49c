"""``python -m exporter.healthcheck [URL]``: exit 0 if the exporter answers /-/healthy.

For container HEALTHCHECKs, where no curl is installed. Tries plain HTTP, then HTTPS without
verification (the exporter may serve TLS with a certificate for another name).
"""

from __future__ import annotations

import ssl
import sys
import urllib.request


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return 0 if healthy(args[0] if args else "127.0.0.1:9877/-/healthy") else 1


if __name__ == "__main__":
    raise SystemExit(main())
