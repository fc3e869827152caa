"""A holder's statement, proven through the light client ([VOUCHER-STATEMENT.1]).

A real in-memory chain with the VoucherBook (tests/unit/test_vouchers_contract)
goes through a household's quarter: budgets issued, a rent mandate, a
purchase, a till payment, a freeze and its lifting, a clawback, a lost phone
recovered, a purchase with the new key and an expired budget swept. The node's
own RPC methods (node.api, node.light) serve that chain over loopback to the
real light client and web3. The pure parts are checked on the chain's own
events and proofs, and on tampered copies; the whole statement is checked
with honest nodes, with one node hiding a line, with every node hiding it
(only the balance proof catches that) and with every node altering an amount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from clients.budget.chain import EVENT_ABI, BookEvent, BudgetChain
from clients.budget.statement import (
    ACTIVE,
    RECOVERED,
    Statement,
    build_statement,
    compare_served,
    compute_balance_slot,
    compute_balances,
    compute_held_slots,
    compute_lines,
    compute_registration,
    compute_registration_slots,
    encode_statement,
    format_euro,
    format_statement,
    get_holder_events,
    validate_balances,
    validate_registration,
    validate_transaction_lines,
)
from clients.light import HeaderStore, HttpProvider, LightClient
from clients.web3tools import connect
from consensus.errors import InvalidProof
from consensus.proofs import Receipt
from node.api import EthApi
from node.light import LightApi
from tests.light_tools import RpcServer
from tests.unit.test_api import FakePending
from tests.unit.test_vouchers_contract import (
    BOOK,
    DAY,
    ENERGY,
    GROCER,
    HOLDER,
    INSURANCE,
    KEY_LOST,
    LANDLORD,
    LIVING,
    NEIGHBOUR,
    NEW_PHONE,
    PERIOD_END,
    PLAN_CHANGED,
    RENT,
    RESOLVED,
    SCHEDULER,
    SCHIEDAM,
    SUSPECTED_MISUSE,
    Town,
    addr,
    issue_budgets,
    set_up_town,
    till,
    token,
)

OLD, NEW = addr(HOLDER), addr(NEW_PHONE)
BOOK_ADDRESS = "0x" + BOOK.hex()
Methods = dict[str, Callable[..., Any]]


@pytest.fixture(scope="module")
def town() -> Town:
    """The household's quarter, ending with the new phone's energy budget swept."""
    town = set_up_town()
    issue_budgets(town)
    rent, living, energy = token(1, RENT), token(1, LIVING), token(1, ENERGY)
    town.do(SCHIEDAM, "createMandate", OLD, addr(LANDLORD), rent, 750_00, town.now, 30 * DAY, 3)
    town.do(SCHEDULER, "payMandate", 1)
    town.do(HOLDER, "pay", addr(GROCER), living, 12_34)
    town.do(GROCER, "payWithAuthorization", *till(town, HOLDER, GROCER, living, 20_00))
    town.do(SCHIEDAM, "freeze", OLD, SUSPECTED_MISUSE)
    town.do(SCHIEDAM, "unfreeze", OLD, RESOLVED)
    town.do(SCHIEDAM, "clawback", OLD, token(1, INSURANCE), 100_00, PLAN_CHANGED)
    town.do(SCHIEDAM, "recover", OLD, NEW, KEY_LOST)
    town.do(NEW_PHONE, "pay", addr(GROCER), living, 5_00)
    town.do(SCHEDULER, "sweep", NEW, energy, at=PERIOD_END + 1)  # anyone may sweep
    return town


def rpc_methods(town: Town) -> Methods:
    eth = EthApi(town.chain, FakePending(), "polder/test")
    return {**eth.methods(), **LightApi(eth).methods()}


def hiding(methods: Methods, hide: Callable[[dict[str, Any]], bool]) -> Methods:
    """A node that leaves out of ``eth_getLogs`` every log ``hide`` picks."""

    def get_logs(*params: Any) -> Any:
        return [log for log in methods["eth_getLogs"](*params) if not hide(log)]

    return {**methods, "eth_getLogs": get_logs}


def altering(methods: Methods, alter: Callable[[dict[str, Any]], dict[str, Any]]) -> Methods:
    """A node that serves every log of ``eth_getLogs`` through ``alter``."""

    def get_logs(*params: Any) -> Any:
        return [alter(dict(log)) for log in methods["eth_getLogs"](*params)]

    return {**methods, "eth_getLogs": get_logs}


@dataclass
class Nodes:
    """Named nodes serving one chain, the chain views and light client that use them."""

    town: Town
    chains: list[tuple[str, BudgetChain]]
    client: LightClient

    def statement(self, holder: str) -> Statement:
        return build_statement(self.chains, self.client, BOOK_ADDRESS, holder)


@pytest.fixture
def serve(town: Town) -> Iterator[Callable[..., Nodes]]:
    """Start nodes ``name=methods``; a light client trusting the genesis asks them all."""
    servers: list[RpcServer] = []

    def start(**nodes: Methods) -> Nodes:
        named = []
        for name, methods in nodes.items():
            server = RpcServer(methods).__enter__()
            servers.append(server)
            named.append((name, server.url))
        providers = [HttpProvider(url, name=name) for name, url in named]
        client = LightClient(providers, HeaderStore(None), clock=lambda: town.now + 1)
        client.trust(0, bytes(town.chain.genesis_hash))
        chains = [(name, BudgetChain(connect(url), BOOK_ADDRESS)) for name, url in named]
        return Nodes(town, chains, client)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def honest(town: Town, serve: Callable[..., Nodes]) -> Nodes:
    return serve(Schiedam=rpc_methods(town), Rotterdam=rpc_methods(town))


def failed(statement: Statement) -> dict[str, str]:
    return {name: detail for name, ok, detail in statement.report.checks if not ok}


# --- the slots, on the chain's committed state ------------------------------------------


def test_slots_hold_balances_registration_and_tracked_budgets(town: Town) -> None:
    """Vyper 0.4's layout: nested HashMap keccak(keccak(slot ‖ holder) ‖ id); a struct's
    members and a DynArray's length and items in consecutive slots from keccak(slot ‖ key)."""
    state = town.chain.get_state(town.chain.head)
    for holder in (OLD, NEW):
        for category in (RENT, ENERGY, INSURANCE, LIVING):
            slot = compute_balance_slot(holder, token(1, category))
            assert state.get_storage(BOOK, slot) == town.view(
                "balanceOf", holder, token(1, category)
            )
        fund_slot, status_slot = compute_registration_slots(holder)
        registration = (state.get_storage(BOOK, fund_slot), state.get_storage(BOOK, status_slot))
        assert registration == tuple(town.view("holders", holder))
        (count_slot,) = compute_held_slots(holder)
        count = state.get_storage(BOOK, count_slot)
        items = [state.get_storage(BOOK, s) for s in compute_held_slots(holder, count)]
        assert tuple(items) == tuple(town.view("heldIds", holder))
        assert count == 4
    assert town.view("holders", OLD) == (1, RECOVERED)
    assert town.view("balanceOf", NEW, token(1, LIVING)) == 780_00 - 12_34 - 20_00 - 5_00


