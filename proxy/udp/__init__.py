"""UDP proxying (Envoy's `envoy.filters.udp_listener.udp_proxy`): the sans-I/O session table
(sessions.py), its stats with Envoy's names (stats.py) and the asyncio adapter (proxy.py)."""
