"""Differential: upstreams that misbehave, Envoy 1.40 vs `pointsman proxy`, one bootstrap.

Scripted HTTP/1.1 and h2c backends answer each path with one fault: a body cut short of its
Content-Length or last chunk, garbage, a bad status line, a head too large, a reset before or
after the response head, a connection closed or GOAWAY. HTTP/1.1 and HTTP/2 clients ask for
each, and three things are compared: what the client saw (status, how much body, and whether
the response ended cleanly, the connection closed, or the stream was reset), and the access
log's %RESPONSE_CODE%, %RESPONSE_FLAGS%, %RESPONSE_CODE_DETAILS% and
%UPSTREAM_TRANSPORT_FAILURE_REASON%.

The rules they show (Envoy router.cc onUpstreamReset): a reset before the response head is a
503 (502 for a protocol error) with the reset reason in the details; after it, the downstream
stream is reset (HTTP/1.1: the connection closes, no last chunk is invented; HTTP/2:
RST_STREAM), so a truncated answer never looks complete.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
LOG_FORMAT = {"path": "%REQ(:PATH)%", "protocol": "%PROTOCOL%", "code": "%RESPONSE_CODE%",
              "flags": "%RESPONSE_FLAGS%", "details": "%RESPONSE_CODE_DETAILS%",
              "transport": "%UPSTREAM_TRANSPORT_FAILURE_REASON%"}

# HTTP/1.1 upstream: path -> (bytes it answers with, then it closes the connection).
H1_SCRIPTS = {
    "cl_truncated": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
    "chunked_truncated": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    "bad_chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n",
    "garbage": b"garbage garbage\r\n\r\n",
    "bad_status_line": b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n",
    "head_too_large": (b"HTTP/1.1 200 OK\r\nx-big: " + b"x" * 200_000
                       + b"\r\ncontent-length: 2\r\n\r\nok"),
    "partial_head": b"HTTP/1.1 200 OK\r\ncontent-le",
    "nothing": b"",
    "close_delimited": b"HTTP/1.1 200 OK\r\n\r\nthe body ends at the close",
    "continue_then_close": b"HTTP/1.1 100 Continue\r\n\r\n",
}
# h2c upstream: each path's fault (see _h2_fault).
H2_FAULTS = ("rst_before_head", "refused_stream", "rst_after_head", "close_after_head",
             "close_before_head", "goaway_before_head", "content_length_short",
             "uppercase_header", "no_status")
REFUSED_CONNECT = "refused_connect"


def bootstrap(port: int, h1_port: int, h2_port: int, log: Path) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/h1/{name}"}, "route": {"cluster": "h1", "timeout": "3s"}}
              for name in H1_SCRIPTS]
    routes += [{"match": {"prefix": "/h2/"}, "route": {"cluster": "h2", "timeout": "3s"}},
               {"match": {"prefix": f"/{REFUSED_CONNECT}"}, "route": {"cluster": "closed"}}]
    clusters = [static_cluster("h1", [h1_port]),
                static_cluster("h2", [h2_port], typed_extension_protocol_options=H2_OPTIONS),
                static_cluster("closed", [free_port()])]
    access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": FILE_LOG, "path": str(log), "log_format": {"json_format": LOG_FORMAT}}}]
    return http_bootstrap(port, routes, clusters, access_log=access_log)


# --- scripted upstreams --------------------------------------------------------------------------

async def _h1_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        name = head.split(b" ")[1].decode().rsplit("/", 1)[-1]
        writer.write(H1_SCRIPTS[name])
        await writer.drain()
        await asyncio.sleep(0.2)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _h2_fault(conn: h2.connection.H2Connection, stream_id: int, name: str) -> bool:
    """Apply the fault `name` to the stream; True when the connection is to close now."""
    if name == "rst_before_head":
        conn.reset_stream(stream_id, 2)  # INTERNAL_ERROR
    elif name == "refused_stream":
        conn.reset_stream(stream_id, 7)
    elif name == "goaway_before_head":
        conn.close_connection(last_stream_id=0)
    elif name == "close_before_head":
        return True
    elif name == "uppercase_header":
        conn.send_headers(stream_id, [(":status", "200"), ("Upper", "x")], end_stream=True)
    elif name == "no_status":
        conn.send_headers(stream_id, [("x-no", "status")], end_stream=True)
    elif name == "content_length_short":
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", "100")])
        conn.send_data(stream_id, b"0123456789", end_stream=True)
    else:  # rst_after_head, close_after_head: a head and some body first
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", "100")])
        conn.send_data(stream_id, b"0123456789")
    return False


async def _h2_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, validate_outbound_headers=False, normalize_outbound_headers=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if not isinstance(event, h2.events.RequestReceived):
                    continue
                name = dict(event.headers)[b":path"].decode().rsplit("/", 1)[-1]
                close = _h2_fault(conn, event.stream_id, name)
                writer.write(conn.data_to_send())
                if name in ("rst_after_head", "close_after_head"):
                    await writer.drain()
                    await asyncio.sleep(0.2)  # the head and body reach the client first
                    if name == "rst_after_head":
                        conn.reset_stream(event.stream_id, 2)
                    else:
                        close = True
                if close:
                    return
            writer.write(conn.data_to_send())
    except (ConnectionError, h2.exceptions.ProtocolError):
        pass
    finally:
        writer.close()


# --- clients -------------------------------------------------------------------------------------

def _h1_verdict(received: bytes, closed: bool) -> dict[str, Any]:
    """Status, body bytes, and how the response ended: "complete" (its framing said so),
    "closed" (the connection closed first) or "open" (neither, within the wait)."""
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines[0].startswith(b"HTTP/") else None
    fields = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    if b"content-length" in fields:
        complete = len(body) >= int(fields[b"content-length"])
        size = len(body)
    elif fields.get(b"transfer-encoding") == b"chunked":
        complete = body.endswith(b"0\r\n\r\n")
        size = len(_dechunk(body))
    else:
        complete, size = False, len(body)
    return {"status": status, "body": size,
            "end": "complete" if complete else "closed" if closed else "open"}


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line, 16)
        except ValueError:
            break
        out += rest[:size]
        body = rest[size + 2:]
        if size == 0:
            break
    return bytes(out)


async def h1_request(port: int, path: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received, closed = bytearray(), False
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: faults\r\n\r\n".encode())
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    chunk = await reader.read(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            received += chunk
            if _h1_verdict(bytes(received), False)["end"] == "complete":
                break
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    return _h1_verdict(bytes(received), closed)


async def h2_request(port: int, path: str) -> dict[str, Any]:
    """Status, body bytes and the stream's end: "complete" (END_STREAM) or "reset <code>"."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "faults"),
                          (":path", path)], end_stream=True)
    writer.write(conn.data_to_send())
    outcome: dict[str, Any] = {"status": None, "body": 0, "end": "open"}
    try:
        async with asyncio.timeout(2.5):
            while outcome["end"] == "open" and (data := await reader.read(65536)):
                for event in conn.receive_data(data):
                    _note(outcome, event)
                writer.write(conn.data_to_send())
    except (TimeoutError, ConnectionError):
        pass
    except h2.exceptions.ProtocolError as error:  # e.g. END_STREAM short of content-length
        outcome["end"] = f"invalid: {type(error).__name__}"
    finally:
        writer.close()
    return outcome


