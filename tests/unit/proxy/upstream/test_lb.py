"""Each LB policy: distribution, weights, retries' exclusions, consistency of ring hash/maglev."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proxy.upstream.host import Host
from proxy.upstream.lb.base import LbContext, hash_of
from proxy.upstream.lb.least_request import LeastRequestPicker
from proxy.upstream.lb.maglev import MaglevPicker, build_table
from proxy.upstream.lb.random_lb import RandomPicker
from proxy.upstream.lb.ring_hash import RingHashPicker, build_ring
from proxy.upstream.lb.round_robin import RoundRobinPicker
from tests.unit.proxy.upstream.builders import hosts


def _counts(picker, picks: int, context: LbContext | None = None) -> Counter[Host]:
    context = context or LbContext()
    return Counter(picker.pick(context) for _ in range(picks))


def test_hash_of_is_xxhash64() -> None:
    # Reference value of XXH64("abc", seed 0) from the xxHash test vectors.
    assert hash_of("abc") == 0x44BC2CF5AD770999


def test_round_robin_equal_weights_rotates_in_order() -> None:
    group = hosts(3)
    picker = RoundRobinPicker(group, random.Random(1))
    picks = [picker.pick(LbContext()) for _ in range(6)]
    assert picks[:3] == picks[3:]
    assert set(picks[:3]) == set(group)


def test_round_robin_weighted_follows_weights_and_interleaves() -> None:
    group = hosts(3, weights=(1, 2, 3))
    picker = RoundRobinPicker(group, random.Random(1))
    counts = _counts(picker, 600)
    assert [counts[h] for h in group] == [100, 200, 300]
    # EDF interleaves: the heaviest host never takes 4 picks in a row.
    sequence = [picker.pick(LbContext()) for _ in range(60)]
    assert not any(sequence[i] == sequence[i + 1] == sequence[i + 2] == sequence[i + 3]
                   for i in range(56))


def test_round_robin_reattempts_like_envoy() -> None:
    group = hosts(3)
    picker = RoundRobinPicker(group, random.Random(1))
    order = [picker.pick(LbContext()) for _ in range(3)]
    # The next pick would be order[0]; excluded, Envoy picks once more (default 1 retry).
    assert picker.pick(LbContext(excluded={order[0]})) is order[1]
    # Two excluded in a row with one retry: the last pick is used anyway (Envoy).
    assert picker.pick(LbContext(excluded={order[2], order[0]})) is order[0]
    assert picker.pick(LbContext(excluded={order[1], order[2]},
                                 host_selection_retry_max_attempts=2)) is order[0]


def test_random_is_uniform_and_ignores_weights() -> None:
    group = hosts(4, weights=(1, 1, 1, 10))
    counts = _counts(RandomPicker(group, random.Random(3)), 8000)
    for host in group:
        assert 1700 < counts[host] < 2300


def test_least_request_p2c_prefers_idle_hosts() -> None:
    group = hosts(4)
    for host, active in zip(group, (10, 10, 10, 0), strict=True):
        host.active_requests = active
    counts = _counts(LeastRequestPicker(group, random.Random(5)), 4000)
    # The idle host wins whenever it is one of the two choices: 1 - (3/4)^2 = 7/16.
    assert 0.40 < counts[group[3]] / 4000 < 0.48


def test_least_request_choice_count_sharpens_preference() -> None:
    group = hosts(4)
    group[3].active_requests = 0
    for host in group[:3]:
        host.active_requests = 5
    counts = _counts(LeastRequestPicker(group, random.Random(5), choice_count=5), 4000)
    # 1 - (3/4)^5 = 0.763
    assert 0.73 < counts[group[3]] / 4000 < 0.80


def test_least_request_all_equal_is_uniform() -> None:
    group = hosts(3)
    counts = _counts(LeastRequestPicker(group, random.Random(9)), 6000)
    assert all(1800 < counts[h] < 2200 for h in group)


def test_least_request_weighted_divides_weight_by_active_requests() -> None:
    group = hosts(2, weights=(1, 2))
    picker = LeastRequestPicker(group, random.Random(1))
    assert picker.weighted
    counts = _counts(picker, 300)
    assert counts[group[1]] == 200  # idle: plain weighted round robin
    group[1].active_requests = 3  # effective weight 2 / 4 = 0.5 against 1 / 1
    picker = LeastRequestPicker(group, random.Random(1))
    counts = _counts(picker, 300)
    assert counts[group[0]] == 200


def test_least_request_bias_zero_is_weighted_round_robin() -> None:
    group = hosts(2, weights=(1, 3))
    group[1].active_requests = 100
    picker = LeastRequestPicker(group, random.Random(1), active_request_bias=0.0)
    assert _counts(picker, 400)[group[1]] == 300


def _keys(count: int) -> list[int]:
    rng = random.Random(42)
    return [rng.getrandbits(64) for _ in range(count)]


def test_ring_hash_same_key_same_host_and_even_spread() -> None:
    group = hosts(5)
    picker = RingHashPicker(group, random.Random(1))
    assert picker.size == 1025  # 5 hosts x ceil(0.2 * 1024) points
    keys = _keys(5000)
    first = [picker.pick(LbContext(hash_key=k)) for k in keys]
    assert first == [picker.pick(LbContext(hash_key=k)) for k in keys]
    counts = Counter(first)
    assert all(700 < counts[h] < 1300 for h in group)


def test_ring_hash_moves_few_keys_when_a_host_leaves() -> None:
    group = hosts(5)
    before = RingHashPicker(group, random.Random(1))
    after = RingHashPicker(group[:4], random.Random(1))
    keys = _keys(5000)
    departed = moved_elsewhere = 0
    for key in keys:
        old = before.pick(LbContext(hash_key=key))
        new = after.pick(LbContext(hash_key=key))
        if old is group[4]:
            departed += 1
        elif new is not old:
            moved_elsewhere += 1
    assert 700 < departed < 1300  # about 1/5 of the keys had to move
    # The survivors gain points (205 -> 256 each, to keep >= 1024 in the ring, as Envoy does),
    # so a few other keys move too; a modulo hash would move ~80%.
    assert moved_elsewhere < 0.15 * len(keys)


def test_ring_hash_ring_size_respects_min_max_and_weights() -> None:
    group = hosts(3, weights=(1, 1, 2))
    ring = build_ring(group, 1024, 8 * 1024 * 1024, False)
    per_host = Counter(host for _, host in ring)
    # scale = ceil(0.25 * 1024) / 0.25 = 1024: 256, 256, 512 points.
    assert [per_host[h] for h in group] == [256, 256, 512]
    assert len(build_ring(group, 1024, 100, False)) == 100


def test_ring_hash_reattempt_steps_along_the_ring() -> None:
    group = hosts(3)
    picker = RingHashPicker(group, random.Random(1), minimum_ring_size=16)
    ring = build_ring(group, 16, 8 * 1024 * 1024, False)
    key = ring[5][0] - 1  # maps to entry 5
    first = picker.pick(LbContext(hash_key=key))
    assert first is ring[5][1]
    retried = picker.pick(LbContext(hash_key=key, excluded={first},
                                    host_selection_retry_max_attempts=len(ring)))
    expected = next(host for _, host in ring[6:] + ring[:5] if host is not first)
    assert retried is expected


def test_maglev_reattempt_xors_the_hash() -> None:
    group = hosts(3)
    picker = MaglevPicker(group, random.Random(1), table_size=257)
    key = 123456789
    first = picker.pick(LbContext(hash_key=key))
    assert first is picker.table[key % 257]
    second = picker.table[(key ^ (2**64 - 1)) % 257]  # attempt 1: ~0 - 1 + 1
    third = picker.table[(key ^ (2**64 - 2)) % 257]
    retried = picker.pick(LbContext(hash_key=key, excluded={first},
                                    host_selection_retry_max_attempts=2))
    assert retried is (second if second is not first else third)


def test_maglev_table_is_full_and_balanced() -> None:
    group = hosts(5)
    table = build_table(group, 65537, False)
    assert len(table) == 65537
    counts = Counter(table)
    assert all(abs(counts[h] - 65537 / 5) <= 2 for h in group)


def test_maglev_weights_share_table_proportionally() -> None:
    group = hosts(2, weights=(1, 3))
    counts = Counter(build_table(group, 65537, False))
    assert counts[group[1]] / counts[group[0]] == pytest.approx(3.0, rel=0.01)


def test_maglev_moves_few_keys_when_a_host_leaves() -> None:
    group = hosts(5)
    before = MaglevPicker(group, random.Random(1), table_size=5003)
    after = MaglevPicker(group[:4], random.Random(1), table_size=5003)
    keys = _keys(5000)
    stayed_elsewhere = sum(1 for k in keys
                           if before.pick(LbContext(hash_key=k)) is not group[4]
                           and before.pick(LbContext(hash_key=k))
                           is not after.pick(LbContext(hash_key=k)))
    departed = sum(1 for k in keys if before.pick(LbContext(hash_key=k)) is group[4])
    assert 700 < departed < 1300
    # Maglev has a little churn beyond the departed host's keys, well under 10%.
    assert stayed_elsewhere < 0.10 * len(keys)


def test_maglev_does_not_depend_on_host_order() -> None:
    group = hosts(4)
    assert build_table(group, 257, False) == build_table(list(reversed(group)), 257, False)


def test_consistent_hash_without_key_picks_randomly() -> None:
    group = hosts(3)
    counts = _counts(MaglevPicker(group, random.Random(2), table_size=257), 3000)
    assert all(counts[h] > 800 for h in group)
