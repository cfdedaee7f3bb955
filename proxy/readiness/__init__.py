"""The application's readiness probe (`pointsman sidecar --readiness-port`): probe.py is the
sans-I/O settings and state machine, runner.py the asyncio checks that feed it and report each
change on the ADS stream (proxy.xds.client.AdsClient.report_health)."""
