"""A cluster's load-balancing settings: the frozen model and its translation.

Two ways to say it in Envoy's API, both accepted:
- `lb_policy` (enum) with `round_robin_lb_config` / `least_request_lb_config` /
  `ring_hash_lb_config` / `maglev_lb_config` and `common_lb_config` (cluster.proto);
- `load_balancing_policy` (typed extensions, api/envoy/extensions/load_balancing_policies/):
  Envoy uses the first listed policy it supports, and so do we (round_robin, least_request,
  random, ring_hash, maglev).
Either way the result is one `LbSettings`. Unsupported knobs (slow start, zone-aware routing,
bounded-load hashing, murmur hash, full-scan least request...) are refused by name.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any

from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.model.fields import enum_name, reject_unsupported

log = logging.getLogger(__name__)

MAX_RING_SIZE = 8 * 1024 * 1024
MAX_MAGLEV_TABLE = 5000011


class LbPolicy(enum.IntEnum):
    ROUND_ROBIN = 0
    LEAST_REQUEST = 1
    RING_HASH = 2
    RANDOM = 3
    MAGLEV = 5


@dataclass(frozen=True)
class LeastRequestConfig:
    choice_count: int = 2
    active_request_bias: float = 1.0


@dataclass(frozen=True)
class RingHashConfig:
    # Envoy defaults (RingHashLbConfig): 1024 and 8M entries.
    minimum_ring_size: int = 1024
    maximum_ring_size: int = MAX_RING_SIZE
    use_hostname_for_hashing: bool = False


@dataclass(frozen=True)
class MaglevConfig:
    table_size: int = 65537
    use_hostname_for_hashing: bool = False


@dataclass(frozen=True)
class LbSettings:
    policy: LbPolicy = LbPolicy.ROUND_ROBIN
    least_request: LeastRequestConfig = field(default_factory=LeastRequestConfig)
    ring_hash: RingHashConfig = field(default_factory=RingHashConfig)
    maglev: MaglevConfig = field(default_factory=MaglevConfig)
    locality_weighted: bool = False


_ENUM_CONFIGS = {
    "least_request_lb_config": LbPolicy.LEAST_REQUEST,
    "ring_hash_lb_config": LbPolicy.RING_HASH,
    "maglev_lb_config": LbPolicy.MAGLEV,
    "round_robin_lb_config": LbPolicy.ROUND_ROBIN,
}
_LOAD_BALANCING_POLICY_CONFIG = 7  # Cluster.LbPolicy.LOAD_BALANCING_POLICY_CONFIG


def translate_lb_settings(cluster: Any) -> LbSettings:
    """The LB settings of a config.cluster.v3.Cluster (either API style)."""
    if cluster.HasField("load_balancing_policy"):
        if cluster.lb_policy not in (0, _LOAD_BALANCING_POLICY_CONFIG):
            raise ConfigError("set together with load_balancing_policy", field="lb_policy")
        for name in _ENUM_CONFIGS:
            if cluster.HasField(name):
                raise ConfigError("set together with load_balancing_policy", field=name)
        return _typed_policy(cluster.load_balancing_policy)
    return _enum_policy(cluster)


# -- lb_policy enum + *_lb_config + common_lb_config -------------------------------------------

def _enum_policy(cluster: Any) -> LbSettings:
    if cluster.lb_policy not in LbPolicy._value2member_map_:
        raise unsupported("lb_policy", enum_name(cluster, "lb_policy"))
    policy = LbPolicy(cluster.lb_policy)
    for name, owner in _ENUM_CONFIGS.items():
        if cluster.HasField(name) and owner is not policy:
            # Envoy accepts a config for another policy and it has no effect there: so here.
            log.warning("cluster %r: %s has no effect with lb_policy %s (as in Envoy)",
                        cluster.name, name, policy.name)
    if cluster.HasField("round_robin_lb_config") and policy is LbPolicy.ROUND_ROBIN:
        reject_unsupported(cluster.round_robin_lb_config, (), prefix="round_robin_lb_config.")
    use_hostname = False
    common = cluster.common_lb_config
    if common.HasField("consistent_hashing_lb_config"):
        hashing = common.consistent_hashing_lb_config
        reject_unsupported(hashing, {"use_hostname_for_hashing"},
                           prefix="common_lb_config.consistent_hashing_lb_config.")
        use_hostname = hashing.use_hostname_for_hashing
    locality = common.HasField("locality_weighted_lb_config")
    if locality and policy in (LbPolicy.RING_HASH, LbPolicy.MAGLEV):
        raise unsupported("common_lb_config.locality_weighted_lb_config", f"with {policy.name}")
    least_request = LeastRequestConfig()
    if cluster.HasField("least_request_lb_config") and policy is LbPolicy.LEAST_REQUEST:
        least_request = _least_request(cluster.least_request_lb_config,
                                       "least_request_lb_config.", allowed=set())
    ring_hash = RingHashConfig(use_hostname_for_hashing=use_hostname)
    if cluster.HasField("ring_hash_lb_config") and policy is LbPolicy.RING_HASH:
        ring_hash = _ring_hash(cluster.ring_hash_lb_config, "ring_hash_lb_config.",
                               use_hostname, allowed=set())
    maglev = MaglevConfig(use_hostname_for_hashing=use_hostname)
    if cluster.HasField("maglev_lb_config") and policy is LbPolicy.MAGLEV:
        maglev = _maglev(cluster.maglev_lb_config, "maglev_lb_config.", use_hostname,
                         allowed=set())
    return LbSettings(policy, least_request, ring_hash, maglev, locality)


def _least_request(config: Any, prefix: str, *, allowed: set[str]) -> LeastRequestConfig:
    reject_unsupported(config, {"choice_count", "active_request_bias"} | allowed, prefix=prefix)
    choice_count = config.choice_count.value if config.HasField("choice_count") else 2
    if choice_count < 2:
        raise ConfigError("must be at least 2", field=f"{prefix}choice_count")
    bias = 1.0
    if config.HasField("active_request_bias"):
        if config.active_request_bias.runtime_key:
            raise unsupported(f"{prefix}active_request_bias.runtime_key")
        bias = config.active_request_bias.default_value
        if bias < 0:
            raise ConfigError("must be >= 0", field=f"{prefix}active_request_bias")
    return LeastRequestConfig(choice_count, bias)


def _ring_hash(config: Any, prefix: str, use_hostname: bool, *, allowed: set[str],
               xx_hash: tuple[int, ...] = (0,)) -> RingHashConfig:
    """`xx_hash`: the enum values meaning xxHash (cluster.proto: XX_HASH = 0; the typed
    policy: DEFAULT_HASH = 0 and XX_HASH = 1)."""
    reject_unsupported(config, {"minimum_ring_size", "maximum_ring_size", "hash_function"}
                       | allowed, prefix=prefix)
    if config.hash_function not in xx_hash:
        raise unsupported(f"{prefix}hash_function", "only XX_HASH")
    minimum = config.minimum_ring_size.value if config.HasField("minimum_ring_size") else 1024
    maximum = (config.maximum_ring_size.value if config.HasField("maximum_ring_size")
               else MAX_RING_SIZE)
    for name, value in (("minimum_ring_size", minimum), ("maximum_ring_size", maximum)):
        if not 0 < value <= MAX_RING_SIZE:
            raise ConfigError("must be 1..8M", field=f"{prefix}{name}")
    if minimum > maximum:
        raise ConfigError("minimum_ring_size exceeds maximum_ring_size",
                          field=f"{prefix}minimum_ring_size")
    return RingHashConfig(minimum, maximum, use_hostname)


def _maglev(config: Any, prefix: str, use_hostname: bool, *, allowed: set[str]) -> MaglevConfig:
    reject_unsupported(config, {"table_size"} | allowed, prefix=prefix)
    size = config.table_size.value if config.HasField("table_size") else 65537
    if size > MAX_MAGLEV_TABLE or not _is_prime(size):
        # maglev.proto: table_size "must be prime number limited to 5000011".
        raise ConfigError("must be a prime number <= 5000011", field=f"{prefix}table_size")
    return MaglevConfig(size, use_hostname)


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    divisor = 2
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 1
    return True


# -- load_balancing_policy (typed extensions) --------------------------------------------------

_TYPED = {
    round_robin_pb2.RoundRobin.DESCRIPTOR.full_name: LbPolicy.ROUND_ROBIN,
    least_request_pb2.LeastRequest.DESCRIPTOR.full_name: LbPolicy.LEAST_REQUEST,
    random_pb2.Random.DESCRIPTOR.full_name: LbPolicy.RANDOM,
    ring_hash_pb2.RingHash.DESCRIPTOR.full_name: LbPolicy.RING_HASH,
    maglev_pb2.Maglev.DESCRIPTOR.full_name: LbPolicy.MAGLEV,
}


def _typed_policy(message: Any) -> LbSettings:
    """Envoy takes the first policy in the list that it supports."""
    names = []
    for index, policy in enumerate(message.policies):
        packed = policy.typed_extension_config.typed_config
        type_name = packed.type_url.rsplit("/", 1)[-1]
        names.append(type_name)
        if type_name in _TYPED:
            prefix = f"load_balancing_policy.policies[{index}].typed_extension_config." \
                     "typed_config."
            config = unpack_any(packed, field=prefix.rstrip("."))
            return _typed_settings(_TYPED[type_name], config, prefix)
    raise unsupported("load_balancing_policy", f"none of {names or 'the policies'} is "
                      "supported (round_robin, least_request, random, ring_hash, maglev)")


def _typed_settings(policy: LbPolicy, config: Any, prefix: str) -> LbSettings:
    if policy in (LbPolicy.ROUND_ROBIN, LbPolicy.RANDOM):
        reject_unsupported(config, {"locality_lb_config"}, prefix=prefix)
        return LbSettings(policy, locality_weighted=_locality_lb(config, prefix))
    if policy is LbPolicy.LEAST_REQUEST:
        least_request = _least_request(config, prefix, allowed={"locality_lb_config"})
        return LbSettings(policy, least_request=least_request,
                          locality_weighted=_locality_lb(config, prefix))
    if config.HasField("locality_weighted_lb_config"):
        raise unsupported(f"{prefix}locality_weighted_lb_config", f"with {policy.name}")
    use_hostname = _typed_hashing(config, prefix)
    if policy is LbPolicy.RING_HASH:
        return LbSettings(policy, ring_hash=_ring_hash(
            config, prefix, use_hostname,
            allowed={"use_hostname_for_hashing", "consistent_hashing_lb_config"},
            xx_hash=(0, 1)))
    return LbSettings(policy, maglev=_maglev(config, prefix, use_hostname,
                                             allowed={"consistent_hashing_lb_config"}))


def _locality_lb(config: Any, prefix: str) -> bool:
    if not config.HasField("locality_lb_config"):
        return False
    locality = config.locality_lb_config
    if locality.HasField("zone_aware_lb_config"):
        raise unsupported(f"{prefix}locality_lb_config.zone_aware_lb_config")
    return locality.HasField("locality_weighted_lb_config")


def _typed_hashing(config: Any, prefix: str) -> bool:
    use_hostname = bool(getattr(config, "use_hostname_for_hashing", False))
    if config.HasField("consistent_hashing_lb_config"):
        hashing = config.consistent_hashing_lb_config
        reject_unsupported(hashing, {"use_hostname_for_hashing"},
                           prefix=f"{prefix}consistent_hashing_lb_config.")
        use_hostname = use_hostname or hashing.use_hostname_for_hashing
    return use_hostname
