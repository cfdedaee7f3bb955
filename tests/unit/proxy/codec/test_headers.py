"""The ordered header multi-map the codecs, filters and router share."""

from __future__ import annotations

from proxy.codec.headers import Headers


def test_set_replaces_every_value_at_the_first_position() -> None:
    headers = Headers([("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("a", "5")])
    headers.set("a", "x")
    assert headers.items() == [("a", "x"), ("b", "2"), ("c", "4")]
    headers.set("a", "y")  # single value: replaced in place
    assert headers.items() == [("a", "y"), ("b", "2"), ("c", "4")]
    headers.set("d", "z")  # absent: appended
    assert headers.items()[-1] == ("d", "z")


def test_membership_get_and_removal() -> None:
    headers = Headers([("a", "1"), ("b", "2"), ("a", "3")])
    assert "a" in headers and "z" not in headers
    assert headers.get("a") == "1" and headers.get_all("a") == ["1", "3"]
    assert headers.joined("a") == "1,3"
    headers.remove_all({"a", "z"})
    assert headers.items() == [("b", "2")]
    headers.remove_all({"z"})  # nothing to remove: unchanged
    assert headers.items() == [("b", "2")]
