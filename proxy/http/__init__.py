"""The sidecar's L7: codecs, the HTTP filter chain, routing and the router."""
