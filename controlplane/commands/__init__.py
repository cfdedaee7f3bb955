"""`pointsman` verbs that work on mesh objects (analyze, explain), one module each with its own
argument parser and a `main(argv) -> exit code`; controlplane.cli dispatches to them."""
