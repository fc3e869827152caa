"""py-evm adapted to Polder: the header class, block class, VM and consensus rules.

Everything that touches py-evm's class hierarchy lives here, so that the rest of
the node talks to :mod:`node.chain` and py-evm (a pre-release whose repository
is archived upstream) could be swapped for another EVM in one place.

Differences from Ethereum's Prague rules, and why:

* **Block hash** excludes the committed seals and the round
  (:func:`consensus.seal.compute_block_hash`): nodes holding different valid
  sets of seals must agree on one hash. Headers read back from the database
  are decoded into :class:`PolderHeader` so every index agrees.
* **extraData** carries the QBFT seal structure, longer than 32 bytes.
* **Base fee is always 0**, so a fresh account with no balance can transact
  (a voter must never need a funding transfer; it would link identities).
  Gas is still metered and every block has the genesis gas limit.
* **Seal check**: :class:`PolderConsensus` verifies a quorum of committed seals
  with the same function the light client uses.
* **PollCrypto precompile** at ``0x…0b00`` (:mod:`node.precompiles`) checks
  ballot, key-generation and tally proofs natively, as part of block validity;
  every standard Prague precompile stays where it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import rlp
from eth._utils.db import get_parent_header
from eth.abc import (
    AtomicDatabaseAPI,
    BlockAPI,
    BlockHeaderAPI,
    BlockPersistResult,
    ConsensusAPI,
    ConsensusContextAPI,
    ReceiptAPI,
    ReceiptDecoderAPI,
    SignedTransactionAPI,
    WithdrawalAPI,
)
from eth.chains.base import MiningChain
from eth.consensus.context import ConsensusContext
from eth.constants import MAX_UNCLES
from eth.db.chain import ChainDB
from eth.exceptions import HeaderNotFound
from eth.validation import validate_length_lte, validate_word
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.headers import create_prague_header_from_parent
from eth.vm.forks.prague.state import PragueState
from eth_hash.auto import keccak
from eth_typing import Address, BlockNumber, Hash32
from eth_utils import ValidationError, encode_hex
from lru import LRU

from consensus.errors import InvalidBlock
from consensus.seal import (
    MAX_EXTRA_DATA_BYTES,
    compute_block_hash,
    get_extra_data,
    validate_committed_seals,
    validate_validator_set,
)
from node.precompiles import PRECOMPILE_ADDRESS, run_poll_crypto
from node.statedb import CachedAccountDB, compute_ordered_trie

REMEMBERED_RECEIPT_LISTS = 8
"""Receipt lists a :class:`PolderChainDB` keeps: a few staged blocks' worth."""
REMEMBERED_TRANSACTION_TRIES = 16
"""Transaction tries :class:`PolderVM` keeps, by the transactions' hashes."""


