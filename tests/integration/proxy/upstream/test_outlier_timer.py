"""The manager's outlier-detection timer un-ejects hosts on the real clock."""

from __future__ import annotations

import asyncio
import random

from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
from proxy.upstream.host import HealthFlag
from proxy.upstream.manager import ClusterManager
from tests.unit.proxy.upstream.builders import cluster_proto, static_endpoints


async def test_ejected_host_returns_after_base_ejection_time() -> None:
    config = translate_cluster(cluster_proto(
        load_assignment={"cluster_name": "backend", "endpoints": [static_endpoints(1, 2, 3)]},
        outlier_detection={"consecutive_5xx": 2, "interval": "0.05s",
                           "base_ejection_time": "0.2s"}))
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([config])
    await manager.start()
    try:
        runtime = manager.get("backend")
        assert runtime is not None
        host = runtime.hosts[0]
        for _ in range(2):
            runtime.request_started(host)
            runtime.request_finished(host, http_status=502)
        assert host.flags & HealthFlag.FAILED_OUTLIER_CHECK
        for _ in range(250):  # up to 5 s on a busy machine; 0.2-0.25 s when idle
            if not host.flags & HealthFlag.FAILED_OUTLIER_CHECK:
                break
            await asyncio.sleep(0.02)
        assert not host.flags & HealthFlag.FAILED_OUTLIER_CHECK
        assert runtime.stats.gauge("cluster.backend.outlier_detection.ejections_active").value == 0
    finally:
        await manager.close()
