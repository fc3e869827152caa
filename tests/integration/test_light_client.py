"""The light client against a real 4-validator devnet and an adversarial provider.

The adversary is a real HTTP server in this test that forwards to an honest
node and lies in one way per case (the issue's list). Each lie is caught with
its own error, the adversary is named, and the honest nodes' answer is
accepted. The ``polder verify`` command is run as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import rlp
from devnet_tools import Devnet, post, run_polder

from clients.light import (
    ForkDetected,
    HeaderStore,
    HttpProvider,
    LightClient,
    VerificationFailed,
)
from clients.light.receipt import Receipt, save_receipt
from consensus.seal import (
    EXTRA_DATA_INDEX,
    compute_block_hash,
    compute_seal_digest,
    encode_extra_data,
    get_extra_data,
    sign_seal,
)
from tests.light_tools import RpcServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MAX_HEAD_AGE = 15.0
"""The devnet makes an empty block every 5 s: 15 s old means withheld."""


@pytest.fixture(scope="module")
def tx(net: Devnet) -> dict[str, Any]:
    """A Notary.record mined on the devnet: its hash and receipt."""
    tx_hash = net.send_notary_tx("Schiedam")
    return {"hash": tx_hash, "receipt": net.wait_receipt("Schiedam", tx_hash)}


def keys(net: Devnet) -> list[bytes]:
    """The validators' keys, which the devnet wrote for its operators."""
    folder = Path(net.directory) / "keys"
    return [
        bytes.fromhex((folder / f"{name.lower()}.key").read_text().strip()[2:])
        for name in net.validator_names
    ]


def honest(net: Devnet, names: list[str]) -> list[HttpProvider]:
    return [HttpProvider(net.url(name), name=name) for name in names]


def make_client(net: Devnet, providers: list[Any], **options: Any) -> LightClient:
    """A client with an empty store that trusts the devnet's genesis hash."""
    client = LightClient(providers, HeaderStore(None), max_head_age=MAX_HEAD_AGE, **options)
    genesis = json.loads((Path(net.directory) / "devnet.json").read_text())["genesisHash"]
    client.trust(0, bytes.fromhex(genesis[2:]))
    return client


# -- the adversary ---------------------------------------------------------------------------


def header_fields(light_block: dict[str, Any]) -> list[bytes]:
    return list(rlp.decode(bytes.fromhex(light_block["header"][2:])))


def with_fields(light_block: dict[str, Any], fields: list[bytes]) -> dict[str, Any]:
    number = int.from_bytes(fields[8], "big")
    return {
        **light_block,
        "number": hex(number),
        "hash": "0x" + compute_block_hash(fields).hex(),
        "header": "0x" + rlp.encode(fields).hex(),
    }


def reseal(
    light_block: dict[str, Any], sealers: list[bytes], seals: list[bytes] | None = None
) -> dict[str, Any]:
    fields = header_fields(light_block)
    extra = replace(get_extra_data(fields), seals=())
    fields[EXTRA_DATA_INDEX] = encode_extra_data(extra)
    digest = compute_seal_digest(fields)
    chosen = seals if seals is not None else [sign_seal(digest, key) for key in sealers]
    fields[EXTRA_DATA_INDEX] = encode_extra_data(replace(extra, seals=tuple(chosen)))
    return with_fields(light_block, fields)


def conflicting(light_block: dict[str, Any], sealers: list[bytes]) -> dict[str, Any]:
    """Another block at the same height: other state root, sealed by ``sealers``."""
    fields = header_fields(light_block)
    fields[3] = bytes(32)
    return reseal(with_fields(light_block, fields), sealers)


