"""Protocol-neutral request/response heads passed between codecs, filters and the router.

Header names are lower-case `str` (HTTP/2 requires it; HTTP/1 names are case-insensitive) and
values are latin-1 `str` as on the wire. Pseudo-headers live in dedicated fields, never in the
list, so HTTP/1.1 and HTTP/2 look the same to filters (Envoy's HeaderMap does the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field


class Headers:
    """An ordered multi-map of lower-case names to values."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    @classmethod
    def adopt(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers over `items` itself (no copy): the caller built the list and lets it go."""
        headers = cls()  # (not cls.__new__: mypyc compiles this module, `make compiled`)
        headers._items = items
        return headers

    def get(self, name: str) -> str | None:
        """The first value of `name`, or None."""
        for key, value in self._items:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key == name]

    def joined(self, name: str) -> str | None:
        """All values of `name` joined by ',' (Envoy matches headers this way), or None."""
        values = self.get_all(name)
        return ",".join(values) if values else None

    def __contains__(self, name: object) -> bool:
        for key, _ in self._items:
            if key == name:
                return True
        return False

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` by one value, kept at the first one's position."""
        items = self._items
        for index, (key, _) in enumerate(items):
            if key == name:
                items[index] = (name, value)
                for later in range(index + 1, len(items)):
                    if items[later][0] == name:  # rare: drop the other values
                        items[later:] = [item for item in items[later:] if item[0] != name]
                        break
                return
        items.append((name, value))

    def remove(self, name: str) -> None:
        self._items = [item for item in self._items if item[0] != name]

    def remove_all(self, names: AbstractSet[str]) -> None:
        """Remove every header whose name is in `names`, in one pass."""
        for key, _ in self._items:
            if key in names:
                self._items = [item for item in self._items if item[0] not in names]
                return

    def remove_prefix(self, prefix: str) -> None:
        self._items = [item for item in self._items if not item[0].startswith(prefix)]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class RequestHead:
    method: str
    path: str  # origin-form path with query ("/a?b=1"); for CONNECT, the authority
    authority: str  # Host (HTTP/1.1) or :authority (HTTP/2)
    scheme: str = "http"
    headers: Headers = field(default_factory=Headers)
    protocol: str = "HTTP/1.1"  # "HTTP/1.0", "HTTP/1.1", "HTTP/2"
    upgrade: str = ""  # lower-case Upgrade token ("websocket") when the client asks for one

    @property
    def path_only(self) -> str:
        return self.path.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.path.partition("?")[2]

    def header(self, name: str) -> str | None:
        """A header or pseudo-header value (":path", ":method", ":authority", ":scheme")."""
        if name.startswith(":"):
            return {":path": self.path, ":method": self.method, ":authority": self.authority,
                    ":scheme": self.scheme}.get(name)
        if name == "host":
            return self.authority
        return self.headers.joined(name)

    def is_grpc(self) -> bool:
        # gRPC over HTTP/2 spec: content-type "application/grpc" with an optional "+proto" etc.
        return (self.headers.get("content-type") or "").startswith("application/grpc")


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: Headers = field(default_factory=Headers)
    reason: str = ""
