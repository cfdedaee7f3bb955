"""xDS protocol state machines, sans-I/O: requests and snapshots in, responses and events out."""