class Adversary:
    """Forwards to an honest node, then lies as ``mode`` says."""

    def __init__(self, upstream: str, mode: str, net: Devnet, tx_hash: str) -> None:
        self.upstream = upstream
        self.mode = mode
        self.keys = keys(net)
        self.tx_hash = tx_hash
        self.frozen = 1

    def forward(self, method: str, *params: Any) -> Any:
        answer = post(
            self.upstream, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        )
        return answer["result"]

    def lie_about_block(self, light_block: dict[str, Any]) -> dict[str, Any]:
        seals = get_extra_data(header_fields(light_block)).seals
        if not seals:  # genesis: pinned by hash, nothing to lie about
            return light_block
        if self.mode == "too-few-seals":
            return reseal(light_block, [], list(seals[:1]))
        if self.mode == "outsider-seals":
            return reseal(light_block, [os.urandom(32) for _ in seals])
        if self.mode == "duplicate-seal":
            return reseal(light_block, [], [seals[0], seals[0], seals[1]])
        if self.mode == "minority-conflict":
            return conflicting(light_block, self.keys[:1])
        if self.mode == "quorum-conflict":
            return conflicting(light_block, self.keys[:3])
        return light_block

    def get_light_block(self, tag: str) -> Any:
        if self.mode == "stale-head":
            if tag == "latest":
                tag = hex(self.frozen)
            elif int(tag, 16) > self.frozen:
                return None
            return self.forward("polder_getLightBlock", tag)
        block = self.forward("polder_getLightBlock", tag)
        return None if block is None else self.lie_about_block(block)

    def get_transaction_proof(self, tx_hash: str) -> Any:
        answer = self.forward("polder_getTransactionProof", tx_hash)
        if answer is None or self.mode == "stale-head":
            return None
        if self.mode == "forged-receipt-proof":
            proof = list(answer["receiptProof"])
            leaf = bytearray(bytes.fromhex(proof[-1][2:]))
            leaf[-5] ^= 0x01  # one byte of the last log's data
            proof[-1] = "0x" + leaf.hex()
            return {**answer, "receiptProof": proof, "receipt": answer["receipt"]}
        if self.mode == "proof-against-another-block":
            other = self.forward("polder_getLightBlock", hex(int(answer["blockNumber"], 16) - 1))
            return {
                **answer,
                "lightBlock": other,
                "blockNumber": other["number"],
                "blockHash": other["hash"],
            }
        lie = self.lie_about_block(answer["lightBlock"])
        return {**answer, "lightBlock": lie, "blockHash": lie["hash"]}

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "polder_getLightBlock": self.get_light_block,
            "polder_getTransactionProof": self.get_transaction_proof,
            "polder_getValidatorChanges": lambda *p: self.forward("polder_getValidatorChanges", *p),
        }


CASES = [
    ("too-few-seals", "QuorumNotReached"),
    ("outsider-seals", "InvalidSeal"),
    ("duplicate-seal", "InvalidSeal"),
    ("forged-receipt-proof", "InvalidProof"),
    ("proof-against-another-block", "InvalidProof"),
    ("stale-head", "StaleProvider"),
    ("minority-conflict", "QuorumNotReached"),
]


@pytest.mark.parametrize(("mode", "kind"), CASES)
def test_each_lie_is_caught_and_the_honest_answer_accepted(
    net: Devnet, tx: dict[str, Any], mode: str, kind: str
) -> None:
    adversary = Adversary(net.url("Rotterdam"), mode, net, tx["hash"])
    with RpcServer(adversary.methods()) as server:
        liar = HttpProvider(server.url, name="liar")
        client = make_client(net, [liar, *honest(net, ["Schiedam", "Vlaardingen"])])
        result = client.verify_transaction(bytes.fromhex(tx["hash"][2:]))
        assert [(f.provider, f.kind) for f in result.faults] == [("liar", kind)]
        assert result.agreed == ("Schiedam", "Vlaardingen")
        assert result.block.number == int(tx["receipt"]["blockNumber"], 16)
        assert result.proven.receipt.succeeded
        assert len(result.proven.receipt.logs) == len(tx["receipt"]["logs"])

        alone = make_client(net, [liar], min_agree=1)
        check: Callable[[], object] = alone.verify_head
        if mode == "stale-head":
            wait_for_stale(net)
        else:
            check = partial(alone.verify_transaction, bytes.fromhex(tx["hash"][2:]))
        with pytest.raises(VerificationFailed) as caught:
            check()
        assert [f.kind for f in caught.value.data["faults"]] == [kind]


