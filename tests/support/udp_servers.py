"""DNS-shaped UDP backends for tests: each answers every query with its own name.

A query is a datagram whose first two bytes are an ID (as in DNS, RFC 1035 section 4.1.1);
the answer is the ID followed by the backend's name, so a client can match answers to queries
and see which backend answered. Each backend can also accept TCP connections on a health port
(for a cluster's `tcp_health_check`), which `set_healthy(False)` closes.

The servers run in a thread each (the proxies under test are other processes); `stop()`
closes every socket and joins the thread.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

UDP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig"


class NamedUdpBackend:
    def __init__(self, name: str, *, health_port: bool = False, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay  # seconds before each answer (answers are sent in order)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peers: set[tuple[str, int]] = set()  # the proxy's upstream sockets seen
        self.received = 0
        self._health: socket.socket | None = None
        self.health_port = 0
        if health_port:
            self._health = socket.create_server(("127.0.0.1", 0))
            self.health_port = self._health.getsockname()[1]
        self._stop_r, self._stop_w = socket.socketpair()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"udp-{name}", daemon=True)
        self._thread.start()

    def set_healthy(self, healthy: bool) -> None:
        """Open or close the TCP health port (TCP health checks connect to it)."""
        with self._lock:
            if healthy and self._health is None:
                self._health = socket.create_server(("127.0.0.1", self.health_port))
            elif not healthy and self._health is not None:
                self._health.close()
                self._health = None
        self._stop_w.send(b"w")  # wake the loop so it watches the new socket set

    def _run(self) -> None:
        while True:
            with self._lock:
                health = self._health
            watched: list[Any] = [self.sock, self._stop_r] + ([health] if health else [])
            readable, _, _ = select.select(watched, [], [])
            if self._stop_r in readable:
                if self._stop_r.recv(1) == b"s":
                    return
                continue
            if health is not None and health in readable:
                try:
                    health.accept()[0].close()
                except OSError:
                    pass
            if self.sock in readable:
                data, peer = self.sock.recvfrom(65535)
                self.received += 1
                self.peers.add(peer)
                if self.delay:
                    time.sleep(self.delay)
                self.sock.sendto(data[:2] + self.name.encode(), peer)

    def stop(self) -> None:
        self._stop_w.send(b"s")
        self._thread.join(5)
        for sock in (self.sock, self._stop_r, self._stop_w, self._health):
            if sock is not None:
                sock.close()


def query(client: socket.socket, target: tuple[str, int], query_id: int,
          timeout: float = 5.0) -> str:
    """Send one query from `client` and return the name of the backend that answered."""
    client.settimeout(timeout)
    ident = query_id.to_bytes(2, "big")
    client.sendto(ident + b"\x01\x00\x00\x01example", target)
    while True:
        data = client.recv(65535)
        if data[:2] == ident:
            return data[2:].decode()


def udp_client(source_ip: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source_ip, 0))
    return sock


def udp_proxy_listener(name: str, port: int, config: dict[str, Any], *,
                       host: str = "127.0.0.1", **extra: Any) -> dict[str, Any]:
    """A UDP listener whose only listener filter is udp_proxy with `config`."""
    return {
        "name": name,
        "address": {"socket_address": {"address": host, "port_value": port,
                                       "protocol": "UDP"}},
        "listener_filters": [{"name": "envoy.filters.udp_listener.udp_proxy",
                              "typed_config": {"@type": UDP_PROXY_TYPE, **config}}],
        **extra,
    }
