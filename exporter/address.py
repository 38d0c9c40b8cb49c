"""Listen addresses as Prometheus exporters write them, for every listener of the process."""

from __future__ import annotations

WILDCARDS = frozenset({None, "0.0.0.0", "::"})


def split_address(address: str, key: str) -> tuple[str | None, int]:
    """``:9877`` (every interface), ``[::]:9877`` (IPv6), ``0.0.0.0:9877`` (IPv4),
    ``host:9877``; raises ValueError naming ``key``."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{key}: expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{key}: put IPv6 addresses in brackets: {address!r}")
    return (host or None), int(port_text)


def overlap(first: tuple[str | None, int], second: tuple[str | None, int]) -> bool:
    """Whether two listeners would claim the same port on some interface (port 0, "any
    free port", never does)."""
    if first[1] != second[1] or first[1] == 0:
        return False
    return first[0] == second[0] or first[0] in WILDCARDS or second[0] in WILDCARDS
