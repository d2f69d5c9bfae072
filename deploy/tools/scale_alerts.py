"""The alert rules with their times scaled by a factor: every rule's `for:` and every range window
of its expression (`[15m]`, and both parts of a subquery `[15m:1m]`).

The local production-shaped cluster loads the project's rules this way, so that a fault shows as
a firing alert in seconds instead of minutes, with the same expressions and thresholds:

    python deploy/tools/scale_alerts.py --factor 0.05 > .local/cluster/alerts.yaml

A window shorter than two scrape intervals leaves `rate()` and `increase()` without the two
samples they need: `--min-range` (default 30s) is the floor of a scaled range window. Durations
that are not windows (the prediction horizon of `predict_linear`, the texts of summaries) keep
their values. tests/unit/test_deploy_files.py checks the output.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ALERTS = Path(__file__).resolve().parents[1] / "prometheus" / "alerts.yaml"
# Prometheus duration units, in milliseconds, largest first (how durations are written back).
UNITS_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
            "m": 60_000, "s": 1_000, "ms": 1}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
# A range or subquery window: `[15m]`, `[15m:1m]`, `[15m:]`.
_WINDOW = re.compile(r"\[([0-9a-z]+)(?::([0-9a-z]*))?\]")


def parse_duration(text: str) -> int:
    """Milliseconds of a Prometheus duration such as `1h30m`."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(number) * UNITS_MS[unit] for number, unit in parts)


def format_duration(ms: int) -> str:
    """The shortest Prometheus spelling of `ms` milliseconds (at least 1ms)."""
    ms = max(ms, 1)
    text = ""
    for unit, size in UNITS_MS.items():
        if ms >= size:
            text += f"{ms // size}{unit}"
            ms %= size
    return text


def scale(text: str, factor: float, floor_ms: int = 0) -> str:
    return format_duration(max(round(parse_duration(text) * factor), floor_ms))


def scale_expression(expr: str, factor: float, min_range_ms: int) -> str:
    def window(match: re.Match[str]) -> str:
        scaled = scale(match.group(1), factor, min_range_ms)
        step = match.group(2)
        if step is None:
            return f"[{scaled}]"
        return f"[{scaled}:{scale(step, factor) if step else ''}]"

    return _WINDOW.sub(window, expr)


def scaled_rules(rules: dict[str, Any], factor: float, min_range_ms: int) -> dict[str, Any]:
    if factor <= 0:
        raise ValueError("the factor must be positive")
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = scale_expression(rule["expr"], factor, min_range_ms)
            if "for" in rule:
                rule["for"] = scale(rule["for"], factor)
    return rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Alert rules with their times scaled.")
    parser.add_argument("--factor", type=float, required=True, help="e.g. 0.05: 5m becomes 15s")
    parser.add_argument("--min-range", default="30s", help="floor of a scaled range window")
    parser.add_argument("rules", nargs="?", type=Path, default=ALERTS)
    args = parser.parse_args(argv)
    rules = yaml.safe_load(args.rules.read_text())
    scaled = scaled_rules(rules, args.factor, parse_duration(args.min_range))
    sys.stdout.write(
        f"# {args.rules.name} with its times scaled by {args.factor}"
        " (deploy/tools/scale_alerts.py); do not edit.\n"
    )
    yaml.safe_dump(scaled, sys.stdout, sort_keys=False, width=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
