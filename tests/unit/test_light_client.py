"""The light client against synthetic sealed chains served over real HTTP on loopback.

The chains are made of real headers and seals (tests/light_tools.py); only
their state is fake, which the client never reads here. These tests cover
what a devnet cannot show yet: validator-set changes, and what it costs to
verify across many blocks and several changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import rlp
from eth_hash.auto import keccak

from clients.light import (
    ForkDetected,
    HeaderStore,
    HttpProvider,
    LightClient,
    NotFound,
    ValidatorChangeMissing,
    VerificationFailed,
)
from consensus.errors import ConfigError
from tests.light_tools import RpcServer, SyntheticChain, make_keys

NOW = 1_767_225_600 + 10_000


@pytest.fixture
def chain() -> SyntheticChain:
    """200 blocks by set A, a change to set B at 201, 100 more, a tx in the last block."""
    synthetic = SyntheticChain(make_keys(4))
    synthetic.extend(200)
    synthetic.change_set(make_keys(4))
    synthetic.extend(99)
    synthetic.extend(1, transactions=3)
    return synthetic


@pytest.fixture
def servers(chain: SyntheticChain) -> Iterator[list[RpcServer]]:
    with RpcServer(chain.methods()) as first, RpcServer(chain.methods()) as second:
        yield [first, second]


def make_client(
    servers: list[RpcServer], store: HeaderStore | None = None, **options: Any
) -> LightClient:
    providers = [HttpProvider(server.url, name=f"node{i}") for i, server in enumerate(servers)]
    options.setdefault("clock", lambda: NOW)
    return LightClient(providers, store or HeaderStore(None), **options)


def last_tx(chain: SyntheticChain) -> bytes:
    return keccak(chain.blocks[-1].transactions[1])


def test_transaction_across_a_set_change_is_verified(
    chain: SyntheticChain, servers: list[RpcServer]
) -> None:
    """[LC-CHANGE.1] the change header is verified with the old set, the next with the new."""
    client = make_client(servers)
    client.trust(0, chain.blocks[0].hash)
    result = client.verify_transaction(last_tx(chain))
    assert result.block.number == len(chain.blocks) - 1
    assert result.proven.index == 1
    assert result.agreed == ("node0", "node1")
    assert result.faults == ()
    assert client.store.get_header(201) is not None  # the change header


def test_cost_grows_with_set_changes_not_blocks(servers: list[RpcServer]) -> None:
    """[LC-SKIP.1] Verifying block 1000 or block 10 costs the same calls and bytes."""
    costs = []
    for length in (10, 1000):
        synthetic = SyntheticChain(make_keys(4))
        synthetic.extend(length - 1)
        synthetic.extend(1, transactions=1)
        with RpcServer(synthetic.methods()) as a, RpcServer(synthetic.methods()) as b:
            client = make_client([a, b])
            client.trust(0, synthetic.blocks[0].hash)
            before = sum(p.calls for p in client.providers)  # type: ignore[attr-defined]
            client.verify_transaction(keccak(synthetic.blocks[-1].transactions[0]))
            costs.append(sum(p.calls for p in client.providers) - before)  # type: ignore[attr-defined]
    assert costs[0] == costs[1] == 3  # proof, change list, cross-check


def test_each_set_change_costs_headers(servers: list[RpcServer]) -> None:
    synthetic = SyntheticChain(make_keys(4))
    for _ in range(3):
        synthetic.extend(5)
        synthetic.change_set(make_keys(4))
    synthetic.extend(5, transactions=1)
    with RpcServer(synthetic.methods()) as a, RpcServer(synthetic.methods()) as b:
        client = make_client([a, b])
        client.trust(0, synthetic.blocks[0].hash)
        client.verify_transaction(keccak(synthetic.blocks[-1].transactions[0]))
        # each change costs one verified header: the change header itself
        assert len(client.store.get_evidence()) == 0
        kept = [n for n in range(len(synthetic.blocks)) if client.store.get_header(n)]
        assert synthetic.changes == [6, 12, 18]
        assert kept == [0, *synthetic.changes, len(synthetic.blocks) - 1]


def test_consecutive_changes_and_paged_change_lists() -> None:
    """[LC-CHANGE.1] changes at adjacent heights; answers that stop early are continued."""
    synthetic = SyntheticChain(make_keys(4), page_size=2)
    synthetic.extend(3)
    for _ in range(5):
        synthetic.change_set(make_keys(4))
    synthetic.extend(3, transactions=1)
    assert synthetic.changes == [4, 5, 6, 7, 8]
    with RpcServer(synthetic.methods()) as a, RpcServer(synthetic.methods()) as b:
        client = make_client([a, b])
        client.trust(0, synthetic.blocks[0].hash)
        result = client.verify_transaction(keccak(synthetic.blocks[-1].transactions[0]))
        assert result.faults == ()
        assert result.agreed == ("node0", "node1")
        assert a.calls.count("polder_getValidatorChanges") == 3  # pages of 2, 2 and 1


def hide_changes(chain: SyntheticChain) -> dict[str, Any]:
    methods = chain.methods()

    def no_changes(first: str, last: str = "latest") -> dict[str, Any]:
        return {"fromBlock": first, "toBlock": last, "changes": []}

    return {**methods, "polder_getValidatorChanges": no_changes}


def test_a_provider_hiding_a_set_change_is_named_and_skipped(chain: SyntheticChain) -> None:
    """[LC-CHANGE.2] a hidden change shows as a set the trusted chain never committed to."""
    with (
        RpcServer(hide_changes(chain)) as liar,
        RpcServer(chain.methods()) as a,
        RpcServer(chain.methods()) as b,
    ):
        client = make_client([liar, a, b])
        client.trust(0, chain.blocks[0].hash)
        result = client.verify_transaction(last_tx(chain))
        assert [f.kind for f in result.faults] == ["ValidatorChangeMissing"]
        assert result.faults[0].provider == "node0"
        assert result.agreed == ("node1", "node2")


def test_only_a_lying_provider_means_no_verdict(chain: SyntheticChain) -> None:
    with RpcServer(hide_changes(chain)) as liar:
        client = make_client([liar], min_agree=1)
        client.trust(0, chain.blocks[0].hash)
        with pytest.raises(VerificationFailed) as caught:
            client.verify_transaction(last_tx(chain))
        assert caught.value.data["faults"][0].kind == ValidatorChangeMissing.__name__


def test_fork_signed_by_a_quorum_is_evidence_and_the_height_is_refused(
    chain: SyntheticChain,
) -> None:
    """[LC-FORK.1] two quorum-sealed headers at one height: stored, raised, never trusted."""
    forked = SyntheticChain(chain.keys)
    forked.blocks = list(chain.blocks)
    forked.changes = list(chain.changes)
    target = len(chain.blocks) - 1
    forked.blocks[target] = forked.make_block(
        target, chain.keys, chain.keys, None, chain.blocks[target].transactions, [], salt=b"x"
    )
    with RpcServer(chain.methods()) as honest, RpcServer(forked.methods()) as other:
        client = make_client([honest, other])
        client.trust(0, chain.blocks[0].hash)
        with pytest.raises(ForkDetected, match="quorum"):
            client.verify_transaction(last_tx(chain))
        evidence = client.store.get_evidence(target)
        assert len(evidence) == 1
        assert evidence[0]["providers"] == ["node0", "node1"]
        with pytest.raises(ForkDetected, match="fork evidence"):
            client.verify_header(target)


def test_conflict_signed_by_a_minority_is_that_providers_fault(chain: SyntheticChain) -> None:
    minority = SyntheticChain(chain.keys)
    minority.blocks = list(chain.blocks)
    minority.changes = list(chain.changes)
    target = len(chain.blocks) - 1
    minority.blocks[target] = minority.make_block(
        target, chain.keys, chain.keys, chain.keys[:1], salt=b"y"
    )
    with (
        RpcServer(chain.methods()) as a,
        RpcServer(minority.methods()) as liar,
        RpcServer(chain.methods()) as b,
    ):
        client = make_client([a, liar, b])
        client.trust(0, chain.blocks[0].hash)
        result = client.verify_transaction(last_tx(chain))
        assert [(f.provider, f.kind) for f in result.faults] == [("node1", "QuorumNotReached")]
        assert result.agreed == ("node0", "node2")
        assert client.store.get_evidence() == []


def test_trust_root_must_hash_to_the_pinned_value(
    chain: SyntheticChain, servers: list[RpcServer]
) -> None:
    """[LC-ROOT.1] the pinned hash, not the provider, is trusted."""
    client = make_client(servers)
    with pytest.raises(VerificationFailed, match="pinned"):
        client.trust(0, b"\x01" * 32)
    client.trust(0, chain.blocks[0].hash)
    with pytest.raises(ConfigError, match="trusts"):
        client.trust(5, chain.blocks[5].hash)


def test_store_persists_verified_headers(
    chain: SyntheticChain, servers: list[RpcServer], tmp_path: Any
) -> None:
    path = tmp_path / "light.sqlite"
    client = make_client(servers, HeaderStore(path))
    client.trust(0, chain.blocks[0].hash)
    client.verify_header(150)
    client.store.close()
    reopened = make_client(servers, HeaderStore(path))
    assert reopened.get_trust_root().hash == chain.blocks[0].hash
    assert reopened.store.get_header(150) is not None
    assert reopened.get_genesis_hash() == chain.blocks[0].hash


def test_checkpoint_cannot_verify_what_came_before_it(
    chain: SyntheticChain, servers: list[RpcServer]
) -> None:
    client = make_client(servers)
    client.trust(250, chain.blocks[250].hash)
    with pytest.raises(VerificationFailed, match="not after the trust root"):
        client.verify_header(100)
    assert client.verify_header(260).block.number == 260
    with pytest.raises(VerificationFailed, match="no genesis hash"):
        client.get_genesis_hash()


def test_unknown_transaction_is_not_found_after_the_head_check(
    chain: SyntheticChain, servers: list[RpcServer]
) -> None:
    client = make_client(servers, clock=lambda: chain.timestamp + len(chain.blocks))
    client.trust(0, chain.blocks[0].hash)
    with pytest.raises(NotFound, match="verified head"):
        client.verify_transaction(b"\x33" * 32)


def test_stale_heads_are_not_a_verdict(chain: SyntheticChain, servers: list[RpcServer]) -> None:
    """[LC-STALE.1] heads older than max_head_age are withheld blocks."""
    client = make_client(servers, clock=lambda: NOW + 3600)
    client.trust(0, chain.blocks[0].hash)
    with pytest.raises(VerificationFailed, match="recent") as caught:
        client.verify_head()
    assert {f.kind for f in caught.value.data["faults"]} == {"StaleProvider"}


def test_unreachable_provider_is_named(chain: SyntheticChain, servers: list[RpcServer]) -> None:
    dead = HttpProvider("http://127.0.0.1:9", name="dead", timeout=2)
    live = [HttpProvider(s.url, name=f"node{i}") for i, s in enumerate(servers)]
    client = LightClient([dead, *live], HeaderStore(None), clock=lambda: NOW)
    client.trust(0, chain.blocks[0].hash)
    result = client.verify_transaction(last_tx(chain))
    assert [(f.provider, f.kind) for f in result.faults] == [("dead", "ProviderError")]


def test_junk_answers_are_faults_not_crashes(chain: SyntheticChain) -> None:
    junk: dict[str, Any] = {
        "polder_getLightBlock": lambda tag: {"header": "0x" + rlp.encode([b"x"] * 3).hex()},
        "polder_getTransactionProof": lambda h: {"lightBlock": "nope"},
        "polder_getValidatorChanges": lambda a, b="latest": [],
    }
    with RpcServer(junk) as bad, RpcServer(chain.methods()) as a, RpcServer(chain.methods()) as b:
        client = make_client([bad, a, b])
        client.trust(0, chain.blocks[0].hash)
        result = client.verify_transaction(last_tx(chain))
        assert [(f.provider, f.kind) for f in result.faults] == [("node0", "InvalidBlock")]
