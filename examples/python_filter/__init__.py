"""An HTTP filter written in Python against proxy.http.filter.HttpFilter."""
