"""The one timestamp format of fedsynth's records: UTC to the second, ISO 8601 with a ``Z``.

Ledgers, run records, checkpoints and provenance sidecars are read by people and compared
across machines in different time zones, so every one of them stamps times the same way.
"""

from __future__ import annotations

import time

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """The current time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return time.strftime(UTC_FORMAT, time.gmtime())
