"""Built-in HTTP filters; importing this package registers them (proxy.http.filter)."""
