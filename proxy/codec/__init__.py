"""The HTTP codecs, sans-I/O, shared by both sides of the proxy: the bottom layer of the data
path (network -> http -> upstream -> model -> codec; nothing here imports from above).

- `headers`: protocol-neutral request/response heads and the header multi-map;
- `events`: what the codecs return (past-tense event classes), and Envoy's reset reasons;
- `http1`: HTTP/1.1 over httptools (llhttp), a server and a client codec;
- `http2`: HTTP/2 over libnghttp2 (`ngh2`), one codec for either side;
- `flow`: write flow control (transport backpressure, sending DATA within HTTP/2 windows).

`headers` and `http1` may be compiled with mypyc (`make compiled`: extension modules beside
the sources, which Python imports first; `make uncompiled` removes them; the sources are the
pure-Python fallback). A compiled module older than its source would run old code: importing
the package then fails, naming it.
"""

from pathlib import Path

_HERE = Path(__file__).parent


def _refuse_stale_compiled(here: Path = _HERE) -> None:
    for compiled in here.glob("*.so"):
        source = here / (compiled.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
            raise ImportError(f"{compiled} is older than {source.name}: run `make compiled` "
                              "again, or `make uncompiled` for the pure-Python modules")


_refuse_stale_compiled()
