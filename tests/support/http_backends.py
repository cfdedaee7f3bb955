"""Echo HTTP backends for L7 tests: HTTP/1.1 (h11) or h2c (h2), each on its own thread and loop.

Independent of the sidecar's codecs on purpose. Every response body is JSON describing the
request as the backend saw it: {"backend", "method", "path", "authority", "headers", "body"}.
Request headers steer the reply:
  x-echo-status: 503          respond with this status
  x-echo-delay: 0.5           wait this many seconds before answering
  x-echo-header: name=value   add a response header (repeatable)
  x-echo-size: 100000         answer with this many bytes of "x" instead of JSON
  x-echo-trailer: name=value  (h2c) send a trailer
The h2c side records the error code of each RST_STREAM it receives in `resets`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import h11

from tests.support.ports import free_port
from tests.support.tcp_servers import start_server, stop_servers


class EchoBackend:
    def __init__(self, name: str, *, http2: bool = False, port: int | None = None,
                 fail_status: int | None = None, max_streams: int | None = None,
                 ssl_context: Any = None, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host  # any 127.0.0.0/8 address: mesh tests give each app its own
        # TLS: with ALPN set on the context, "h2" picks HTTP/2, anything else HTTP/1.1.
        self.ssl_context = ssl_context
        self.max_streams = max_streams  # h2c: SETTINGS_MAX_CONCURRENT_STREAMS
        self.connections = 0
        self.fail_status = fail_status  # answer every request with this status
        self.http2 = http2
        self.port = port or free_port()
        self.requests: Counter[str] = Counter()
        self.seen: list[dict[str, Any]] = []
        self.resets: list[int] = []  # h2c: error codes of the RST_STREAMs received
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"backend-{name}", daemon=True)

    def start(self) -> EchoBackend:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"backend {self.name} did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> EchoBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        handler = self._serve_h2 if self.http2 else self._serve_h1
        if self.ssl_context is not None:
            handler = self._serve_by_alpn
        self._server = self._loop.run_until_complete(
            start_server(handler, host=self.host, port=self.port, ssl=self.ssl_context))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(stop_servers(self._server))
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(asyncio.sleep(0.01))  # connection_lost callbacks
            self._loop.close()

    # --- behaviour -----------------------------------------------------------------------------

    def _record(self, method: str, path: str, authority: str,
                headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
        info = {"backend": self.name, "method": method, "path": path, "authority": authority,
                "headers": headers, "body": body.decode("latin-1")}
        self.requests[path] += 1
        self.seen.append(info)
        return info

    def _reply(self, info: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes,
                                              list[tuple[str, str]], float]:
        headers = info["headers"]
        lookup = {name: value for name, value in headers}
        status = self.fail_status or int(lookup.get("x-echo-status", "200"))
        delay = float(lookup.get("x-echo-delay", "0"))
        extra = [tuple(v.split("=", 1)) for n, v in headers if n == "x-echo-header"]
        trailers = [tuple(v.split("=", 1)) for n, v in headers if n == "x-echo-trailer"]
        if "x-echo-size" in lookup:
            body = b"x" * int(lookup["x-echo-size"])
            content_type = "application/octet-stream"
        else:
            body = json.dumps(info).encode()
            content_type = "application/json"
        response_headers = [("content-type", content_type), ("x-backend", info["backend"]),
                            *extra]
        return status, response_headers, body, trailers, delay  # type: ignore[return-value]

    async def _serve_by_alpn(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            await self._serve_h2(reader, writer)
        else:
            await self._serve_h1(reader, writer)

    # --- HTTP/1.1 (h11) ------------------------------------------------------------------------

    async def _serve_h1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_h1_request(connection, reader)
                if request is None:
                    return
                headers = [(n.decode().lower(), v.decode("latin-1")) for n, v in request.headers]
                authority = next((v for n, v in headers if n == "host"), "")
                info = self._record(request.method.decode(), request.target.decode("latin-1"),
                                    authority, headers, body)
                status, response_headers, payload, _, delay = self._reply(info)
                if delay:
                    await asyncio.sleep(delay)
                response_headers.append(("content-length", str(len(payload))))
                writer.write(connection.send(h11.Response(status_code=status,
                                                          headers=response_headers)))
                if request.method != b"HEAD":
                    writer.write(connection.send(h11.Data(data=payload)))
                writer.write(connection.send(h11.EndOfMessage()))
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError, h11.LocalProtocolError):
            return
        except asyncio.CancelledError:
            writer.transport.abort()  # the backend stops: drop unsent bytes, close now
            return
        finally:
            writer.close()

    @staticmethod
    async def _read_h1_request(connection: h11.Connection, reader: asyncio.StreamReader
                               ) -> tuple[Any, bytes]:
        request = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                connection.receive_data(data)
                if not data and connection.their_state is not h11.DONE:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    # --- h2c (h2) ------------------------------------------------------------------------------

    async def _serve_h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="latin-1")
        connection = h2.connection.H2Connection(config)
        connection.initiate_connection()
        self.connections += 1
        if self.max_streams is not None:
            connection.update_settings(
                {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        writer.write(connection.data_to_send())
        streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        tasks: set[asyncio.Task[None]] = set()
        window = asyncio.Event()
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.WindowUpdated | h2.events.StreamReset):
                        window.set()  # a reset stream's sender stops waiting for its window
                    if isinstance(event, h2.events.StreamReset):
                        self.resets.append(event.error_code)
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (list(event.headers), bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        connection.acknowledge_received_data(event.flow_controlled_length,
                                                             event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        task = asyncio.ensure_future(self._answer_h2(
                            connection, writer, window, event.stream_id, headers, bytes(body)))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                writer.write(connection.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            return
        except asyncio.CancelledError:
            writer.transport.abort()  # the backend stops: drop unsent bytes, close now
            return
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    async def _answer_h2(self, connection: h2.connection.H2Connection,
                         writer: asyncio.StreamWriter, window: asyncio.Event, stream_id: int,
                         raw: list[tuple[str, str]], body: bytes) -> None:
        pseudo = {n: v for n, v in raw if n.startswith(":")}
        headers = [(n, v) for n, v in raw if not n.startswith(":")]
        info = self._record(pseudo.get(":method", ""), pseudo.get(":path", ""),
                            pseudo.get(":authority", ""), headers, body)
        status, response_headers, payload, trailers, delay = self._reply(info)
        if delay:
            await asyncio.sleep(delay)
        try:
            connection.send_headers(stream_id, [(":status", str(status)), *response_headers])
            while True:
                allowed = min(connection.local_flow_control_window(stream_id),
                              connection.max_outbound_frame_size)
                if allowed <= 0 and payload:
                    writer.write(connection.data_to_send())
                    window.clear()
                    await window.wait()
                    continue
                chunk, payload = payload[:allowed], payload[allowed:]
                connection.send_data(stream_id, chunk, end_stream=not payload and not trailers)
                if not payload:
                    break
            if trailers:
                connection.send_headers(stream_id, trailers, end_stream=True)
            writer.write(connection.data_to_send())
        except h2.exceptions.ProtocolError:
            return
