"""In-process statistics with Envoy's stat names (`cluster.NAME.upstream_cx_total`, ...).

Plain counters, gauges and histograms in one store per process; the admin endpoint renders them
as Envoy's `/stats` text and as Prometheus exposition, `proxy.workers` merges the stores of worker
processes, and `proxy.observability` mirrors them into OpenTelemetry. Incrementing is a dict
lookup and an integer add: cheap enough for the data path.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

# Envoy's default histogram buckets (ms), from source/common/stats/histogram_impl.h.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)


class Counter:
    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def __repr__(self) -> str:
        return f"Counter({self.name}={self.value})"


class Gauge:
    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def dec(self, amount: int = 1) -> None:
        self.value -= amount

    def set(self, value: int) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Gauge({self.name}={self.value})"


@dataclass
class Histogram:
    name: str
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    samples: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def record(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.samples += 1

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """(upper bound, cumulative count) pairs, ending with (inf, samples)."""
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            yield bound, running


class Stats:
    """A store of named stats. Names are Envoy's dotted names; tags are not modelled."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}
        self.histograms: dict[str, Histogram] = {}

    def counter(self, name: str) -> Counter:
        found = self.counters.get(name)
        if found is None:
            found = self.counters[name] = Counter(name)
        return found

    def gauge(self, name: str) -> Gauge:
        found = self.gauges.get(name)
        if found is None:
            found = self.gauges[name] = Gauge(name)
        return found

    def histogram(self, name: str) -> Histogram:
        found = self.histograms.get(name)
        if found is None:
            found = self.histograms[name] = Histogram(name)
        return found

    def snapshot(self) -> dict[str, dict[str, object]]:
        """A JSON-able copy, for merging across worker processes."""
        return {
            "counters": {n: c.value for n, c in self.counters.items()},
            "gauges": {n: g.value for n, g in self.gauges.items()},
            "histograms": {
                n: {"counts": list(h.counts), "total": h.total, "samples": h.samples}
                for n, h in self.histograms.items()
            },
        }

    def merge(self, snapshot: dict[str, dict[str, object]]) -> None:
        """Add another process's snapshot into this store (counters/gauges/histograms sum)."""
        for name, value in snapshot.get("counters", {}).items():
            self.counter(name).inc(int(value))  # type: ignore[call-overload]
        for name, value in snapshot.get("gauges", {}).items():
            self.gauge(name).inc(int(value))  # type: ignore[call-overload]
        for name, data in snapshot.get("histograms", {}).items():
            histogram = self.histogram(name)
            assert isinstance(data, dict)
            for index, count in enumerate(data["counts"]):
                histogram.counts[index] += count
            histogram.total += data["total"]
            histogram.samples += data["samples"]

    def render_text(self) -> str:
        """Envoy's `/stats` format: `name: value`, sorted."""
        lines = [f"{n}: {c.value}" for n, c in self.counters.items()]
        lines += [f"{n}: {g.value}" for n, g in self.gauges.items()]
        lines += [
            f"{n}: P0(nan) samples={h.samples} sum={h.total:g}" for n, h in self.histograms.items()
        ]
        return "\n".join(sorted(lines)) + "\n"
