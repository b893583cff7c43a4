"""Project-owned extension of moto 5.2.5 (the AWS emulator used by tests and the demo).

moto records much of what this project relies on but does not act on it (lifecycle hooks
never hold instances, Auto Scaling emits no events, SSM never runs a command). The modules
here patch moto in-process before its server starts; ``server.py`` is the entry point.

This module only holds what every concern shares: one re-entrant lock that serialises all
emulator state changes (AWS requests, heartbeat timers, SSM result updates), and clocks.
"""

import datetime
import threading

# Held while an AWS request is served and while background threads touch moto's models.
LOCK = threading.RLock()


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts: datetime.datetime) -> str:
    """AWS-style UTC timestamp with milliseconds: 2026-11-20T10:00:00.123Z."""
    return ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ts.microsecond // 1000:03d}Z"
    )
