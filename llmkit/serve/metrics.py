"""Prometheus text exposition (format 0.0.4): counters, gauges and histograms.

Small enough to write here; the format is a handful of lines per metric:

    # HELP llmkit_requests_total Requests answered.
    # TYPE llmkit_requests_total counter
    llmkit_requests_total{endpoint="/v1/completions",status="200"} 3
"""

from __future__ import annotations

import bisect
import threading
from typing import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    esc = {k: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, total = [], 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n  # Prometheus buckets are cumulative
            le = "+Inf" if bound == float("inf") else _num(bound)
            out.append(f"{name}_bucket{_labels({**labels, 'le': le})} {total}")
        out += [f"{name}_sum{_labels(labels)} {_num(self.sum)}", f"{name}_count{_labels(labels)} {total}"]
        return out


class Metrics:
    """Thread-safe registry; gauges are read through callbacks at scrape time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._counters: dict[str, dict[tuple, float]] = {}
        self._hists: dict[str, dict[tuple, Histogram]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def counter(self, name: str, help: str) -> None:
        self._help[name] = ("counter", help)
        self._counters.setdefault(name, {})

    def histogram(self, name: str, help: str) -> None:
        self._help[name] = ("histogram", help)
        self._hists.setdefault(name, {})

    def gauge(self, name: str, help: str, read: Callable[[], float], kind: str = "gauge") -> None:
        """A value read at scrape time (kind="counter" for a running total kept elsewhere)."""
        self._help[name] = (kind, help)
        self._gauges[name] = read

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._hists[name].setdefault(key, Histogram()).observe(value)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help) in self._help.items():
                lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
                if name in self._gauges:
                    lines.append(f"{name} {_num(self._gauges[name]())}")
                elif kind == "counter":
                    lines += [f"{name}{_labels(dict(k))} {_num(v)}" for k, v in self._counters[name].items()]
                elif kind == "histogram":
                    for k, h in self._hists[name].items():
                        lines += h.lines(name, dict(k))
        return "\n".join(lines) + "\n"