def copy_sharing_fields(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``obj.copy(*args, **kwargs)`` that shares the fields not given instead of deep-copying.

    rlp's ``Serializable.copy`` deep-copies every field it keeps. Headers
    and blocks hold only bytes, ints and other rlp objects (transactions,
    headers, withdrawals), all immutable, so a deep copy can only cost time:
    py-evm copies a block several times while executing it, and each copy
    deep-copied every transaction.
    """
    names = obj._meta.field_names
    if len(args) > len(names):
        raise TypeError(f"{type(obj).__name__} has {len(names)} fields, got {len(args)} values")
    fields = dict(zip(names, args, strict=False))
    for name, value in kwargs.items():
        if name not in names or name in fields:
            raise TypeError(f"{type(obj).__name__}.copy got an unknown or repeated field {name!r}")
        fields[name] = value
    for name in names:
        if name not in fields:
            fields[name] = getattr(obj, name)
    return type(obj)(**fields)


class PolderHeader(PragueBlockHeader):
    """A Prague header whose hash leaves out the committed seals and the round."""

    def copy(self, *args: Any, **kwargs: Any) -> PolderHeader:
        copied: PolderHeader = copy_sharing_fields(self, args, kwargs)
        return copied

    @property
    def hash(self) -> Hash32:
        if self._hash is None:
            self._hash = compute_block_hash(PragueBlockHeader.serialize(self))
        return self._hash  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"<PolderHeader #{self.block_number} {encode_hex(self.hash)[2:10]}>"


class PolderBlock(PragueBlock):
    """A Prague block carrying a :class:`PolderHeader`."""

    fields = [("header", PolderHeader), *PragueBlock._meta.fields[1:]]

    def copy(self, *args: Any, **kwargs: Any) -> PolderBlock:
        copied: PolderBlock = copy_sharing_fields(self, args, kwargs)
        return copied


def decode_header(header_rlp: bytes) -> PolderHeader:
    """Decode a stored or received header into :class:`PolderHeader`."""
    header: PolderHeader = rlp.decode(header_rlp, sedes=PolderHeader)
    return header


def to_polder_header(header: BlockHeaderAPI) -> PolderHeader:
    """Re-wrap a py-evm header as :class:`PolderHeader` with base fee 0."""
    if isinstance(header, PolderHeader) and header.base_fee_per_gas == 0:
        return header
    fields: dict[str, Any] = {str(k): v for k, v in header.as_dict().items()}
    fields["base_fee_per_gas"] = 0
    return PolderHeader(**fields)


class PolderChainDB(ChainDB):
    """py-evm's chain database, decoding headers as :class:`PolderHeader`.

    It also remembers the receipts of the last few blocks its VMs filled
    ([CHAIN-RECEIPTS.1]): py-evm reads a block's receipts back from the
    receipt trie right after computing them (Prague's deposit requests), and
    the node reads them again to check and announce the block. A receipt root
    commits to its receipts, so for a remembered root the trie could only
    return these same ones. Decoding them back was about 6 % of a loaded
    node's chain thread.
    """

    def __init__(self, db: AtomicDatabaseAPI) -> None:
        super().__init__(db)
        self._receipts: OrderedDict[Hash32, tuple[ReceiptAPI, ...]] = OrderedDict()

    def remember_receipts(self, receipt_root: Hash32, receipts: Sequence[ReceiptAPI]) -> None:
        """Keep ``receipts`` (whose trie has root ``receipt_root``) for :meth:`get_receipts`."""
        self._receipts.pop(receipt_root, None)
        self._receipts[receipt_root] = tuple(receipts)
        while len(self._receipts) > REMEMBERED_RECEIPT_LISTS:
            self._receipts.popitem(last=False)

    def get_receipts(
        self, header: BlockHeaderAPI, receipt_decoder: type[ReceiptDecoderAPI]
    ) -> tuple[ReceiptAPI, ...]:
        remembered = self._receipts.get(header.receipt_root)
        if remembered is not None:
            return remembered
        receipts: tuple[ReceiptAPI, ...] = super().get_receipts(header, receipt_decoder)
        return receipts

    @staticmethod
    def _get_block_header_by_hash(db: Any, block_hash: Hash32) -> BlockHeaderAPI:
        validate_word(block_hash, title="Block Hash")
        try:
            header_rlp = db[block_hash]
        except KeyError:
            raise HeaderNotFound(f"No header with hash {encode_hex(block_hash)} found") from None
        return decode_header(header_rlp)


ValidatorProvider = Callable[[BlockHeaderAPI], Sequence[bytes]]


class PolderConsensusContext(ConsensusContext):
    """Carries the rule that says which validators must seal a header."""

    validators_for: ValidatorProvider | None = None
    """Returns the trusted validator set for a header (set by :mod:`node.chain`)."""


class PolderConsensus(ConsensusAPI):
    """QBFT seal rules: a quorum of the trusted validator set sealed the header."""

    def __init__(self, context: ConsensusContextAPI) -> None:
        self._context = context

    def validate_seal(self, header: BlockHeaderAPI) -> None:
        provider = getattr(self._context, "validators_for", None)
        if provider is None:
            raise ValidationError("no validator set is configured for seal checks")
        validators = provider(header)
        fields = PragueBlockHeader.serialize(header)
        try:
            validate_validator_set(get_extra_data(fields), validators)
            validate_committed_seals(fields, validators)
        except InvalidBlock as exc:
            # py-evm's import path expects ValidationError; keep ours as the cause
            raise ValidationError(str(exc)) from exc

    def validate_seal_extension(
        self, header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]
    ) -> None:
        """Nothing beyond :meth:`validate_seal`: QBFT seals are self-contained."""

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        return header.coinbase


def create_polder_header_from_parent(
    parent_header: BlockHeaderAPI | None, **header_params: Any
) -> PolderHeader:
    """Create the next header (or genesis) with Prague rules and base fee 0.

    py-evm refuses a configured base fee that differs from EIP-1559's formula
    (which gives 1 after a busy block even from 0), so let it compute its own
    and overwrite it afterwards.
    """
    header_params.pop("base_fee_per_gas", None)
    header = create_prague_header_from_parent(parent_header, **header_params)
    return to_polder_header(header)


class PolderComputation(PragueComputation):
    """Prague computation with the PollCrypto precompile added to Prague's own."""

    _precompiles = {**PragueComputation.get_precompiles(), PRECOMPILE_ADDRESS: run_poll_crypto}


class PolderState(PragueState):
    """Prague state whose messages run as :class:`PolderComputation`.

    Its account database reads trie nodes through the process's decoded-node
    cache (:mod:`node.statedb`, [CHAIN-TRIE-CACHE.1]).
    """

    account_db_class = CachedAccountDB

    # py-evm also reads this mapping to treat precompile addresses as warm (EIP-2929).
    computation_class = PolderComputation


TRANSACTION_TRIES: LRU[tuple[Hash32, ...], tuple[Hash32, dict[Hash32, bytes]]] = LRU(
    REMEMBERED_TRANSACTION_TRIES
)
"""Transaction tries (root, nodes) by the transactions' hashes (see
:meth:`PolderVM.compute_transaction_root`)."""


class PolderVM(PragueVM):
    """Prague execution with Polder's header, base-fee and seal rules and PollCrypto."""

    fork = "polder-prague"
    block_class = PolderBlock
    _state_class = PolderState
    consensus_class = PolderConsensus
    extra_data_max_bytes: ClassVar[int] = MAX_EXTRA_DATA_BYTES

    create_header_from_parent = staticmethod(create_polder_header_from_parent)

    def set_block_transactions_and_withdrawals(
        self,
        base_block: BlockAPI,
        new_header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        receipts: Sequence[ReceiptAPI],
        withdrawals: Sequence[WithdrawalAPI] | None = None,
    ) -> BlockAPI:
        """As py-evm 0.12.1b1's, with each trie built in one pass ([CHAIN-TRIE-ORDERED.1]).

        The chain database also remembers ``receipts`` ([CHAIN-RECEIPTS.1]).
        """
        transaction_root = self.compute_transaction_root(transactions, persist=True)
        receipt_root, receipt_nodes = compute_ordered_trie([r.encode() for r in receipts])
        self.chaindb.persist_trie_data_dict(receipt_nodes)
        block_fields: dict[str, Any] = {"transactions": transactions}
        header_fields = {"transaction_root": transaction_root, "receipt_root": receipt_root}
        if withdrawals:
            root, nodes = compute_ordered_trie([w.encode() for w in withdrawals])
            self.chaindb.persist_trie_data_dict(nodes)
            block_fields["withdrawals"] = withdrawals
            header_fields["withdrawals_root"] = root
        block_fields["header"] = new_header.copy(**header_fields)
        block: BlockAPI = base_block.copy(**block_fields)
        if isinstance(self.chaindb, PolderChainDB):
            self.chaindb.remember_receipts(block.header.receipt_root, receipts)
        return block

    def compute_transaction_root(
        self, transactions: Sequence[SignedTransactionAPI], *, persist: bool = False
    ) -> Hash32:
        """The transactions' trie root; with ``persist``, its nodes go to this VM's database.

        Kept by the transactions' hashes (each the keccak of its encoding), so
        the check in :meth:`validate_block` that follows every execution
        does not build it again, as py-evm's memo spared it. The nodes are
        kept too: the same transactions may be executed again on another
        database (a proposal checked twice, another node in one process),
        and each must store them for transaction proofs.
        """
        key = tuple(tx.hash for tx in transactions)
        known = TRANSACTION_TRIES.get(key)
        if known is None:
            known = compute_ordered_trie([tx.encode() for tx in transactions])
            TRANSACTION_TRIES[key] = known
        root, nodes = known
        if persist:
            self.chaindb.persist_trie_data_dict(nodes)
        return root

    def validate_block(self, block: BlockAPI) -> None:
        """As py-evm 0.12.1b1's (``VM`` and ``CancunVM``), with :meth:`compute_transaction_root`."""
        if not isinstance(block, self.get_block_class()):
            raise ValidationError(
                f"This vm ({self!r}) is not equipped to validate a block of type {block!r}"
            )
        if block.is_genesis:
            validate_length_lte(
                block.header.extra_data, self.extra_data_max_bytes, title="BlockHeader.extra_data"
            )
        else:
            self.validate_header(block.header, get_parent_header(block.header, self.chaindb))
        transaction_root = self.compute_transaction_root(block.transactions)
        if transaction_root != block.header.transaction_root:
            raise ValidationError(
                f"Block's transaction_root ({block.header.transaction_root!r}) "
                f"does not match expected value: {transaction_root!r}"
            )
        if len(block.uncles) > MAX_UNCLES:
            raise ValidationError(f"Blocks may have a maximum of {MAX_UNCLES} uncles.")
        if (
            not self.chaindb.exists(block.header.state_root)
            and self.state.make_state_root() != block.header.state_root
        ):
            raise ValidationError(
                "`state_root` does not match or was not found in the db.\n"
                f"- state_root: {block.header.state_root!r}"
            )
        if keccak(rlp.encode(block.uncles)) != block.header.uncles_hash:
            raise ValidationError("`uncles_hash` and block `uncles` do not match.")
        self.validate_block_blobs(block)

    @classmethod
    def validate_gas(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        """Constant gas limit, gas used within it, base fee fixed at zero."""
        if header.gas_limit != parent_header.gas_limit:
            raise ValidationError(
                f"gas limit must stay {parent_header.gas_limit}, got {header.gas_limit}"
            )
        if header.gas_used > header.gas_limit:
            raise ValidationError(f"gas used {header.gas_used} exceeds limit {header.gas_limit}")
        if header.base_fee_per_gas != 0:
            raise ValidationError(f"base fee must be 0, got {header.base_fee_per_gas}")


class PolderMiningChain(MiningChain):
    """py-evm's chain wired to Polder's VM, database and consensus context."""

    vm_configuration = ((BlockNumber(0), PolderVM),)
    chaindb_class = PolderChainDB
    consensus_context_class = PolderConsensusContext

    def persist_block(self, block: BlockAPI, perform_validation: bool = True) -> BlockPersistResult:
        """As py-evm's, without reading ``block`` back from the database.

        py-evm returns every block that became canonical, read and decoded
        again from the database. Under BFT finality that is ``block`` alone,
        which the caller holds already; only for anything else (it cannot
        happen on an honest chain) are they read back as py-evm does.
        """
        if perform_validation:
            self.validate_block(block)
        new_hashes, old_hashes = self.chaindb.persist_block(block)
        if tuple(new_hashes) == (block.hash,) and not old_hashes:
            return BlockPersistResult(block, (block,), ())
        return BlockPersistResult(
            block,
            tuple(self.get_block_by_hash(h) for h in new_hashes),
            tuple(self.get_block_by_hash(h) for h in old_hashes),
        )
