"""Metric names a PromQL expression reads, so dashboards and rules can be checked
against the metrics streamgmm declares.

This is a small lexer, not a PromQL parser: it drops strings, label matchers,
ranges, grouping clauses, numbers, durations and Grafana variables, then keeps
every identifier that is not a function call or a keyword.

Examples
--------
>>> sorted(metric_names(
...     'histogram_quantile(0.99, sum by (le) '
...     '(rate(streamgmm_batch_duration_seconds_bucket{job="x"}[$__rate_interval])))'))
['streamgmm_batch_duration_seconds_bucket']
>>> sorted(metric_names('rate(a_total[5m]) / on(instance) group_left b > 3 * 1e3'))
['a_total', 'b']
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "atan2", "inf", "nan",
})
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_GRAFANA_VARS = re.compile(r"\$\{[^}]*\}|\$\w+")
# Numbers (hex, decimal, scientific) and durations go first, so that the
# exponent of 1e3 or the unit of 5m is never read as an identifier.
_TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?)"
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?"
)


def metric_names(expr: str) -> set[str]:
    """Return the names of the metrics that a PromQL expression selects.

    Parameters
    ----------
    expr : str
        A PromQL expression, possibly with Grafana variables
        (``$__rate_interval``, ``${instance}``).

    Returns
    -------
    set of str
        Metric names as written (``_bucket``, ``_total`` and the like kept).
    """
    text = _STRINGS.sub(" ", expr)
    text = _GRAFANA_VARS.sub(" ", text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name and not match.group("call") and name.lower() not in _KEYWORDS:
            names.add(name)
    return names
