"""The node's chain: genesis, block building, block import, and state reads.

All writes of one block (state trie nodes, header, body, receipts, indexes,
canonical head) go into an in-memory overlay and reach the database in a
single atomic batch (:meth:`Chain._commit`). A node killed at any instant
therefore restarts on the last fully written block, never a half-written one.

Methods here block (py-evm execution, LevelDB reads): the node calls them on
one dedicated executor thread, never on the event loop, and never two at once.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import rlp
from eth._utils.rlp import validate_imported_block_unchanged
from eth.abc import (
    AtomicDatabaseAPI,
    BlockAPI,
    BlockHeaderAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    VirtualMachineAPI,
)
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.db.batch import BatchDB
from eth.exceptions import (
    BlockNotFound,
    CanonicalHeadNotFound,
    HeaderNotFound,
    Revert,
    TransactionNotFound,
)
from eth.rlp.accounts import Account
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_typing import Address, BlockNumber, Hash32
from eth_utils import ValidationError, encode_hex
from trie import HexaryTrie

from consensus.errors import (
    InvalidBlock,
    InvalidTransaction,
    StorageError,
    TransactionReverted,
)
from consensus.genesis import Genesis
from consensus.seal import (
    ExtraData,
    compute_seal_digest,
    compute_validators_hash,
    encode_extra_data,
    get_extra_data,
    replace_extra_data,
    sign_seal,
    validate_next_validators,
    validate_validator_set,
)
from contracts.registry import REGISTRY_NAME
from node.evm import PolderBlock, PolderHeader, PolderMiningChain, PolderVM, decode_header
from node.governance import read_validators_at

POST_MERGE_NONCE = b"\x00" * 8
MAX_CLOCK_DRIFT = 15.0
"""Seconds a proposal's timestamp may lie ahead of this node's clock."""
MAX_STAGED_BLOCKS = 8
"""Built or checked blocks kept staged at once (one height, a few rounds)."""
ZERO_HASH = b"\x00" * 32
VALIDATOR_SETS_KEY = b"polder:validator-sets"
"""RLP list of ``[first height, [address, ...]]``: each validator set and where it starts."""

ValidatorSets = list[tuple[int, tuple[bytes, ...]]]


@dataclass(frozen=True)
class Excluded:
    """A transaction the block builder left out, and why."""

    tx_hash: bytes
    reason: str


@dataclass(frozen=True)
class BuiltBlock:
    """A block executed by this node, ready to be sealed and committed."""

    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]
    excluded: tuple[Excluded, ...]
    """Transactions that turned invalid or reverted against the block's state."""


@dataclass(frozen=True)
class StagedBlock:
    """A block this node executed but has not committed yet."""

    overlay: BatchDB
    """Its writes, waiting for the commit's atomic batch."""
    following: tuple[bytes, ...]
    """The validator set that seals the next block, read once from the post-state."""
    receipts: tuple[ReceiptAPI, ...]
    """Its receipts, as executed here."""
    block: BlockAPI
    """The block as built or checked here: the body that was executed.

    Its hash covers the header alone, so a block that arrives later with the
    same hash (sealed, from the decision or from a peer) may carry another
    body; the commit keeps this one."""


@dataclass(frozen=True)
class TransactionLocation:
    """Where a transaction sits in the canonical chain."""

    block_number: int
    index: int


def make_unsealed_extra_data(validators: Sequence[bytes], round_number: int) -> ExtraData:
    """Return the extraData of a block before sealing; the next set is this set."""
    return ExtraData(
        vanity=compute_validators_hash(validators),
        validators=tuple(validators),
        vote=(),
        round=round_number,
        seals=(),
    )


def encode_genesis_extra_data(validators: Sequence[bytes]) -> bytes:
    """Return block 0's extraData: the initial set, committing to itself as next set."""
    return encode_extra_data(make_unsealed_extra_data(validators, 0))


def compute_genesis_params(genesis: Genesis) -> dict[str, Any]:
    """Return py-evm header parameters of block 0 (everything but the state root)."""
    return {
        "difficulty": 0,
        "gas_limit": genesis.gas_limit,
        "timestamp": genesis.timestamp,
        "extra_data": encode_genesis_extra_data([v.address for v in genesis.validators]),
        "nonce": POST_MERGE_NONCE,
        "coinbase": b"\x00" * 20,
    }


