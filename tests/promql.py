"""Just enough of PromQL to lint queries as Grafana's dashboard-linter does: the selectors of
an expression, their matchers, their range, and the call they sit in.

The linter walks the AST of Prometheus's own parser (``parser.ExtractSelectors``,
``parser.Walk``); Python has no such parser, so this reads the token stream the same way for
the expressions the mixin writes, and ``promtool check rules`` (the real parser) separately
proves that every expression parses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN = re.compile(r"""
  (?P<ws>\s+)
| (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
| (?P<range>\[[^\]]*\])
| (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
| (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
| (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
| (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},@])
""", re.VERBOSE)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


@dataclass(frozen=True)
class Selector:
    name: str | None
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)
    range: str | None  # "[5m]" for a range vector
    parent: str | None  # the function (or "sum" ...) it is an argument of; None in parentheses


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = match.end()
        if match.lastgroup != "ws":
            out.append((match.lastgroup or "", match.group()))
    return out


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of ``expr``, in order."""
    toks = tokens(expr)
    found: list[Selector] = []
    stack: list[str | None] = []  # one entry per open parenthesis: the call, "grouping" or None
    pending: str | None = None  # an aggregation waiting for its "(" after "by (...)"
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in GROUPING and following == "(":
            stack.append("grouping")
            i += 2
            continue
        if kind == "ident" and following == "(" and text not in KEYWORDS:
            stack.append(text)
            i += 2
            continue
        if kind == "ident" and text in AGGREGATIONS and following in ("by", "without"):
            pending = text
            i += 1
            continue
        if text == "(":
            stack.append(pending)
            pending = None
            i += 1
            continue
        if text == ")":
            stack.pop()
            i += 1
            continue
        if (stack and stack[-1] == "grouping") or (kind != "ident" and text != "{"):
            i += 1
            continue
        if kind == "ident" and text in KEYWORDS:
            i += 1
            continue
        name = text if kind == "ident" else None
        if name is not None:
            i += 1
        matchers: list[tuple[str, str, str]] = []
        if i < len(toks) and toks[i][1] == "{":
            i += 1
            while toks[i][1] != "}":
                label, operator, value = toks[i][1], toks[i + 1][1], toks[i + 2][1]
                matchers.append((label, operator, _unquote(value)))
                i += 3
                if toks[i][1] == ",":
                    i += 1
            i += 1
        matrix = None
        if i < len(toks) and toks[i][0] == "range":
            matrix = toks[i][1]
            i += 1
        found.append(Selector(name, tuple(matchers), matrix, stack[-1] if stack else None))
    return found
