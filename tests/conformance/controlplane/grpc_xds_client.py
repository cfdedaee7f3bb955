"""A proxyless gRPC client run as its own process (GRPC_XDS_BOOTSTRAP must be set before grpc
starts): calls `xds:///<name>` in a loop and prints which backend answered, one per line."""

from __future__ import annotations

import sys
import time

import grpc

METHOD = "/pointsman.test.Who/Am"


def main(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        while True:
            try:
                reply = call(b"", timeout=2)
                print(reply.decode(), flush=True)
            except grpc.RpcError as error:
                print(f"ERROR {error.code().name} {error.details()}", flush=True)
                time.sleep(0.2)
            time.sleep(0.01)


if __name__ == "__main__":
    main(sys.argv[1])
