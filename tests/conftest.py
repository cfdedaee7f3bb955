import os

# asyncio debug mode in tests: slow callbacks and never-awaited coroutines become visible.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")