# --- the pure parts on the chain's own events ----------------------------------------


@pytest.fixture
def events(honest: Nodes) -> dict[str, list[BookEvent]]:
    """Each key's events as an honest node serves them (with transaction hashes)."""
    _, chain = honest.chains[0]
    head = honest.town.chain.head.block_number
    return {holder: get_holder_events(chain, holder, head) for holder in (OLD, NEW)}


def texts(lines: Any) -> list[str]:
    return [line.text for line in lines]


def test_lines_say_what_happened_in_plain_words(events: dict[str, list[BookEvent]]) -> None:
    old = compute_lines(events[OLD], OLD)
    words = texts(old)
    assert words[0] == "registered as a budget holder of fund 1"
    assert words.count("budget issued") == 4
    assert f"mandate instalment to {addr(LANDLORD)} (mandate 1)" in words
    assert f"paid to {addr(GROCER)}" in words
    assert f"paid to {addr(GROCER)} at the till" in words
    assert "budget frozen (suspected misuse, under review)" in words
    assert "freeze lifted (the matter was resolved)" in words
    assert "taken back by the municipality (the budget plan changed)" in words
    assert f"moved to your new key {NEW} (recovery)" in words
    assert f"this key was replaced by {NEW} (the key was lost or stolen)" in words
    assert all(e.tx.startswith("0x") and len(e.tx) == 66 for e in events[OLD])
    assert compute_balances(old) == {token(1, c): 0 for c in (RENT, ENERGY, INSURANCE, LIVING)}
    assert compute_registration(events[OLD], OLD) == (1, RECOVERED)

    new = compute_lines(events[NEW], NEW)
    assert f"moved here from your old key {OLD} (recovery)" in texts(new)
    assert "swept back to the fund (period expired)" in texts(new)
    assert compute_registration(events[NEW], NEW) == (1, ACTIVE)
    living = 780_00 - 12_34 - 20_00 - 5_00
    assert compute_balances(new) == {
        token(1, RENT): 3 * 750_00 - 750_00,
        token(1, ENERGY): 0,
        token(1, INSURANCE): 3 * 140_00 - 100_00,
        token(1, LIVING): living,
    }


