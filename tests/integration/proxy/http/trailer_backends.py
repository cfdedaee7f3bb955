"""Backends that exchange trailers (tests of Http1ProtocolOptions.enable_trailers)."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h11

from tests.support.tcp_servers import port_of, start_server, stop_servers


class TrailerBackends:
    """One h2c and one HTTP/1.1 server; both record request trailers per path and answer
    "ok" with the response trailer `x-backend-trailer: <path>` (h2c also grpc-status: 0)."""

    def __init__(self) -> None:
        self.request_trailers: dict[str, list[tuple[str, str]]] = {}
        self.servers: list[asyncio.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> tuple[int, int]:
        for handler in (self._serve_h2, self._serve_h1):
            self.servers.append(await start_server(handler))
        return (port_of(self.servers[0]),
                port_of(self.servers[1]))

    async def close(self) -> None:
        await stop_servers(*self.servers)
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.sleep(0.01)

    async def _serve_h2(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        connection = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="latin-1"))
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        paths: dict[int, str] = {}
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        paths[event.stream_id] = dict(event.headers)[":path"]
                    elif isinstance(event, h2.events.DataReceived):
                        connection.acknowledge_received_data(event.flow_controlled_length,
                                                             event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        self.request_trailers[paths[event.stream_id]] = [
                            (n, v) for n, v in event.headers]
                    elif isinstance(event, h2.events.StreamEnded):
                        path = paths[event.stream_id]
                        self.request_trailers.setdefault(path, [])
                        connection.send_headers(event.stream_id, [(":status", "200")])
                        connection.send_data(event.stream_id, b"ok")
                        connection.send_headers(event.stream_id, [
                            ("grpc-status", "0"), ("x-backend-trailer", path)], end_stream=True)
                writer.write(connection.data_to_send())
        except ConnectionError:
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _serve_h1(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        connection = h11.Connection(h11.SERVER)
        path = ""
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        return
                    connection.receive_data(data)
                elif isinstance(event, h11.Request):
                    path = event.target.decode()
                elif isinstance(event, h11.EndOfMessage):
                    self.request_trailers[path] = [(n.decode(), v.decode())
                                                   for n, v in event.headers]
                    writer.write(connection.send(h11.Response(status_code=200, headers=[
                        ("transfer-encoding", "chunked")])))
                    writer.write(connection.send(h11.Data(data=b"ok")))
                    writer.write(connection.send(h11.EndOfMessage(headers=[
                        ("x-backend-trailer", path)])))
                    await writer.drain()
                    connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()
