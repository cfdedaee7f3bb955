"""A Python HTTP filter for the Pointsman sidecar: tag requests, refuse some user agents.

Configured in a bootstrap through `xds.type.v3.TypedStruct` (see bootstrap.yaml here):

    config:
      header: x-request-tag        # request header added upstream, value = tag
      tag: from-python
      blocked_user_agents: [badbot]  # answered 403 locally

Each stream gets its own instance, so per-request state can live on `self`.
"""

from __future__ import annotations

import time
from typing import Any

from proxy.http.filter import HttpFilter, HttpStream, LocalReply, ResponseHead


class TagFilter(HttpFilter):
    def __init__(self, config: dict[str, Any]) -> None:
        self.header = str(config.get("header", "x-request-tag")).lower()
        self.tag = str(config.get("tag", "python"))
        self.blocked = {str(agent).lower() for agent in config.get("blocked_user_agents", [])}
        self.started = 0.0

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        agent = (stream.request.headers.get("user-agent") or "").lower()
        if agent in self.blocked:
            return LocalReply(403, "blocked by the python filter", details="python_filter")
        stream.request.headers.set(self.header, self.tag)
        self.started = time.monotonic()
        return None

    def on_response_headers(self, stream: HttpStream, head: ResponseHead) -> None:
        elapsed_ms = (time.monotonic() - self.started) * 1000 if self.started else 0.0
        head.headers.set("x-python-filter-ms", f"{elapsed_ms:.1f}")