def test_nodes_that_disagree_are_named(events: dict[str, list[BookEvent]]) -> None:
    served = events[NEW]
    record = compare_served([("Schiedam", served), ("Delft", list(served))], NEW, 99)
    assert record.nodes == ("Schiedam", "Delft")
    with pytest.raises(InvalidProof, match="Schiedam and Delft serve different events"):
        compare_served([("Schiedam", served), ("Delft", served[:-1])], NEW, 99)
    other_tx = [replace(served[0], tx="0x" + "ab" * 32), *served[1:]]
    with pytest.raises(InvalidProof, match="Schiedam and Delft"):
        compare_served([("Schiedam", served), ("Delft", other_tx)], NEW, 99)


def proven_receipt(nodes: Nodes, event: BookEvent) -> tuple[int, Receipt]:
    verified = nodes.client.verify_transaction(bytes.fromhex(event.tx[2:]))
    return verified.block.number, verified.proven.receipt


def test_lines_must_be_logs_of_their_proven_receipt(
    honest: Nodes, events: dict[str, list[BookEvent]]
) -> None:
    sweep = [e for e in events[NEW] if e.tx == events[NEW][-1].tx]
    assert [e.name for e in sweep] == ["TransferSingle", "Swept"]
    block, receipt = proven_receipt(honest, sweep[0])
    head = honest.town.chain.head.block_number
    validate_transaction_lines(sweep, block, receipt, BOOK, head)

    inflated = replace(sweep[0], fields={**sweep[0].fields, "value": 1})
    with pytest.raises(InvalidProof, match=r"TransferSingle line .* does not hold"):
        validate_transaction_lines([inflated, sweep[1]], block, receipt, BOOK, head)
    with pytest.raises(InvalidProof, match="does not hold"):
        validate_transaction_lines([*sweep, sweep[0]], block, receipt, BOOK, head)
    with pytest.raises(InvalidProof, match="does not hold"):
        validate_transaction_lines(sweep, block, receipt, bytes(20), head)
    moved = [replace(e, block=block - 1) for e in sweep]
    with pytest.raises(InvalidProof, match=f"in block #{block - 1}, the proof in #{block}"):
        validate_transaction_lines(moved, block, receipt, BOOK, head)
    with pytest.raises(InvalidProof, match="after the head"):
        validate_transaction_lines(sweep, block, receipt, BOOK, block - 1)
    reverted = replace(receipt, succeeded=False)
    with pytest.raises(InvalidProof, match="failed"):
        validate_transaction_lines(sweep, block, reverted, BOOK, head)


def test_a_missing_line_shows_in_the_balance(events: dict[str, list[BookEvent]]) -> None:
    lines = compute_lines(events[NEW], NEW)
    proven = compute_balances(lines)
    assert "LIVING (fund 1, period 202601)" in validate_balances(proven, proven)
    purchase = next(i for i, line in enumerate(lines) if line.text.startswith("paid to"))
    short = compute_balances(lines[:purchase] + lines[purchase + 1 :])
    with pytest.raises(InvalidProof, match=r"LIVING .* add up to € 747.66, .* is € 742.66"):
        validate_balances(short, proven)
    with pytest.raises(InvalidProof, match="no storage proof"):
        validate_balances(proven, {t: v for t, v in proven.items() if t != token(1, RENT)})
    with pytest.raises(InvalidProof, match=r"RENT .* left out lines"):
        validate_balances({}, {token(1, RENT): 1})


def test_registration_must_match_its_proof() -> None:
    assert validate_registration((1, ACTIVE), (1, ACTIVE)) == "active in fund 1"
    with pytest.raises(InvalidProof, match="left out a registration, freeze or recovery"):
        validate_registration((1, ACTIVE), (1, 2))


def test_euros() -> None:
    assert format_euro(123_456_78) == "€ 123,456.78"
    assert format_euro(-5) == "-€ 0.05"
    assert format_euro(0, signed=True) == "+ € 0.00"
    assert format_euro(-750_00, signed=True) == "- € 750.00"


# --- the whole statement through the light client --------------------------------------


