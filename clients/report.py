"""A verifier's report: named checks, each passed or failed with its detail.

The universal poll verifier and the books check both run a list of checks
over chain data and print each as ✓ or ✗; a check that raises is recorded as
failed with the error's message, so one bad record never crashes the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.errors import PolderError


@dataclass
class Report:
    """The verifier's checks, in order, and the verdict."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def check(self, name: str, run: Callable[[], str]) -> bool:
        """Run one check; record its outcome (an error is a failed check, never a crash)."""
        try:
            detail = run()
        except (PolderError, ValueError, KeyError, IndexError, TypeError) as exc:
            self.checks.append((name, False, getattr(exc, "message", None) or str(exc)))
            return False
        self.checks.append((name, True, detail))
        return True