def _note(outcome: dict[str, Any], event: Any) -> None:
    if isinstance(event, h2.events.ResponseReceived):
        outcome["status"] = int(dict(event.headers)[b":status"])
    elif isinstance(event, h2.events.DataReceived):
        outcome["body"] += len(event.data)
    elif isinstance(event, h2.events.StreamEnded):
        outcome["end"] = "complete"
    elif isinstance(event, h2.events.StreamReset):
        outcome["end"] = f"reset {int(event.error_code)}"


# --- the run -------------------------------------------------------------------------------------

CASES = ([f"/h1/{name}" for name in H1_SCRIPTS] + [f"/h2/{name}" for name in H2_FAULTS]
         + [f"/{REFUSED_CONNECT}"])


async def _observe(kind: type[Envoy] | type[Pointsman], h1_port: int, h2_port: int
                   ) -> dict[str, Any]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="faults-")) / "access.log"
    proxy = kind(bootstrap(port, h1_port, h2_port, log), name=f"{kind.__name__}-faults")
    try:
        await asyncio.to_thread(proxy.wait_ready)
        h1, h2_outcomes = await _run_cases(port)
        lines = await _log_lines(log, 2 * len(CASES))
    finally:
        await asyncio.to_thread(proxy.stop)
    logged = {(line["path"], line["protocol"]): line for line in lines}
    return {"h1": h1, "h2": h2_outcomes, "log": logged}