def compute_genesis_state(genesis: Genesis) -> Any:
    """Return py-evm's genesis state dict from the allocations."""
    return {
        address: {
            "balance": account.balance,
            "nonce": account.nonce,
            "code": account.code,
            "storage": dict(account.storage),
        }
        for address, account in genesis.alloc.items()
    }


def recover_sender(transaction: SignedTransactionAPI) -> bytes:
    """Return the sender of a signed transaction, as :class:`InvalidTransaction`."""
    try:
        return transaction.sender
    except Exception as exc:  # eth-keys raises several types for bad signatures
        raise InvalidTransaction(f"invalid signature: {exc}") from exc


def validate_deploy_permission(transaction: SignedTransactionAPI, admins: frozenset[bytes]) -> None:
    """Raise :class:`InvalidTransaction` for a contract creation by a non-admin key."""
    if transaction.to == b"" and recover_sender(transaction) not in admins:
        raise InvalidTransaction(
            "contract deployment is permissioned: only municipal admin keys listed in "
            "genesis may deploy",
            sender=encode_hex(recover_sender(transaction)),
        )


def apply_transaction(
    vm: VirtualMachineAPI,
    header: BlockHeaderAPI,
    transaction: SignedTransactionAPI,
    admins: frozenset[bytes],
) -> tuple[BlockHeaderAPI, ReceiptAPI]:
    """Apply one transaction to ``vm``'s state, or leave the state untouched.

    Returns the header with the receipt added. Raises :class:`InvalidTransaction`
    (nonce, balance, gas, permission) or :class:`TransactionReverted`; in both
    cases the state is as before. Block building and mempool admission share
    this, so what admission accepts is exactly what a block may include.
    """
    validate_deploy_permission(transaction, admins)
    try:
        vm.validate_transaction_against_header(header, transaction)
    except ValidationError as exc:
        raise InvalidTransaction(str(exc)) from exc
    # vm.apply_transaction locks the journal first, after which a reverting
    # transaction could no longer be rolled back; take its steps by hand.
    vm.state.lock_changes()
    snapshot = vm.state.snapshot()
    try:
        computation = vm.state.apply_transaction(transaction)
    except ValidationError as exc:
        vm.state.revert(snapshot)
        raise InvalidTransaction(str(exc)) from exc
    if computation.is_error:
        vm.state.revert(snapshot)
        output = computation.output if isinstance(computation.error, Revert) else b""
        reason = decode_revert_reason(output) if output else str(computation.error)
        raise TransactionReverted(
            f"execution reverted: {reason}", reason=reason, data=encode_hex(output)
        )
    vm.state.commit(snapshot)
    receipt = vm.make_receipt(header, transaction, computation, vm.state)
    vm.validate_receipt(receipt)
    return vm.add_receipt_to_header(header, receipt), receipt


def validate_receipts_succeeded(block: BlockAPI, receipts: Sequence[ReceiptAPI]) -> None:
    """Raise :class:`InvalidBlock` if any transaction reverted ([CHAIN-REVERT.1])."""
    for index, receipt in enumerate(receipts):
        if receipt.state_root != b"\x01":
            raise InvalidBlock(
                f"block #{block.number} includes transaction {index}, which reverted"
            )


def decode_revert_reason(output: bytes) -> str:
    """Decode Solidity/Vyper ``Error(string)`` revert data, or describe raw data."""
    if output[:4] == bytes.fromhex("08c379a0") and len(output) >= 68:
        length = int.from_bytes(output[36:68], "big")
        return output[68 : 68 + length].decode("utf-8", errors="replace")
    if output:
        return f"reverted with data {encode_hex(output)}"
    return "reverted without a reason"


