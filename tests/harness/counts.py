"""Jepsen-style counts for fault tests: attempted, answered, delivered, lost,
duplicated; printed per test and repeated in pytest's summary."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.harness.stack import Stack

#: Every count line of this run, repeated at the end of pytest's output.
REPORTED: list[str] = []


@dataclass
class Counts:
    """Tally of one fault test, printed and asserted on."""

    name: str
    attempted: int = 0
    answered: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    tallied: bool = False

    def tally(self, message_ids: list[str], expected_ids: set[str]) -> Counts:
        """Count mails at the sink by Message-ID against the expected ones."""
        seen = Counter(message_ids)
        self.delivered = len(set(seen) & expected_ids)
        self.lost = len(expected_ids - set(seen))
        self.duplicated = sum(n - 1 for mid, n in seen.items() if mid in expected_ids and n > 1)
        self.tallied = True
        return self

    def report(self) -> str:
        """Print the count line and keep it for the summary; returns it."""
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        mails = (f" delivered={self.delivered} lost={self.lost} duplicated={self.duplicated}"
                 if self.tallied else "")
        line = (f"[{self.name}] attempted={self.attempted} answered={self.answered}{mails}"
                + (f" {extra}" if extra else ""))
        print("\n" + line)
        REPORTED.append(line)
        return line


def message_ids(stack: Stack) -> list[str]:
    """Message-ID headers of every mail the stack's SMTP sink accepted."""
    return [str(m["Message-ID"]) for m in stack.smtp.messages]


def elapsed(start: float) -> float:
    """Seconds since ``start`` (a ``time.monotonic()`` value), to 0.01 s."""
    return round(time.monotonic() - start, 2)