async def _run_cases(port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each case with an HTTP/1.1 and an HTTP/2 client. HTTP/1.1 upstream connections carry
    one request each, so those cases run at once; h2c cases share the upstream connection,
    which a malformed response ends for every stream on it (Envoy does the same), so they
    run one after another."""
    h1: dict[str, Any] = {}
    h2_outcomes: dict[str, Any] = {}

    async def one(path: str) -> None:
        h1[path] = await h1_request(port, path)
        h2_outcomes[path] = await h2_request(port, path)

    await asyncio.gather(*(one(path) for path in CASES if not path.startswith("/h2/")))
    for path in CASES:
        if path.startswith("/h2/"):
            await one(path)
    return h1, h2_outcomes


def _read_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def _log_lines(log: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = await asyncio.to_thread(_read_lines, log)
        if len(lines) >= count:
            break
        await asyncio.sleep(0.1)
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def observed() -> dict[str, dict[str, Any]]:
    async def both() -> dict[str, dict[str, Any]]:
        h1_server = await start_server(_h1_upstream)
        h2_server = await start_server(_h2_upstream)
        try:
            return {name: await _observe(kind, port_of(h1_server), port_of(h2_server))
                    for name, kind in (("envoy", Envoy), ("ours", Pointsman))}
        finally:
            await stop_servers(h1_server, h2_server)
    return asyncio.run(both())


@pytest.mark.parametrize("path", CASES)
def test_http1_client_sees_what_envoy_shows(observed: dict[str, Any], path: str) -> None:
    assert observed["ours"]["h1"][path] == observed["envoy"]["h1"][path]


@pytest.mark.parametrize("path", CASES)
def test_http2_client_sees_what_envoy_shows(observed: dict[str, Any], path: str) -> None:
    assert observed["ours"]["h2"][path] == observed["envoy"]["h2"][path]


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/2"])
@pytest.mark.parametrize("path", CASES)
def test_access_log_like_envoy(observed: dict[str, Any], path: str, protocol: str) -> None:
    envoy = observed["envoy"]["log"].get((path, protocol))
    assert envoy is not None
    assert observed["ours"]["log"].get((path, protocol)) == envoy


def test_the_reference_shows_the_rules(observed: dict[str, Any]) -> None:
    """What the comparison above stands on, read off Envoy 1.40 (so a change of reference is
    seen): truncated answers never end cleanly, protocol errors are 502 UPE."""
    envoy = observed["envoy"]
    assert envoy["h1"]["/h1/cl_truncated"] == {"status": 200, "body": 10, "end": "closed"}
    assert envoy["h1"]["/h1/chunked_truncated"] == {"status": 200, "body": 5, "end": "closed"}
    assert envoy["h2"]["/h1/cl_truncated"]["end"].startswith("reset")
    assert envoy["log"][("/h1/cl_truncated", "HTTP/1.1")]["details"] == \
        "upstream_reset_after_response_started{protocol_error}"
    for path in ("/h1/garbage", "/h1/bad_status_line", "/h1/head_too_large"):
        line = envoy["log"][(path, "HTTP/1.1")]
        assert (line["code"], line["flags"]) == (502, "UPE")
    assert envoy["log"][("/h2/rst_before_head", "HTTP/2")]["flags"] == "UR"