class Chain:
    """One node's view of the chain, over an atomic database."""

    def __init__(self, db: AtomicDatabaseAPI, genesis: Genesis) -> None:
        self.genesis = genesis
        self._db = db
        self._chain_class = make_chain_class(genesis.chain_id)
        self._staged: dict[bytes, StagedBlock] = {}
        """Blocks this node built or checked, by block hash, until committed."""
        self._sets: ValidatorSets = [(0, tuple(v.address for v in genesis.validators))]
        """Each validator set with the height it seals from, ascending."""
        self._registry = genesis.contracts.get(REGISTRY_NAME)
        """Address of the ValidatorRegistry, if genesis deploys one."""
        self._evm = self._open()
        self._sets = self._load_sets()
        self._validate_registry_genesis()

    # -- set-up -----------------------------------------------------------

    def _open(self) -> PolderMiningChain:
        """Open the read-only py-evm view, creating block 0 if the DB is empty."""
        expected = compute_genesis_hash(self.genesis)
        try:
            evm = self._wrap(self._chain_class(self._db))
            stored = evm.chaindb.get_canonical_block_hash(BlockNumber(0))
        except (CanonicalHeadNotFound, HeaderNotFound):
            overlay = BatchDB(self._db)
            self._chain_class.from_genesis(
                AtomicDB(overlay),
                compute_genesis_params(self.genesis),
                compute_genesis_state(self.genesis),
            )
            self._commit(overlay)
            evm = self._wrap(self._chain_class(self._db))
            stored = evm.chaindb.get_canonical_block_hash(BlockNumber(0))
        if stored != expected:
            raise StorageError(
                f"the data directory holds another chain (genesis {encode_hex(stored)}, "
                f"this genesis.json gives {encode_hex(expected)}); use an empty data directory",
            )
        return evm

    def _wrap(self, evm: PolderMiningChain) -> PolderMiningChain:
        evm.consensus_context.validators_for = self.get_validators_for  # type: ignore[attr-defined]
        return evm

    def _stage(self) -> tuple[BatchDB, PolderMiningChain]:
        """Return a fresh overlay and a py-evm chain writing into it.

        Each build or import stages its writes in its own overlay, so a failed
        import can never disturb a block this node built and is about to commit.
        """
        overlay = BatchDB(self._db)
        return overlay, self._wrap(self._chain_class(AtomicDB(overlay)))

    def _commit(self, overlay: BatchDB) -> None:
        """Write everything staged in ``overlay`` to disk in one atomic batch."""
        with self._db.atomic_batch() as batch:
            overlay.commit_to(batch, apply_deletes=True)

    # -- rules --------------------------------------------------------------

    def get_validators_for(self, header: BlockHeaderAPI) -> Sequence[bytes]:
        """Return the validator set that must seal ``header``."""
        return self.get_validators_at(header.block_number)

    def get_validators_at(self, number: int) -> tuple[bytes, ...]:
        """Return the validator set that seals block ``number``."""
        index = bisect_right([start for start, _ in self._sets], number) - 1
        return self._sets[max(index, 0)][1]

    @property
    def validators(self) -> tuple[bytes, ...]:
        """The validator set that seals the next block."""
        return self.get_validators_at(self.head.block_number + 1)

    def _load_sets(self) -> ValidatorSets:
        try:
            encoded = self._db[VALIDATOR_SETS_KEY]
        except KeyError:
            return self._sets
        return [
            (int.from_bytes(start, "big"), tuple(members)) for start, members in rlp.decode(encoded)
        ]

    def _validate_registry_genesis(self) -> None:
        """Refuse a genesis whose registry storage disagrees with its validator list."""
        if self._registry is None:
            return
        genesis = self.get_header_by_number(0)
        listed = self.get_validators_at(0)
        if self.compute_next_validators(self.get_state(genesis), 1) != listed:
            raise StorageError(
                "genesis ValidatorRegistry storage does not hold the genesis validators;"
                " regenerate genesis.json (contracts.registry.compute_registry_storage)"
            )

    def compute_next_validators(self, state: StateAPI, number: int) -> tuple[bytes, ...]:
        """Return the set that seals block ``number``, given the state after ``number - 1``."""
        if self._registry is None:
            return self.get_validators_at(number - 1)
        return read_validators_at(state, self._registry, number)

    def _stage_validator_sets(
        self, overlay: BatchDB, number: int, following: tuple[bytes, ...]
    ) -> ValidatorSets:
        """Return the sets after block ``number``; stage them in ``overlay`` if they change."""
        if following == self.get_validators_at(number):
            return self._sets
        sets = [*self._sets, (number + 1, following)]
        overlay[VALIDATOR_SETS_KEY] = rlp.encode([[start, list(m)] for start, m in sets])
        return sets

    def _validate_next_validators(
        self, header: BlockHeaderAPI, state: StateAPI
    ) -> tuple[bytes, ...]:
        """Return the set that seals the next block; ``header``'s vanity must commit to it.

        [CHAIN-VANITY.1] The set is read from the registry on the state after
        this block.
        """
        following = self.compute_next_validators(state, header.block_number + 1)
        validate_next_validators(get_extra_data(PolderHeader.serialize(header)), following)
        return following

    # -- reads ----------------------------------------------------------------

    @property
    def head(self) -> BlockHeaderAPI:
        """The header of the latest committed block."""
        return self._evm.get_canonical_head()

    @property
    def genesis_hash(self) -> Hash32:
        return self._evm.chaindb.get_canonical_block_hash(BlockNumber(0))

    def get_header_by_number(self, number: int) -> BlockHeaderAPI:
        """Return the canonical header at ``number``; raise :class:`HeaderNotFound`."""
        block_hash = self._evm.chaindb.get_canonical_block_hash(BlockNumber(number))
        return self.get_header_by_hash(block_hash)

    def get_header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI:
        return self._evm.chaindb.get_block_header_by_hash(Hash32(block_hash))

    def is_canonical(self, header: BlockHeaderAPI) -> bool:
        try:
            return self._evm.chaindb.get_canonical_block_hash(header.block_number) == header.hash
        except HeaderNotFound:
            return False

    def get_block(self, header: BlockHeaderAPI) -> BlockAPI:
        return self._evm.get_block_by_header(header)

    def get_receipts(self, header: BlockHeaderAPI) -> tuple[ReceiptAPI, ...]:
        vm_class = self._evm.get_vm_class(header)
        return tuple(self._evm.chaindb.get_receipts(header, vm_class.get_receipt_builder()))

    def get_transaction_location(self, tx_hash: bytes) -> TransactionLocation:
        """Return where a transaction is; raise :class:`TransactionNotFound`."""
        number, index = self._evm.chaindb.get_transaction_index(Hash32(tx_hash))
        return TransactionLocation(block_number=number, index=index)

    def get_vm(self, header: BlockHeaderAPI) -> VirtualMachineAPI:
        """Return a VM whose state is the one ``header`` builds on or ends with."""
        return self._evm.get_vm(header)

    def get_state(self, header: BlockHeaderAPI) -> StateAPI:
        """Return the state after ``header``'s block."""
        return self._evm.get_vm(header).state

    def get_next_header(self, parent: BlockHeaderAPI, **params: Any) -> BlockHeaderAPI:
        """Return a header for a block on top of ``parent`` (for calls and building)."""
        return self._evm.create_header_from_parent(parent, **params)

    def decode_transaction(self, raw: bytes) -> SignedTransactionAPI:
        """Decode a raw (legacy or typed) transaction; raise :class:`InvalidTransaction`."""
        try:
            return PragueTransactionBuilder.decode(raw)
        except Exception as exc:  # rlp and py-evm raise many types for junk bytes
            raise InvalidTransaction(f"transaction does not decode: {exc}") from exc

    def get_account_proof(
        self, address: bytes, slots: Iterable[int], header: BlockHeaderAPI
    ) -> dict[str, Any]:
        """Return EIP-1186 proof data for ``address`` and ``slots`` at ``header``."""
        state_trie = HexaryTrie(self._db, header.state_root)
        try:
            account_proof = state_trie.get_proof(keccak(address))
        except Exception as exc:  # a pruned or missing node means the height is gone
            raise StorageError(
                f"state at block {header.block_number} is not retained: {exc}"
            ) from exc
        state = self.get_state(header)
        encoded = state_trie.get(keccak(address))
        storage_root = (
            rlp.decode(encoded, sedes=Account).storage_root if encoded else BLANK_ROOT_HASH
        )
        storage_trie = HexaryTrie(self._db, storage_root)
        storage = []
        for slot in slots:
            key = slot.to_bytes(32, "big")
            storage.append(
                {
                    "key": slot,
                    "value": state.get_storage(Address(address), slot),
                    "proof": [rlp.encode(node) for node in storage_trie.get_proof(keccak(key))],
                }
            )
        return {
            "address": address,
            "balance": state.get_balance(Address(address)),
            "nonce": state.get_nonce(Address(address)),
            "codeHash": state.get_code_hash(Address(address)),
            "storageHash": storage_root,
            "accountProof": [rlp.encode(node) for node in account_proof],
            "storageProof": storage,
        }

    def get_trie_proof(self, root: bytes, key: bytes) -> list[bytes]:
        """Return the RLP-encoded trie nodes on the path to ``key`` under ``root``."""
        try:
            nodes = HexaryTrie(self._db, root).get_proof(key)
        except Exception as exc:  # a missing node means the trie is not held
            raise StorageError(f"trie 0x{root.hex()} is not held by this node: {exc}") from exc
        return [rlp.encode(node) for node in nodes]

    def get_transaction_proof(self, header: BlockHeaderAPI, index: int) -> dict[str, Any]:
        """Return the ``index``-th transaction and receipt of a block with their trie proofs."""
        key = rlp.encode(index)
        transactions = HexaryTrie(self._db, header.transaction_root)
        receipts = HexaryTrie(self._db, header.receipt_root)
        return {
            "transaction": transactions.get(key),
            "transactionProof": self.get_trie_proof(header.transaction_root, key),
            "receipt": receipts.get(key),
            "receiptProof": self.get_trie_proof(header.receipt_root, key),
        }

    def get_validator_changes(self) -> tuple[int, ...]:
        """Return the heights whose header commits to a new next validator set, ascending."""
        return tuple(start - 1 for start, _ in self._sets[1:])

    # -- writes -----------------------------------------------------------

    def build_block(
        self,
        transactions: Sequence[SignedTransactionAPI],
        *,
        timestamp: int,
        coinbase: bytes,
        round_number: int = 0,
        max_seconds: float | None = None,
    ) -> BuiltBlock:
        """Execute ``transactions`` in one batch on top of the head; do not commit.

        Transactions that became invalid, or that revert, are left out and
        reported: a reverting transaction never enters a block.
        """
        parent = self.head
        extra = make_unsealed_extra_data(
            self.get_validators_at(parent.block_number + 1), round_number
        )
        header = self.get_next_header(
            parent,
            timestamp=max(timestamp, parent.timestamp + 1),
            coinbase=coinbase,
            gas_limit=parent.gas_limit,
            extra_data=encode_extra_data(extra),
        )
        overlay, evm = self._stage()
        vm = evm.get_vm(header)
        included: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        excluded: list[Excluded] = []
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        # Senders with a transaction left for the next block: their later nonces
        # wait too, rather than fail as "nonce too high" and be reported as
        # invalid (the pool would then drop them and everything after them).
        held_back: set[bytes] = set()
        for transaction in transactions:
            if deadline is not None and time.perf_counter() > deadline:
                break  # the rest waits for the next block
            if held_back and transaction.sender in held_back:
                continue
            if transaction.gas > header.gas_limit - header.gas_used:
                held_back.add(transaction.sender)
                continue  # stays in the mempool for the next block
            try:
                header, receipt = apply_transaction(vm, header, transaction, self.genesis.admins)
            except InvalidTransaction as exc:
                excluded.append(Excluded(transaction.hash, exc.message))
                continue
            included.append(transaction)
            receipts.append(receipt)
        following = self.compute_next_validators(vm.state, header.block_number + 1)
        header = header.copy(
            extra_data=encode_extra_data(replace(extra, vanity=compute_validators_hash(following)))
        )
        block = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), header, included, receipts
        )
        mined = vm.mine_block(block).block
        self._keep_staged(mined.hash, StagedBlock(overlay, following, tuple(receipts), mined))
        return BuiltBlock(block=mined, receipts=tuple(receipts), excluded=tuple(excluded))

    def seal_block(
        self, block: BlockAPI, seals: Sequence[bytes], round_number: int | None = None
    ) -> BlockAPI:
        """Return ``block`` with ``seals`` (and, if given, the commit round) in its extraData.

        Neither changes the block hash ([CHAIN-HASH.1]); a block prepared in one
        round and committed in a later one carries the later round.
        """
        fields = PolderHeader.serialize(block.header)
        extra = get_extra_data(fields)
        round_number = extra.round if round_number is None else round_number
        sealed = replace_extra_data(fields, replace(extra, round=round_number, seals=tuple(seals)))
        return block.copy(header=PolderHeader.deserialize(sealed))

    def compute_seal_digest(self, block: BlockAPI, round_number: int) -> bytes:
        """Return what a commit seal signs for ``block`` committed in ``round_number``."""
        return compute_seal_digest(
            PolderHeader.serialize(self.seal_block(block, (), round_number).header)
        )

    def check_proposal(self, block: BlockAPI, now: float) -> None:
        """Validate and execute a proposed (unsealed) block; stage it for commit.

        Raises :class:`InvalidBlock` saying what is wrong. On success the
        block's writes wait in an overlay until :meth:`commit_staged_block`
        brings the sealed block, so a validator executes each proposal once.
        """
        parent = self.head
        header = block.header
        if header.parent_hash != parent.hash or header.block_number != parent.block_number + 1:
            raise InvalidBlock(f"proposal #{header.block_number} does not extend the head")
        if header.timestamp > now + MAX_CLOCK_DRIFT:
            raise InvalidBlock(f"proposal #{header.block_number} is timestamped in the future")
        self.validate_body_rules(block)
        validate_validator_set(
            get_extra_data(PolderHeader.serialize(header)), self.get_validators_for(header)
        )
        overlay, evm = self._stage()
        try:
            PolderVM.validate_header(header, parent)
            base = evm.create_header_from_parent(parent)
            vm = evm.get_vm(base.copy(gas_used=header.gas_used))
            validate_imported_block_unchanged(vm.import_block(block).block, block)
            receipts = evm.chaindb.get_receipts(header, PolderVM.get_receipt_builder())
        except (ValidationError, BlockNotFound, HeaderNotFound) as exc:
            raise InvalidBlock(f"proposal #{header.block_number} rejected: {exc}") from exc
        validate_receipts_succeeded(block, receipts)
        following = self._validate_next_validators(header, evm.get_vm(header).state)
        self._keep_staged(block.hash, StagedBlock(overlay, following, tuple(receipts), block))

    def validate_body_rules(self, block: BlockAPI) -> None:
        """Polder's per-transaction block rules beyond the EVM's ([CHAIN-DEPLOY.1])."""
        for transaction in block.transactions:
            try:
                validate_deploy_permission(transaction, self.genesis.admins)
            except InvalidTransaction as exc:
                raise InvalidBlock(f"block #{block.number}: {exc.message}") from exc

    def _keep_staged(self, block_hash: bytes, staged: StagedBlock) -> None:
        """Remember a staged block; keep only the few most recent."""
        self._staged.pop(block_hash, None)
        self._staged[block_hash] = staged
        while len(self._staged) > MAX_STAGED_BLOCKS:
            del self._staged[next(iter(self._staged))]

    def has_staged(self, block_hash: bytes) -> bool:
        return block_hash in self._staged

    def sign_block(self, block: BlockAPI, private_key: bytes) -> bytes:
        """Return this validator's committed seal over ``block``."""
        return sign_seal(compute_seal_digest(PolderHeader.serialize(block.header)), private_key)

    def commit_built_block(self, block: BlockAPI) -> tuple[ReceiptAPI, ...]:
        """Persist a sealed block this node built or checked (its state is staged).

        Returns its receipts; :meth:`commit_staged_block` also returns the block.
        """
        return self.commit_staged_block(block)[1]

    def commit_staged_block(self, block: BlockAPI) -> tuple[BlockAPI, tuple[ReceiptAPI, ...]]:
        """Persist the staged block with ``block``'s header; return it and its receipts.

        ``block`` brings the header with its seals and round, which are
        checked here; the body is the one this node executed, whatever body
        ``block`` carries: the hash covers the header alone, and the header's
        roots commit to the executed body ([QBFT-GOSSIP-STAGED.1]). A header
        that does not validate (too few seals, say, from a peer) leaves the
        staged state for the real one.
        """
        staged = self._staged.get(block.hash)
        if staged is None:
            raise InvalidBlock(f"block #{block.number} was not built or checked here; import it")
        if block.header.parent_hash != self.head.hash:
            raise InvalidBlock(f"block #{block.number} no longer extends the head")
        block = staged.block.copy(header=block.header)
        evm = self._wrap(self._chain_class(AtomicDB(staged.overlay)))
        try:
            evm.persist_block(block, perform_validation=True)
        except ValidationError as exc:
            raise InvalidBlock(f"built block does not validate: {exc}") from exc
        # the vanity was set (built) or checked against ``following`` when staged,
        # and sealing changes neither
        sets = self._stage_validator_sets(staged.overlay, block.number, staged.following)
        self._commit(staged.overlay)
        self._sets = sets
        self._staged.clear()
        return block, staged.receipts

    def import_block(self, block: BlockAPI) -> tuple[ReceiptAPI, ...]:
        """Validate, execute and persist a sealed block from elsewhere; return its receipts.

        Besides py-evm's checks (execution, roots, seals): no contract creation
        by a non-admin key, and no reverted transaction, since an honest
        proposer never includes one ([CHAIN-DEPLOY.1], [CHAIN-REVERT.1]).
        """
        self.validate_body_rules(block)
        overlay, evm = self._stage()
        try:
            # the seal check is cheap and comes first: an unsealed block must
            # not make this node execute its transactions
            evm.get_block_header_by_hash(block.header.parent_hash)
            evm.validate_seal(block.header)
            evm.import_block(block, perform_validation=True)
            receipts = evm.chaindb.get_receipts(block.header, PolderVM.get_receipt_builder())
        except (ValidationError, BlockNotFound, HeaderNotFound) as exc:
            raise InvalidBlock(f"block #{block.number} rejected: {exc}") from exc
        validate_receipts_succeeded(block, receipts)
        following = self._validate_next_validators(block.header, evm.get_vm(block.header).state)
        sets = self._stage_validator_sets(overlay, block.number, following)
        self._commit(overlay)
        self._sets = sets
        self._staged.clear()
        return tuple(receipts)

    def decode_block(self, raw: bytes) -> BlockAPI:
        """Decode an RLP block; raise :class:`InvalidBlock` for junk."""
        try:
            block: BlockAPI = rlp.decode(raw, sedes=PolderBlock)
        except Exception as exc:  # rlp raises several types for junk bytes
            raise InvalidBlock(f"block does not decode: {exc}") from exc
        return block

    def decode_block_number(self, raw: bytes) -> int:
        """Decode only the number of an RLP block's header; raise :class:`InvalidBlock` for junk.

        For routing a gossiped block without decoding its transactions.
        """
        try:
            header: BlockHeaderAPI = PolderHeader.deserialize(rlp.decode_lazy(raw)[0])
        except Exception as exc:  # rlp raises several types for junk bytes
            raise InvalidBlock(f"block does not decode: {exc}") from exc
        return header.block_number


def make_chain_class(chain_id: int) -> type[PolderMiningChain]:
    """Return a py-evm chain class bound to ``chain_id``."""
    return type("PolderChain", (PolderMiningChain,), {"chain_id": chain_id})


def compute_genesis_hash(genesis: Genesis) -> Hash32:
    """Return the hash of block 0 built from ``genesis`` (deterministic)."""
    scratch = AtomicDB()
    evm = make_chain_class(genesis.chain_id).from_genesis(
        scratch, compute_genesis_params(genesis), compute_genesis_state(genesis)
    )
    return evm.chaindb.get_canonical_block_hash(BlockNumber(0))


__all__ = [
    "BuiltBlock",
    "Chain",
    "Excluded",
    "TransactionLocation",
    "TransactionNotFound",
    "compute_genesis_hash",
    "decode_header",
]
