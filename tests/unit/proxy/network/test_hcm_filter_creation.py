"""An HTTP filter factory may refuse its config when the listener is built (create(), not
translate()): the error names the filter's place in the HCM, so the start-up line and the NACK
say which filter it was."""

from __future__ import annotations

from typing import Any

import pytest

from protos.errors import ConfigError
from proxy.http.filter import HTTP_FILTERS
from proxy.http.settings import HttpFilterConfig
from proxy.network.http_connection_manager import _create_http_filter


class RefusingFactory:
    name = "test.refusing"
    config_type = "test.Refusing"

    def translate(self, message: Any) -> Any:
        return message

    def create(self, config: Any, context: Any, *, stat_prefix: str = "", name: str = "") -> Any:
        raise ConfigError("cannot be created", field="some_field")


@pytest.fixture
def refusing() -> Any:
    HTTP_FILTERS[RefusingFactory.config_type] = RefusingFactory()  # type: ignore[assignment]
    yield
    del HTTP_FILTERS[RefusingFactory.config_type]


def test_a_filter_refusing_at_create_is_named_by_its_place(refusing: Any) -> None:
    config = HttpFilterConfig("refusing", RefusingFactory.config_type, None)
    with pytest.raises(ConfigError) as caught:
        _create_http_filter(2, config, None, "ingress")  # type: ignore[arg-type]
    assert caught.value.field == "http_filters[2].typed_config.some_field"
