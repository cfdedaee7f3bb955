"""ListenerManager.stage() builds a whole listener set before any of it serves, all or nothing;
activate() swaps in what was staged (no sockets: `bind=False`, the models are built here)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from protos.errors import ConfigError
from proxy.context import ServerContext
from proxy.listeners.manager import ListenerManager
from proxy.model.listener import FilterChain, FilterChainMatch, Listener, NetworkFilterConfig
from proxy.network.base import register, unregister
from proxy.stats import Stats


@dataclass(frozen=True)
class Tagged:
    tag: str
    fails: bool = False


class TaggedFactory:
    """Creates a filter per chain, refusing configs marked `fails` (as the HCM refuses an
    inline route naming an unknown cluster when it is created)."""

    config_type = "test.Tagged"

    def __init__(self) -> None:
        self.created: list[str] = []

    def translate(self, message: Any) -> Any:
        raise AssertionError("not used")

    def create(self, config: Tagged, context: Any) -> Any:
        if config.fails:
            raise ConfigError("unknown cluster 'missing'", field="route_config.cluster")
        self.created.append(config.tag)
        return config


FACTORY = TaggedFactory()


def listener(name: str, tag: str, port: int, *, fails: bool = False) -> Listener:
    chain = FilterChain("chain0", FilterChainMatch(),
                        NetworkFilterConfig("tagged", FACTORY.config_type, Tagged(tag, fails)))
    return Listener(name=name, address=("127.0.0.1", port), stat_prefix=name,
                    filter_chains=(chain,))


def serving(manager: ListenerManager) -> dict[str, str]:
    """The tag of the filter each active listener hands new connections to."""
    return {name: next(iter(active.current.filters.values())).tag  # type: ignore[attr-defined]
            for name, active in manager.active.items()}


def version(tag: str, *, bad_last: bool = False) -> dict[str, Listener]:
    return {name: listener(name, f"{tag} {name}", 10000 + index,
                           fails=bad_last and name == "l3")
            for index, name in enumerate(("l1", "l2", "l3"))}


@pytest.fixture
def manager() -> Iterator[ListenerManager]:
    FACTORY.created.clear()
    register(FACTORY)  # type: ignore[arg-type]
    context = ServerContext(Stats(), None, None, None, None)  # type: ignore[arg-type]
    yield ListenerManager(context, bind=False)
    unregister(FACTORY)  # type: ignore[arg-type]


def test_a_set_with_one_bad_listener_changes_nothing(manager: ListenerManager) -> None:
    manager.apply(version("v1"))
    before = {name: active.current for name, active in manager.active.items()}
    with pytest.raises(ConfigError) as caught:
        manager.stage(version("v2", bad_last=True))
    assert caught.value.resource == "l3"
    assert caught.value.field == "filter_chains[0].filters[0].typed_config.route_config.cluster"
    assert serving(manager) == {"l1": "v1 l1", "l2": "v1 l2", "l3": "v1 l3"}
    assert {name: active.current for name, active in manager.active.items()} == before
    assert manager.staged == version("v1")
    assert manager.activate() == []  # nothing of the rejected set was kept to activate
    assert serving(manager) == {"l1": "v1 l1", "l2": "v1 l2", "l3": "v1 l3"}
    assert manager.modified.value == 0


def test_the_old_set_again_builds_nothing_and_a_good_one_applies(
        manager: ListenerManager) -> None:
    manager.apply(version("v1"))
    with pytest.raises(ConfigError):
        manager.stage(version("v2", bad_last=True))
    built = len(FACTORY.created)
    manager.apply(version("v1"))
    assert len(FACTORY.created) == built  # unchanged listeners are not built again
    manager.apply(version("v3"))
    assert serving(manager) == {"l1": "v3 l1", "l2": "v3 l2", "l3": "v3 l3"}
    assert manager.modified.value == 3


def test_warming_listeners_are_built_once_and_serve_when_activated(
        manager: ListenerManager) -> None:
    manager.apply(version("v1"))
    update = {**version("v1"), "l2": listener("l2", "v2 l2", 10001)}
    manager.stage(update)
    assert manager.activate(set()) == []  # l2 is warming: the old version serves
    assert serving(manager)["l2"] == "v1 l2"
    manager.stage(dict(update))  # the same update again (another LDS push)
    assert FACTORY.created.count("v2 l2") == 1
    manager.activate({"l2"})
    assert serving(manager)["l2"] == "v2 l2"


async def test_a_listener_left_out_of_the_set_is_removed_on_activate(
        manager: ListenerManager) -> None:
    manager.apply(version("v1"))
    manager.stage({name: item for name, item in version("v1").items() if name != "l2"})
    assert "l2" in manager.active  # staging alone changes nothing
    manager.activate(set())
    assert sorted(manager.active) == ["l1", "l3"]
    assert manager.removed.value == 1
    await manager.close()
