"""A small h2c (HTTP/2 over cleartext, RFC 9113 section 3.3) JSON server for the demo's `api`
app, on the `h2` library's sans-I/O connection: each request is answered with
`{"backend": NAME, "method", "path", "authority"}` after the delay the caller asks for in
`x-echo-delay` (seconds), so the demo's traces show some latency.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class H2cJsonApp:
    def __init__(self, name: str) -> None:
        self.name = name

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._connection, host, port)
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        h2c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="latin-1"))
        h2c.initiate_connection()
        writer.write(h2c.data_to_send())
        answers: set[asyncio.Task[None]] = set()
        try:
            while data := await reader.read(65536):
                for event in h2c.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        task = asyncio.create_task(self._answer(h2c, writer, event))
                        answers.add(task)
                        task.add_done_callback(answers.discard)
                    elif isinstance(event, h2.events.DataReceived):  # bodies are not read
                        h2c.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
                writer.write(h2c.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            for task in answers:
                task.cancel()
            writer.close()

    async def _answer(self, h2c: h2.connection.H2Connection, writer: asyncio.StreamWriter,
                      request: h2.events.RequestReceived) -> None:
        # header_encoding above makes h2 hand names and values over as str
        headers = cast(dict[str, str], dict(request.headers or []))
        await asyncio.sleep(float(headers.get("x-echo-delay", "0")))
        body = json.dumps({"backend": self.name, "method": headers.get(":method"),
                           "path": headers.get(":path"),
                           "authority": headers.get(":authority")}).encode()
        try:  # a small body: it fits the initial 65,535-byte stream window (RFC 9113 6.9.2)
            h2c.send_headers(request.stream_id, [
                (":status", "200"), ("content-type", "application/json"),
                ("content-length", str(len(body)))])
            h2c.send_data(request.stream_id, body, end_stream=True)
            writer.write(h2c.data_to_send())
        except h2.exceptions.ProtocolError:  # the stream was reset meanwhile
            pass
