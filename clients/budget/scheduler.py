"""The mandate scheduler: pays every due instalment of fixed charges, once ([VOUCHER-MANDATE.1]).

Restart-safe by construction, with no state of its own: the contract moves
``next_due`` one interval on with every instalment it pays and refuses
``payMandate`` before it is due. So after a crash between sending and the
receipt, the scheduler re-reads ``next_due`` and never pays one twice; after
an outage it pays every missed instalment, never one early.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.budget.chain import BudgetChain
from clients.web3tools import TransactionRefused

NOT_DUE = "the next instalment is not due yet"


@dataclass
class RoundResult:
    """What one round of the scheduler did."""

    paid: list[tuple[int, str]] = field(default_factory=list)
    """(mandate, transaction hash) of each instalment paid."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(mandate, the contract's reason) of instalments due but refused."""


def get_fund_mandates(chain: BudgetChain, fund: int) -> list[int]:
    """The ids of every mandate created for ``fund``."""
    events = chain.get_events(fund)
    return sorted({e.fields["mandate"] for e in events if e.name == "MandateCreated"})


def is_due(mandate: dict[str, Any], now: int) -> bool:
    """True if the mandate has an instalment left whose time has come."""
    return bool(mandate["remaining"] > 0 and mandate["next_due"] <= now)


def run_once(chain: BudgetChain, account: Any, mandates: Sequence[int]) -> RoundResult:
    """Pay every due instalment of ``mandates`` until none is due; return what happened."""
    result = RoundResult()
    for mandate in mandates:
        while is_due(chain.get_mandate(mandate), max(chain.get_time(), int(time.time()))):
            try:
                receipt = chain.send(account, chain.functions.payMandate(mandate))
            except TransactionRefused as exc:
                if exc.message != NOT_DUE:
                    result.refused.append((mandate, exc.message))
                break
            result.paid.append((mandate, "0x" + bytes(receipt["transactionHash"]).hex()))
    return result


def run_forever(
    chain: BudgetChain,
    account: Any,
    list_mandates: Callable[[], Sequence[int]],
    *,
    interval: float,
    report: Callable[[RoundResult], None],
    rounds: int | None = None,
) -> None:
    """Run a round every ``interval`` seconds (``rounds`` times, or for ever)."""
    done = 0
    while rounds is None or done < rounds:
        report(run_once(chain, account, list_mandates()))
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)
