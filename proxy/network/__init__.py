"""Network filters: the terminal filter of a filter chain (tcp_proxy, http_connection_manager)."""
