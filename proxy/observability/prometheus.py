"""Prometheus text exposition of `proxy.stats.Stats` with Envoy's names and tags.

Envoy's admin /stats/prometheus (docs: operations/admin, "stats/prometheus") runs the default tag
extractors (source/common/config/well_known_names.cc) over each dotted stat name: a regex's first
group is cut out of the name and its second group (or the first, when there is one) becomes the
tag value. `cluster.backend.upstream_rq_total` becomes
`envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}`, and
`http.ingress.downstream_rq_2xx` becomes
`envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress"}`.
The admin page calls `render(stats)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.stats import Stats


@dataclass(frozen=True)
class TagExtractor:
    name: str  # Prometheus label, e.g. envoy_cluster_name
    regex: re.Pattern[str]
    substring: str = ""  # fast pre-check, as Envoy does


def _extractor(tag: str, pattern: str, substring: str = "") -> TagExtractor:
    return TagExtractor(f"envoy_{tag}", re.compile(pattern), substring)


# Envoy's default extractors, in Envoy's order ([:digit:] written as \d); the ones for filters we
# do not have (dynamo, mongo, grpc bridge, clientssl) are left out.
DEFAULT_EXTRACTORS: tuple[TagExtractor, ...] = (
    _extractor("response_code", r"_rq(_(\d{3}))$", "_rq_"),
    _extractor("response_code_class", r"_rq_(\d)xx$", "_rq_"),
    _extractor("http_user_agent", r"^http(?=\.).*?\.user_agent\.((.*?)\.)\w+?$", ".user_agent."),
    _extractor("virtual_cluster", r"^vhost(?=\.).*?\.vcluster\.((.*?)\.)\w+?$", ".vcluster."),
    _extractor("fault_downstream_cluster", r"^http(?=\.).*?\.fault\.((.*?)\.)\w+?$", ".fault."),
    _extractor("ssl_cipher", r"^listener(?=\.).*?\.ssl\.cipher(\.(.*?))$"),
    _extractor("ssl_cipher_suite", r"^cluster(?=\.).*?\.ssl\.ciphers(\.(.*?))$", ".ssl.ciphers."),
    _extractor("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    _extractor("udp_prefix", r"^udp\.((.*?)\.)\w+?$"),
    _extractor("ratelimit_prefix", r"^ratelimit\.((.*?)\.)\w+?$"),
    _extractor("cluster_name", r"^cluster\.(([^\.]+)\.).*"),
    _extractor("http_conn_manager_prefix", r"^listener(?=\.).*?\.http\.((.*?)\.)", ".http."),
    _extractor("http_conn_manager_prefix", r"^http\.((.*?)\.)"),
    _extractor("listener_address",
               r"^listener\.(((?:[_.\d]*|[_\[\]aAbBcCdDeEfF\d]*))\.)"),
    _extractor("virtual_host", r"^vhost\.((.*?)\.)"),
    _extractor("rds_route_config", r"^http(?=\.).*?\.rds\.((.*?)\.)\w+?$", ".rds."),
    # Envoy 1.40 keeps `worker_` in the name and tags the id (`server.worker_0.watchdog_miss`
    # -> envoy_server_worker_watchdog_miss{envoy_worker_id="0"}), checked against its output.
    _extractor("worker_id", r"(?:^|\.)worker_((\d+)\.)", "worker_"),
)

Tags = tuple[tuple[str, str], ...]
_CACHE: dict[str, tuple[str, Tags]] = {}


def extract_tags(name: str,
                 extractors: Iterable[TagExtractor] = DEFAULT_EXTRACTORS) -> tuple[str, Tags]:
    """(tag-extracted dotted name, ((label, value), ...)); a label is set once (first wins)."""
    cached = _CACHE.get(name)
    if cached is not None:
        return cached
    stripped = name
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    for extractor in extractors:
        if extractor.name in seen or (extractor.substring and extractor.substring not in stripped):
            continue
        match = extractor.regex.search(stripped)
        if match is None:
            continue
        value = match.group(2) if match.re.groups >= 2 else match.group(1)
        start, end = match.span(1)
        stripped = stripped[:start] + stripped[end:]
        tags.append((extractor.name, value))
        seen.add(extractor.name)
    result = (stripped, tuple(tags))
    if len(_CACHE) < 100_000:
        _CACHE[name] = result
    return result


def metric_name(extracted: str) -> str:
    """Envoy's sanitising: `envoy_` + the name with anything outside [a-zA-Z0-9_] as `_`."""
    return "envoy_" + re.sub(r"[^a-zA-Z0-9_]", "_", extracted)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(tags: Tags, extra: str = "") -> str:
    parts = [f'{label}="{_escape(value)}"' for label, value in tags]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _format_number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(stats: Stats) -> str:
    """The whole store as Prometheus text format 0.0.4 (one TYPE line per metric family)."""
    families: dict[str, tuple[str, list[str]]] = {}

    def family(stat_name: str, kind: str) -> tuple[str, Tags, list[str]]:
        extracted, tags = extract_tags(stat_name)
        metric = metric_name(extracted)
        entry = families.setdefault(metric, (kind, []))
        return metric, tags, entry[1]

    for name, counter in stats.counters.items():
        metric, tags, lines = family(name, "counter")
        lines.append(f"{metric}{_labels(tags)} {counter.value}")
    for name, gauge in stats.gauges.items():
        metric, tags, lines = family(name, "gauge")
        lines.append(f"{metric}{_labels(tags)} {gauge.value}")
    for name, histogram in stats.histograms.items():
        metric, tags, lines = family(name, "histogram")
        for bound, count in histogram.cumulative():
            le = f'le="{_format_number(bound)}"'
            lines.append(f"{metric}_bucket{_labels(tags, le)} {count}")
        lines.append(f"{metric}_sum{_labels(tags)} {_format_number(histogram.total)}")
        lines.append(f"{metric}_count{_labels(tags)} {histogram.samples}")
    out: list[str] = []
    for metric in sorted(families):
        kind, lines = families[metric]
        out.append(f"# TYPE {metric} {kind}")
        out.extend(sorted(lines))
    return "\n".join(out) + "\n" if out else ""
