"""What the admin endpoint shows: connected nodes, counters and push latency.

The server reports each stream's actions here (a narrow hook, like go-control-plane's
Callbacks); this module keeps counters and renders them. Node status is read live from each
stream's subscription state, so it is never out of step with the protocol: a NACK is shown
with its time, and as superseded (by which version, when) once a later version is ACKed.

A node whose id and cluster match none of the named resource groups gets only the shared
resources; when named groups exist that is most likely a typo, so it is a warning in the log
(at connect and after each config load) and on the node's /status entry.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane import logs
from controlplane.cache import DEFAULT_GROUP, SnapshotCache
from controlplane.protocol.delta import DeltaStream, DeltaSubscription
from controlplane.protocol.events import (
    Acked,
    Action,
    DeltaPush,
    HealthReported,
    Nacked,
    NackRecord,
    NodeIdentified,
    Push,
    StaleNonceIgnored,
    Subscribed,
)
from controlplane.protocol.sotw import SotwStream, Subscription
from controlplane.resources import BY_TYPE_URL

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def render(self, name: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            label = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{le="{label}"}} {running}')
        lines += [f"{name}_sum {self.total:.6f}", f"{name}_count {running}"]
        return lines


@dataclass
class StreamRecord:
    stream: SotwStream | DeltaStream
    service: str
    peer: str
    connected_at: float


def _enabled(level: int) -> bool:
    return logs.LOGGER.isEnabledFor(level)


def _short(type_url: str) -> str:
    kind = BY_TYPE_URL.get(type_url)
    return kind.short_name if kind else type_url


class TelemetryHook(Protocol):
    """Extra observers of stream actions (proxy.observability.controlplane: OTel spans)."""

    def record(self, stream_id: int, node_id: str, actions: list[Action]) -> None: ...

    def stream_closed(self, stream_id: int) -> None: ...


class Observer:
    """Counts and logs stream events; renders /status JSON and /metrics text."""

    def __init__(self, cache: SnapshotCache, hooks: tuple[TelemetryHook, ...] = ()) -> None:
        self.cache = cache
        self.hooks = hooks
        self.streams: dict[int, StreamRecord] = {}
        self.pushes: dict[str, int] = {}
        self.acks: dict[str, int] = {}
        self.nacks: dict[str, int] = {}
        self.stale_nonces = 0
        self.config_loads = 0
        self.config_errors = 0
        self.last_config_error = ""
        self.push_latency = Histogram()
        self.refused: dict[str, int] = {}  # xDS streams refused by admission, by reason
        self.certificates: dict[str, int] = {}  # CreateCertificate answers, by result
        self._ids = itertools.count(1)

    def opened(self, stream: SotwStream | DeltaStream, service: str, peer: str) -> int:
        stream_id = next(self._ids)
        self.streams[stream_id] = StreamRecord(stream, service, peer, time.time())
        return stream_id

    def closed(self, stream_id: int) -> None:
        record = self.streams.pop(stream_id, None)
        for hook in self.hooks:
            hook.stream_closed(stream_id)
        if record is not None and record.stream.node is not None:
            logs.event("disconnect", stream=stream_id, node=record.stream.node.id)

    def config_loaded(self, groups: int, resources: int) -> None:
        self.config_loads += 1
        self.last_config_error = ""
        logs.event("config_loaded", groups=groups, resources=resources)
        for stream_id, record in sorted(self.streams.items()):
            if record.stream.node is not None:
                self._warn_if_ungrouped(stream_id, record.stream.node)

    def config_rejected(self, error: Exception) -> None:
        self.config_errors += 1
        self.last_config_error = str(error)
        logs.event("config_rejected", logging.ERROR, error=str(error))

    def stream_refused(self, reason: str) -> None:
        """An xDS stream refused by admission (controlplane/ca/admission.py)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def certificate_answered(self, result: str) -> None:
        """A CreateCertificate call answered (controlplane/ca/certificates.py)."""
        self.certificates[result] = self.certificates.get(result, 0) + 1

    def record(self, stream_id: int, actions: list[Action]) -> None:
        record = self.streams.get(stream_id)
        node = record.stream.node.id if record and record.stream.node else ""
        for action in actions:
            self._record_one(stream_id, node, action)
        for hook in self.hooks:
            hook.record(stream_id, node, actions)

    def _record_one(self, stream_id: int, node: str, action: Action) -> None:
        # Log fields are built only when the level is on: at thousands of streams the
        # arguments of discarded events (a sorted list of 1,000 names) cost more than the rest.
        if isinstance(action, Push | DeltaPush):
            kind = _short(action.type_url)
            self.pushes[kind] = self.pushes.get(kind, 0) + 1
            if _enabled(logging.INFO):
                fields: dict[str, Any] = {"stream": stream_id, "node": node, "type": kind,
                                          "version": action.version, "nonce": action.nonce,
                                          "resources": len(action.resources)}
                if isinstance(action, DeltaPush) and action.removed:
                    fields["removed"] = list(action.removed)[:20]
                logs.event("push", **fields)
        elif isinstance(action, Acked):
            kind = _short(action.type_url)
            self.acks[kind] = self.acks.get(kind, 0) + 1
            self.push_latency.observe(action.latency)
            if _enabled(logging.INFO):
                logs.event("ack", stream=stream_id, node=node, type=kind,
                           version=action.version, nonce=action.nonce)
        elif isinstance(action, Nacked):
            kind = _short(action.type_url)
            self.nacks[kind] = self.nacks.get(kind, 0) + 1
            logs.event("nack", logging.WARNING, stream=stream_id, node=node, type=kind,
                       version=action.version, nonce=action.nonce, error=action.message)
        elif isinstance(action, NodeIdentified):
            logs.event("connect", stream=stream_id, node=action.node.id,
                       cluster=action.node.cluster,
                       group=self._group(action.node) or "(shared)")
            self._warn_if_ungrouped(stream_id, action.node)
        elif isinstance(action, Subscribed):
            if _enabled(logging.DEBUG):
                logs.event("subscribe", logging.DEBUG, stream=stream_id, node=node,
                           type=_short(action.type_url), wildcard=action.wildcard,
                           names=sorted(action.names)[:20])
        elif isinstance(action, StaleNonceIgnored):
            self.stale_nonces += 1
        elif isinstance(action, HealthReported):  # not an ACK or NACK (protocol/health.py)
            logs.event("health_report", logging.INFO if action.healthy else logging.WARNING,
                       stream=stream_id, node=node, healthy=action.healthy,
                       message=action.message)

    def _group(self, node: Any) -> str:
        """The node's view (group) key: a look-up, whatever the number of groups."""
        return self.cache.key_for(node) or DEFAULT_GROUP

    def ungrouped_warning(self, node: Any) -> str | None:
        """Why a node gets only the shared resources, when named groups exist; else None."""
        if self._group(node) != DEFAULT_GROUP or len(self.cache.groups) <= 1:
            return None
        named = sorted(name for name in self.cache.groups if name != DEFAULT_GROUP)
        shown = ", ".join(named[:10]) + (f", ... ({len(named)} groups)" if len(named) > 10
                                         else "")
        return (f"node id {node.id!r} and cluster {node.cluster!r} match no resource group "
                f"({shown}): it gets the shared resources only")

    def _warn_if_ungrouped(self, stream_id: int, node: Any) -> None:
        warning = self.ungrouped_warning(node)
        if warning is not None:
            logs.event("node_matches_no_group", logging.WARNING, stream=stream_id, node=node.id,
                       cluster=node.cluster, message=warning)

    # ---- rendering ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        nodes = [self._stream_status(stream_id, record)
                 for stream_id, record in sorted(self.streams.items())]
        groups = {name or "(shared)": snapshot.version
                  for name, snapshot in self.cache.groups.items()}
        status = {"nodes": nodes, "snapshots": groups,
                  "last_config_error": self.last_config_error or None}
        node_errors = getattr(self.cache, "node_errors", None)  # --mesh: why a node gets nothing
        if node_errors is not None:
            status["mesh_node_errors"] = dict(node_errors)
        return status

    def _stream_status(self, stream_id: int, record: StreamRecord) -> dict[str, Any]:
        stream = record.stream
        node = stream.node
        subscriptions = {}
        states: dict[str, Subscription | DeltaSubscription] = dict(stream.subscriptions)
        for type_url, sub in sorted(states.items()):
            subscriptions[_short(type_url)] = {
                "wildcard": sub.wildcard,
                "names": sorted(sub.names),
                "sent_version": sub.sent_version,
                "acked_version": sub.acked_version,
                "awaiting_ack": sub.awaiting_reply,
                "last_nack": _nack_status(sub.last_nack),
            }
        status = {"stream": stream_id, "service": record.service, "peer": record.peer,
                  "id": node.id if node else None, "cluster": node.cluster if node else None,
                  "group": self._group(node) or "(shared)" if node else None,
                  "warning": self.ungrouped_warning(node) if node else None,
                  "connected_at": record.connected_at, "subscriptions": subscriptions}
        health_of = getattr(self.cache, "health_of", None)  # --mesh: its application's health
        health, message = health_of(stream_id) if health_of is not None else ("", "")
        if health:
            status["health"], status["health_message"] = health, message
        return status

    def metrics_text(self) -> str:
        lines = [
            "# HELP pointsman_xds_connected_streams xDS streams currently open.",
            "# TYPE pointsman_xds_connected_streams gauge",
            f"pointsman_xds_connected_streams {len(self.streams)}",
        ]
        for metric, counts, text in (("pointsman_xds_pushes_total", self.pushes, "Responses sent"),
                                     ("pointsman_xds_acks_total", self.acks, "ACKs received"),
                                     ("pointsman_xds_nacks_total", self.nacks, "NACKs received")):
            lines += [f"# HELP {metric} {text}, by resource type.", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{type="{kind}"}} {count}'
                      for kind, count in sorted(counts.items())]
        for metric, counts, text, label in (
                ("pointsman_xds_refused_total", self.refused,
                 "xDS streams refused (identity, certificate, token)", "reason"),
                ("pointsman_certificates_total", self.certificates,
                 "CreateCertificate answers (issued, denied, unauthenticated, invalid)",
                 "result")):
            lines += [f"# HELP {metric} {text}.", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{{label}="{key}"}} {count}'
                      for key, count in sorted(counts.items())]
        lines += ["# HELP pointsman_xds_stale_nonces_total Requests ignored for a stale nonce.",
                  "# TYPE pointsman_xds_stale_nonces_total counter",
                  f"pointsman_xds_stale_nonces_total {self.stale_nonces}",
                  "# HELP pointsman_config_loads_total Snapshots published from the source.",
                  "# TYPE pointsman_config_loads_total counter",
                  f"pointsman_config_loads_total {self.config_loads}",
                  "# HELP pointsman_config_errors_total Config changes rejected.",
                  "# TYPE pointsman_config_errors_total counter",
                  f"pointsman_config_errors_total {self.config_errors}",
                  "# HELP pointsman_xds_push_ack_seconds Time from a push to its ACK.",
                  "# TYPE pointsman_xds_push_ack_seconds histogram"]
        lines += self.push_latency.render("pointsman_xds_push_ack_seconds")
        return "\n".join(lines) + "\n"


def _wall_time(monotonic: float) -> float:
    """A protocol `now` (logs.now(), monotonic) as seconds since the epoch, like connected_at."""
    return round(time.time() - (logs.now() - monotonic), 3)


def _nack_status(nack: NackRecord | None) -> dict[str, Any] | None:
    if nack is None:
        return None
    superseded = None if nack.superseded_at is None else {
        "acked_version": nack.superseded_by, "at": _wall_time(nack.superseded_at)}
    return {"version": nack.version, "message": nack.message, "at": _wall_time(nack.at),
            "superseded": superseded}
