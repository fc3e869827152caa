"""iterate_logs: a range the node refuses as too many logs is halved, order is kept."""

from __future__ import annotations

from typing import Any

import pytest
from web3.exceptions import Web3RPCError

from clients import web3tools
from clients.web3tools import LIMIT_EXCEEDED, iterate_logs


class FakeEth:
    """A node with one log per block that refuses a query over ``limit`` logs."""

    def __init__(self, limit: int, code: int = LIMIT_EXCEEDED) -> None:
        self.limit = limit
        self.code = code
        self.queries: list[tuple[int, int]] = []

    def get_logs(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        first, last = query["fromBlock"], query["toBlock"]
        self.queries.append((first, last))
        if last - first + 1 > self.limit:
            error = {"code": self.code, "message": "query returns too many logs"}
            raise Web3RPCError(str(error), rpc_response={"error": error})  # type: ignore[arg-type]
        return [{"blockNumber": n, "address": query["address"]} for n in range(first, last + 1)]


class FakeWeb3:
    def __init__(self, eth: FakeEth) -> None:
        self.eth = eth


def test_every_log_once_in_order_when_ranges_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web3tools, "LOG_CHUNK", 100)
    monkeypatch.setattr(web3tools, "SPARSE_LOGS", 2)  # a quarter of the limit, as for real nodes
    eth = FakeEth(limit=7)
    logs = list(iterate_logs(FakeWeb3(eth), {"address": "0xbook"}, head=250))  # type: ignore[arg-type]
    assert [log["blockNumber"] for log in logs] == list(range(251))
    assert all(last - first + 1 <= 100 for first, last in eth.queries)
    refused = [q for q in eth.queries if q[1] - q[0] + 1 > 7]
    assert len(refused) <= 5, f"a dense chain should cost a few refusals, not {len(refused)}"


def test_the_span_grows_back_after_sparse_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web3tools, "LOG_CHUNK", 64)
    monkeypatch.setattr(web3tools, "SPARSE_LOGS", 8)
    eth = FakeEth(limit=20)
    assert len(list(iterate_logs(FakeWeb3(eth), {"address": "0xbook"}, head=300))) == 301  # type: ignore[arg-type]
    sizes = [last - first + 1 for first, last in eth.queries]
    assert max(sizes[-3:]) > 8, "the span never grew back"


def test_other_errors_and_a_refused_single_block_are_raised() -> None:
    with pytest.raises(Web3RPCError):
        list(iterate_logs(FakeWeb3(FakeEth(limit=0)), {"address": "0x"}, head=3))  # type: ignore[arg-type]
    with pytest.raises(Web3RPCError):
        list(iterate_logs(FakeWeb3(FakeEth(limit=1, code=-32000)), {"address": "0x"}, head=3))  # type: ignore[arg-type]
