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

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import rlp
from eth.abc import BlockHeaderAPI, ConsensusAPI, ConsensusContextAPI
from eth.chains.base import MiningChain
from eth.consensus.context import ConsensusContext
from eth.db.chain import ChainDB
from eth.exceptions import HeaderNotFound
from eth.validation import validate_word
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.headers import create_prague_header_from_parent
from eth.vm.forks.prague.state import PragueState
from eth_typing import Address, BlockNumber, Hash32
from eth_utils import ValidationError, encode_hex

from consensus.errors import InvalidBlock
from consensus.seal import (
    MAX_EXTRA_DATA_BYTES,
    compute_block_hash,
    get_extra_data,
    validate_committed_seals,
    validate_validator_set,
)
from node.precompiles import PRECOMPILE_ADDRESS, run_poll_crypto


class PolderHeader(PragueBlockHeader):
    """A Prague header whose hash leaves out the committed seals and the round."""

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
    """py-evm's chain database, decoding headers as :class:`PolderHeader`."""

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
    """Prague state whose messages run as :class:`PolderComputation`."""

    # py-evm also reads this mapping to treat precompile addresses as warm (EIP-2929).
    computation_class = PolderComputation


class PolderVM(PragueVM):
    """Prague execution with Polder's header, base-fee and seal rules and PollCrypto."""

    fork = "polder-prague"
    block_class = PolderBlock
    _state_class = PolderState
    consensus_class = PolderConsensus
    extra_data_max_bytes: ClassVar[int] = MAX_EXTRA_DATA_BYTES

    create_header_from_parent = staticmethod(create_polder_header_from_parent)

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
