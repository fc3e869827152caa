"""Walk through the chain with web3.py against a running devnet.

1. the admin key deploys a Notary contract (deployment is permissioned);
2. a brand-new account with no balance records a value (gas is free);
3. the event is read back with eth_getLogs;
4. the stored value is proven with eth_getProof against the block's state root,
   checked here (consensus.proofs), not taken on the node's word;
5. a receipt for the record is saved to DIR/demo-receipt.json, for
   `polder verify receipt` (the light client) to check against all validators.

Usage: python scripts/demo_chain.py --devnet .devnet
"""

from __future__ import annotations

# isort: off
import clients  # noqa: F401  (before eth: it selects eth-hash's fast keccak backend)

# isort: on

import argparse
import json
import sys
from pathlib import Path

from eth_account import Account
from eth_hash.auto import keccak
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware

from clients.light.receipt import Receipt, save_receipt
from consensus.proofs import compute_proven_account, compute_proven_storage
from contracts.loader import load_artifact


def connect(url: str) -> Web3:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def send(w3: Web3, account: Account, tx: dict) -> dict:
    tx = {
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        **tx,
    }
    tx.setdefault("gas", w3.eth.estimate_gas(tx | {"from": account.address}))
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.2)


def verify_storage_proof(w3: Web3, address: str, slot: int, block_number: int) -> int:
    """Return the slot's value after checking the EIP-1186 proof against the state root."""
    block = w3.eth.get_block(block_number)
    proof = w3.eth.get_proof(address, [slot], block_number)
    account = compute_proven_account(
        bytes(block["stateRoot"]),
        bytes.fromhex(address[2:]),
        [bytes(node) for node in proof["accountProof"]],
    )
    return compute_proven_storage(
        account.storage_root, slot, [bytes(node) for node in proof["storageProof"][0]["proof"]]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devnet", type=Path, default=Path(".devnet"))
    args = parser.parse_args()
    manifest = json.loads((args.devnet / "devnet.json").read_text())
    w3 = connect(manifest["nodes"][0]["rpc"])
    admin = Account.from_key(Path(manifest["admin"]["keyFile"]).read_text().strip())
    artifact = load_artifact("Notary")

    receipt = send(w3, admin, {"data": "0x" + artifact.bytecode.hex()})
    notary = w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
    print(f"1. admin deployed Notary at {notary.address} in block {receipt['blockNumber']}")

    resident = Account.create()
    key, value = keccak(b"demo key"), keccak(b"demo value")
    call = notary.functions.record(key, value).build_transaction(
        {"from": resident.address, "gas": 200_000, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    )
    receipt = send(w3, resident, {"to": call["to"], "data": call["data"], "gas": call["gas"]})
    print(
        f"2. fresh account {resident.address} (balance {w3.eth.get_balance(resident.address)}) "
        f"recorded a value in block {receipt['blockNumber']}"
    )

    events = notary.events.Recorded().get_logs(from_block=receipt["blockNumber"])
    args_ = events[0]["args"]
    print(f"3. eth_getLogs: Recorded(key={args_['key'].hex()[:16]}…, author={args_['author']})")

    count = verify_storage_proof(w3, notary.address, 1, receipt["blockNumber"])
    print(
        f"4. eth_getProof: slot 1 (count) = {count}, "
        f"proven against the state root of block {receipt['blockNumber']}"
    )
    path = args.devnet / "demo-receipt.json"
    save_receipt(
        Receipt(
            kind="transaction",
            chain_id=w3.eth.chain_id,
            genesis_hash=bytes.fromhex(manifest["genesisHash"][2:]),
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=receipt["blockNumber"],
            block_hash=bytes(receipt["blockHash"]),
        ),
        path,
    )
    print(f"5. receipt saved: {path}; check it with the light client:")
    print(f"   .venv/bin/polder verify receipt {path} --devnet {args.devnet}")
    return 0 if count == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
