"""`make compiled` leaves extension modules beside the sources; one older than its source
would run old code, so importing proxy.codec refuses it (proxy/codec/__init__.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.codec import _refuse_stale_compiled


def test_a_compiled_module_older_than_its_source_is_refused(tmp_path: Path) -> None:
    compiled = tmp_path / "http1.cpython-311-x86_64-linux-gnu.so"
    source = tmp_path / "http1.py"
    compiled.write_bytes(b"")
    source.write_text("")
    os.utime(compiled, (1_000, 1_000))
    os.utime(source, (2_000, 2_000))
    with pytest.raises(ImportError, match=r"older than http1\.py"):
        _refuse_stale_compiled(tmp_path)
    os.utime(compiled, (3_000, 3_000))  # rebuilt
    _refuse_stale_compiled(tmp_path)
