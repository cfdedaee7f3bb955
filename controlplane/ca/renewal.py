"""The asyncio side of SVID rotation: wake when the next SVID is due (controlplane/ca/secrets.py
says when, sans I/O) and let the mesh cache re-issue and push it. Checks at least every second,
since a sidecar that connects meanwhile brings a new identity with its own due time."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Protocol

from controlplane.ca.secrets import IdentitySecrets

log = logging.getLogger("pointsman.controlplane.ca")
MAX_SLEEP = 1.0  # seconds


class Renewing(Protocol):
    identity_secrets: IdentitySecrets | None

    def renew_secrets(self, now: datetime.datetime) -> list[tuple[str, str]]: ...


def seconds_until_due(secrets: IdentitySecrets, now: datetime.datetime) -> float:
    due = secrets.next_renewal()
    if due is None:
        return MAX_SLEEP
    return min(MAX_SLEEP, max(0.0, (due - now).total_seconds()))


async def keep_renewing(cache: Renewing) -> None:
    """Until cancelled. An error in one round is logged and the next round tries again."""
    while True:
        secrets = cache.identity_secrets
        now = datetime.datetime.now(datetime.UTC)
        await asyncio.sleep(MAX_SLEEP if secrets is None else seconds_until_due(secrets, now))
        try:
            cache.renew_secrets(datetime.datetime.now(datetime.UTC))
        except Exception:  # a failed signature must not stop later rotations
            log.exception("SVID renewal failed; trying again")


def parse_duration(text: str) -> datetime.timedelta:
    """`90s`, `30m`, `24h`, `7d` (Istio's and Go's duration units, one unit)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError) as error:
        raise ValueError(f"bad duration {text!r}: expected a number and s, m, h or d") from error
    if value <= 0:
        raise ValueError(f"bad duration {text!r}: must be positive")
    return datetime.timedelta(seconds=value)