def test_honest_nodes_give_a_verified_statement(honest: Nodes) -> None:
    statement = honest.statement(NEW)
    assert failed(statement) == {}
    assert statement.verified
    assert statement.block == honest.town.chain.head.block_number
    assert statement.registration == (1, ACTIVE)
    assert statement.balances[token(1, ENERGY)] == 0
    assert statement.balances[token(1, LIVING)] == 780_00 - 12_34 - 20_00 - 5_00
    proven_times = {honest.town.chain.get_header_by_number(n).timestamp for n in statement.times}
    assert set(statement.times.values()) == proven_times
    shown = format_statement(statement)
    assert "moved here from your old key" in shown
    assert "swept back to the fund (period expired)" in shown
    assert "+ € 1,500.00" in shown
    assert shown.endswith("\nVERIFIED")
    assert "✗" not in shown
    encoded = encode_statement(statement)
    assert encoded["verdict"] == "VERIFIED"
    living = next(b for b in encoded["budgets"] if b["category"] == "LIVING")
    assert living["balance"] == living["provenBalance"] == 780_00 - 12_34 - 20_00 - 5_00
    assert [line["amount"] for line in living["lines"]] == [780_00 - 12_34 - 20_00, -5_00]


def test_the_old_key_shows_its_recovery(honest: Nodes) -> None:
    statement = honest.statement(OLD)
    assert statement.verified, failed(statement)
    assert statement.registration == (1, RECOVERED)
    assert set(statement.balances.values()) == {0}


def is_purchase_of(holder: str) -> Callable[[dict[str, Any]], bool]:
    """The new key's one purchase: its ``TransferSingle`` log (holder as sender, topic 2)."""
    return lambda log: (
        log["topics"][2] == "0x" + "00" * 12 + holder[2:] and log["data"].endswith(f"{5_00:064x}")
    )


def test_one_node_hiding_a_line_is_named(town: Town, serve: Callable[..., Nodes]) -> None:
    nodes = serve(
        Schiedam=rpc_methods(town), Rotterdam=hiding(rpc_methods(town), is_purchase_of(NEW))
    )
    statement = nodes.statement(NEW)
    assert not statement.verified
    assert (
        "Schiedam and Rotterdam serve different events"
        in failed(statement)["lines served alike by every node"]
    )
    assert "NOT VERIFIED" in format_statement(statement)


def test_every_node_hiding_a_line_is_caught_by_the_balance_proof(
    town: Town, serve: Callable[..., Nodes]
) -> None:
    nodes = serve(
        Schiedam=hiding(rpc_methods(town), is_purchase_of(NEW)),
        Rotterdam=hiding(rpc_methods(town), is_purchase_of(NEW)),
    )
    statement = nodes.statement(NEW)
    assert list(failed(statement)) == ["balances proven by storage equal the lines"]
    assert (
        "the nodes left out lines"
        in failed(statement)["balances proven by storage equal the lines"]
    )
    assert format_statement(statement).endswith("\nNOT VERIFIED")


def test_every_node_altering_an_amount_is_caught_by_the_receipt(
    town: Town, serve: Callable[..., Nodes]
) -> None:
    purchase = is_purchase_of(NEW)

    def doubled(log: dict[str, Any]) -> dict[str, Any]:
        if purchase(log):
            log["data"] = log["data"][:-64] + f"{10_00:064x}"
        return log

    nodes = serve(
        Schiedam=altering(rpc_methods(town), doubled),
        Rotterdam=altering(rpc_methods(town), doubled),
    )
    statement = nodes.statement(NEW)
    problems = failed(statement)
    assert "does not hold" in problems["every line is in a proven transaction"]
    assert "left out lines" in problems["balances proven by storage equal the lines"]


def test_every_node_hiding_a_registration_is_caught_by_its_proof(
    town: Town, serve: Callable[..., Nodes]
) -> None:
    registered = (
        "0x" + next(t for t, e in EVENT_ABI.items() if e["name"] == "HolderRegistered").hex()
    )

    def is_registration(log: dict[str, Any]) -> bool:
        return bool(log["topics"][0] == registered)

    nodes = serve(
        Schiedam=hiding(rpc_methods(town), is_registration),
        Rotterdam=hiding(rpc_methods(town), is_registration),
    )
    statement = nodes.statement(addr(NEIGHBOUR))
    assert "storage proves active in fund 1" in failed(statement)["registration proven by storage"]
    assert list(failed(statement)) == ["registration proven by storage"]
