"""The HTTP codecs, sans-I/O, shared by both sides of the proxy: the bottom layer of the data
path (network -> http -> upstream -> model -> codec; nothing here imports from above).

- `headers`: protocol-neutral request/response heads and the header multi-map;
- `events`: what the codecs return (past-tense event classes), and Envoy's reset reasons;
- `http1`: HTTP/1.1 over httptools (llhttp), a server and a client codec;
- `http2`: HTTP/2 over libnghttp2 (`ngh2`), one codec for either side;
- `flow`: write flow control (transport backpressure, sending DATA within HTTP/2 windows).
"""
