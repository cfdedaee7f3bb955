"""A sample service for the demo: answers with its name; optionally calls a downstream service.

`--call URL` makes it a "frontend": each request calls URL (its sidecar's egress listener) and
forwards the trace context headers, as any instrumented service does, so one trace spans both
sidecars (W3C Trace Context, https://www.w3.org/TR/trace-context/).
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROPAGATED = ("traceparent", "tracestate", "x-request-id", "b3", "x-b3-traceid", "x-b3-spanid",
              "x-b3-sampled", "x-b3-parentspanid")


def make_handler(name: str, call: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, {"service": name, "healthy": True})
                return
            body: dict[str, object] = {"service": name, "path": self.path,
                                       "x-forwarded-for": self.headers.get("x-forwarded-for")}
            if call:
                headers = {k: v for k in PROPAGATED if (v := self.headers.get(k))}
                request = urllib.request.Request(call + self.path, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        body["downstream"] = json.loads(response.read())
                except OSError as error:
                    self.reply(502, {"service": name, "error": str(error)})
                    return
            self.reply(200, body)

        def reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--call", help="URL prefix of the downstream service (via the sidecar)")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.name, args.call))
    server.daemon_threads = True
    print(f"{args.name} listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