def wait_for_stale(net: Devnet) -> None:
    """Wait until block 1 (the stale provider's head) is older than MAX_HEAD_AGE."""
    block = net.block("Schiedam", 1)
    assert block is not None
    delay = int(block["timestamp"], 16) + MAX_HEAD_AGE + 1 - time.time()
    if delay > 0:
        time.sleep(delay)


def test_a_fork_signed_by_a_quorum_is_reported_with_evidence(
    net: Devnet, tx: dict[str, Any]
) -> None:
    """[LC-FORK.1] needs more than a third of the keys: the test holds the devnet's."""
    adversary = Adversary(net.url("Rotterdam"), "quorum-conflict", net, tx["hash"])
    with RpcServer(adversary.methods()) as server:
        client = make_client(
            net, [*honest(net, ["Schiedam"]), HttpProvider(server.url, name="liar")]
        )
        with pytest.raises(ForkDetected, match="FORK"):
            client.verify_transaction(bytes.fromhex(tx["hash"][2:]))
        number = int(tx["receipt"]["blockNumber"], 16)
        evidence = client.store.get_evidence(number)
        assert evidence[0]["providers"] == ["Schiedam", "liar"]


def test_honest_nodes_verify_head_and_account(net: Devnet, tx: dict[str, Any]) -> None:
    client = make_client(net, honest(net, net.validator_names))
    head = client.verify_head()
    assert set(head.agreed) == set(net.validator_names)
    number = int(tx["receipt"]["blockNumber"], 16)
    notary = bytes.fromhex(net.notary[2:])
    before = client.verify_account(notary, number - 1, [1])
    after = client.verify_account(notary, number, [1])
    assert after.storage[1] == before.storage[1] + 1


# -- the command ---------------------------------------------------------------------------


def polder(*args: str) -> subprocess.CompletedProcess[str]:
    return run_polder(*args, timeout=60)


def test_polder_verify_tx_and_receipt(net: Devnet, tx: dict[str, Any], tmp_path: Path) -> None:
    store = str(tmp_path / "light.sqlite")
    nodes = [f"--node={name}={net.url(name)}" for name in ("Schiedam", "Maassluis")]
    devnet = json.loads((Path(net.directory) / "devnet.json").read_text())
    root = ["--genesis-hash", devnet["genesisHash"], "--store", store]
    done = polder("verify", "tx", tx["hash"], *nodes, *root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("VERIFIED")
    assert "Schiedam, Maassluis" in done.stdout

    receipt = Receipt(
        kind="transaction",
        chain_id=net.chain_id,
        genesis_hash=bytes.fromhex(devnet["genesisHash"][2:]),
        tx_hash=bytes.fromhex(tx["hash"][2:]),
        block_number=int(tx["receipt"]["blockNumber"], 16),
        block_hash=bytes.fromhex(tx["receipt"]["blockHash"][2:]),
    )
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    save_receipt(receipt, good)
    save_receipt(replace(receipt, block_number=receipt.block_number + 1), bad)
    done = polder("verify", "receipt", str(good), *nodes, "--store", store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ it is signed for chain id" in done.stdout
    done = polder("verify", "receipt", str(bad), *nodes, "--store", store)
    assert done.returncode == 1
    assert "NOT VERIFIED" in done.stdout
    assert "the receipt names block" in done.stdout

    done = polder("verify", "tx", "0x" + "00" * 32, *nodes, "--store", store)
    assert done.returncode == 1
    assert "NotFound" in done.stdout
    done = polder("verify", "tx", tx["hash"], *nodes)
    assert done.returncode == 2
    assert "no trust root" in done.stderr


def test_readme_walkthrough_demo_receipt_verifies(net: Devnet, tmp_path: Path) -> None:
    """The README's path: the demo saves a receipt, `polder verify receipt` checks it."""
    demo = subprocess.run(
        [sys.executable, "scripts/demo_chain.py", "--devnet", str(net.directory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    receipt = Path(net.directory) / "demo-receipt.json"
    done = polder(
        "verify", "receipt", str(receipt), "--devnet", str(net.directory),
        "--store", str(tmp_path / "light.sqlite"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agreed        Schiedam, Rotterdam, Vlaardingen, Maassluis" in done.stdout
