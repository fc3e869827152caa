"""The light client: verified answers from several nodes, trusting none of them.

It starts from a trust root (the genesis hash, or a checkpoint header the user
pinned) and verifies any later header by *skipping*: a header is accepted when
it lists the validator set the trusted chain committed to and carries a
quorum of that set's seals. Where the set changed, the client walks the
change headers one by one (each change header's vanity commits to the next
set). Verified headers go into a :class:`HeaderStore`, so later checks start
closer.

Every answer is then cross-checked with the other providers (nodes run by
other municipalities): they must serve the same header. A second header at
the same height that *also* carries a valid quorum is fork evidence: it is
stored, the height stops being trusted, and :class:`ForkDetected` is raised. A
provider that serves a bad header, a bad proof, or withholds blocks is named
in the result's ``faults`` and the client uses the others.

The order of checks follows docs/spec/light-client.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clients.light.errors import (
    ForkDetected,
    NotFound,
    ProviderError,
    StaleProvider,
    ValidatorChangeMissing,
    VerificationFailed,
)
from clients.light.store import HeaderStore
from clients.light.verify import (
    LightBlock,
    ProvenTransaction,
    decode_hex,
    decode_hex_list,
    decode_light_block,
    decode_quantity,
    is_validator_change,
    validate_light_block,
    validate_transaction_proof,
)
from consensus.errors import InvalidBlock, InvalidProof, PolderError
from consensus.proofs import Account, compute_proven_account, compute_proven_storage
from consensus.seal import compute_validators_hash

DEFAULT_MAX_HEAD_AGE = 60.0
"""Seconds after which a provider's head counts as stale: the chain makes an
(empty) block every few seconds, so an older head means withheld blocks."""


class Provider(Protocol):
    """What the client needs of a node: a name and JSON-RPC calls."""

    name: str

    def call(self, method: str, *params: Any) -> Any: ...


@dataclass(frozen=True)
class Fault:
    """A provider whose answer did not verify, and why."""

    provider: str
    kind: str
    """The error class, e.g. ``QuorumNotReached`` or ``StaleProvider``."""
    message: str
    code: int
    """The error's stable JSON-RPC code."""

    @classmethod
    def of(cls, provider: str, error: PolderError) -> Fault:
        return cls(provider, type(error).__name__, error.message, error.code)


@dataclass(frozen=True)
class VerifiedHeader:
    """A header verified from the trust root and confirmed by other providers."""

    block: LightBlock
    agreed: tuple[str, ...]
    """Providers that served this very header."""
    faults: tuple[Fault, ...]
    """Providers whose answers did not verify."""


@dataclass(frozen=True)
class VerifiedTransaction:
    """A transaction proven to be in a verified block, with its receipt."""

    tx_hash: bytes
    block: LightBlock
    proven: ProvenTransaction
    agreed: tuple[str, ...]
    faults: tuple[Fault, ...]


@dataclass(frozen=True)
class VerifiedAccount:
    """An account proven against a verified block's state root (EIP-1186)."""

    address: bytes
    block: LightBlock
    account: Account
    storage: dict[int, int]
    """Proven values of the slots asked for."""
    agreed: tuple[str, ...]
    faults: tuple[Fault, ...]


class Faults:
    """The first fault of each provider during one verification."""

    def __init__(self, known: Sequence[Fault] = ()) -> None:
        self._by_provider: dict[str, Fault] = {fault.provider: fault for fault in known}

    def add(self, provider: str, error: PolderError) -> None:
        self._by_provider.setdefault(provider, Fault.of(provider, error))

    def __contains__(self, provider: str) -> bool:
        return provider in self._by_provider

    def as_tuple(self) -> tuple[Fault, ...]:
        return tuple(self._by_provider.values())

    def describe(self) -> str:
        return "; ".join(f"{f.provider}: {f.kind}: {f.message}" for f in self.as_tuple())

    def fail(self, summary: str, **data: Any) -> VerificationFailed:
        """Return the error for a verification that no provider (or too few) passed."""
        detail = self.describe() or "no other provider answered"
        return VerificationFailed(
            f"{summary}: {detail}", summary=summary, faults=self.as_tuple(), **data
        )


RECOVERABLE = (ProviderError, InvalidBlock, InvalidProof)
"""Errors that condemn one provider's answer; the client then asks the next."""


class LightClient:
    """Verifies headers, transactions and state through several untrusted providers."""

    def __init__(
        self,
        providers: Sequence[Provider],
        store: HeaderStore,
        *,
        min_agree: int = 2,
        max_head_age: float = DEFAULT_MAX_HEAD_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not providers:
            raise ValueError("a light client needs at least one provider")
        self.providers = list(providers)
        self.store = store
        self.min_agree = min(min_agree, len(self.providers))
        """Providers that must serve the same verified header for it to count."""
        self.max_head_age = max_head_age
        self.clock = clock

    # -- trust root --------------------------------------------------------------

    def trust(
        self, number: int, block_hash: bytes, genesis_hash: bytes | None = None
    ) -> LightBlock:
        """Pin the header ``number`` with ``block_hash`` (genesis: 0) as the trust root.

        [LC-ROOT.1] The header is fetched from any provider and accepted only
        if it hashes to ``block_hash``: the hash, not the provider, is trusted.
        With a checkpoint, ``genesis_hash`` names the chain for receipts.
        """
        faults = Faults()
        for provider in self.providers:
            try:
                block = self._fetch_block(provider, number)
                if block is None:
                    raise ProviderError(provider.name, f"does not serve block {number}")
                if block.hash != block_hash:
                    raise InvalidBlock(
                        f"block {number} hashes to 0x{block.hash.hex()},"
                        f" not the pinned 0x{block_hash.hex()}"
                    )
            except RECOVERABLE as exc:
                faults.add(provider.name, exc)
                continue
            self.store.save_trust_root(block)
            if number == 0 or genesis_hash is not None:
                self.store.save_genesis_hash(block_hash if number == 0 else genesis_hash or b"")
            return block
        raise faults.fail(f"no provider served the pinned block {number}")

    def get_trust_root(self) -> LightBlock:
        root = self.store.get_trust_root()
        if root is None:
            raise VerificationFailed(
                "no trust root: pin the genesis hash or a checkpoint first (--genesis-hash)"
            )
        block = self.store.get_header(root[0])
        if block is None or block.hash != root[1]:
            raise VerificationFailed("the store lost its trust root header; pin it again")
        return block

    def get_genesis_hash(self) -> bytes:
        """Return the pinned genesis hash (the chain receipts must belong to)."""
        self.get_trust_root()
        stored = self.store.get_meta("genesis_hash")
        if stored is None:
            raise VerificationFailed(
                "the trust root is a checkpoint and no genesis hash was pinned with it;"
                " pass --genesis-hash too"
            )
        return bytes.fromhex(stored[2:])

    # -- headers ----------------------------------------------------------------------

    def verify_header(self, number: int) -> VerifiedHeader:
        """Return the verified, cross-checked header at ``number``."""
        faults = Faults()
        for provider in self.providers:
            try:
                block = self._fetch_block(provider, number)
                if block is None:
                    raise ProviderError(provider.name, f"does not serve block {number}")
                block = self._verify_block(provider, block)
            except RECOVERABLE as exc:
                faults.add(provider.name, exc)
                continue
            return self._confirm(block, provider, faults)
        raise faults.fail(f"no provider served a block {number} that verifies")

    def verify_head(self) -> VerifiedHeader:
        """Return the highest verified head among providers whose head is recent.

        [LC-STALE.1] A provider whose verified head is older than
        ``max_head_age`` seconds is withholding blocks (or cut off): it is
        named with :class:`StaleProvider` and its head is not used.
        """
        faults = Faults()
        heads: list[tuple[LightBlock, Provider]] = []
        now = self.clock()
        for provider in self.providers:
            try:
                block = self._fetch_block(provider, "latest")
                if block is None:
                    raise ProviderError(provider.name, "serves no head")
                block = self._verify_block(provider, block)
                age = now - block.timestamp
                if age > self.max_head_age:
                    raise StaleProvider(
                        provider.name,
                        f"its head #{block.number} is {age:.0f} s old"
                        f" (more than {self.max_head_age:.0f} s): it withholds newer blocks",
                        number=block.number,
                    )
            except RECOVERABLE as exc:
                faults.add(provider.name, exc)
                continue
            heads.append((block, provider))
        if not heads:
            raise faults.fail("no provider has a recent verified head")
        block, provider = max(heads, key=lambda item: item[0].number)
        return self._confirm(block, provider, faults)

    def _fetch_block(self, provider: Provider, block: int | str) -> LightBlock | None:
        """Ask ``provider`` for a light block; decode it (not yet verified)."""
        param = hex(block) if isinstance(block, int) else block
        answer = provider.call("polder_getLightBlock", param)
        if answer is None:
            return None
        decoded = decode_light_block(answer)
        if isinstance(block, int) and decoded.number != block:
            raise InvalidBlock(f"asked for block {block}, got #{decoded.number}")
        return decoded

    def _verify_block(self, provider: Provider, block: LightBlock) -> LightBlock:
        """Verify ``block`` from the closest trusted header below it; store it.

        Skips while the validator set is unchanged; walks the change headers
        ``provider`` reports otherwise ([LC-SKIP.1], [LC-CHANGE.1]).
        """
        self._refuse_forked(block.number)
        stored = self.store.get_header(block.number)
        if stored is not None and stored.hash == block.hash:
            return stored
        anchor = self.store.get_closest_below(block.number - 1)
        if anchor is None:
            root = self.get_trust_root()
            raise VerificationFailed(
                f"block #{block.number} is not after the trust root #{root.number};"
                " pin an earlier checkpoint to verify it"
            )
        committed = self._follow_changes(provider, anchor, block.number)
        try:
            validate_light_block(block, committed)
        except InvalidBlock as exc:
            if compute_validators_hash(block.extra.validators) != committed:
                raise ValidatorChangeMissing(
                    provider.name,
                    f"block #{block.number} lists a validator set that none of its reported"
                    f" changes since #{anchor.number} leads to",
                ) from exc
            raise
        if stored is not None:
            self._report_fork(stored, block, [provider.name])
        self.store.save_header(block)
        return block

    def _follow_changes(self, provider: Provider, anchor: LightBlock, number: int) -> bytes:
        """Verify the validator-set changes between ``anchor`` and ``number``.

        Returns the hash of the set that seals block ``number``. Costs one call
        when the set did not change, and one verified header per change: each
        change header is sealed by the set the previous one committed to, and
        commits to the next ([LC-CHANGE.1]).
        """
        committed = anchor.next_validators_hash
        previous = anchor.number
        while previous + 1 < number:
            answer = provider.call("polder_getValidatorChanges", hex(previous + 1), hex(number - 1))
            changes = answer.get("changes") if isinstance(answer, dict) else None
            if not isinstance(changes, list):
                raise ProviderError(provider.name, "polder_getValidatorChanges has no changes list")
            covered = decode_quantity(answer.get("toBlock"), "toBlock")
            for change in changes:
                if not isinstance(change, dict):
                    raise ProviderError(provider.name, "a validator change is not a JSON object")
                header = decode_light_block(change.get("lightBlock"))
                if not previous < header.number <= covered or not is_validator_change(header):
                    raise InvalidBlock(
                        f"block #{header.number} is not a validator-set change"
                        f" between #{previous} and #{covered}"
                    )
                validate_light_block(header, committed)
                self.store.save_header(header)
                committed, previous = header.next_validators_hash, header.number
            if covered >= number - 1:
                break
            if covered <= previous and not changes:
                raise ProviderError(provider.name, f"validator changes stop at #{covered}")
            previous = max(previous, covered)
        return committed

    def _confirm(self, block: LightBlock, source: Provider, faults: Faults) -> VerifiedHeader:
        """Ask the other providers for the header at ``block.number``; compare.

        [LC-CROSS.1] The same hash counts as agreement. A different header that
        verifies is a fork (:class:`ForkDetected`); one that does not verify,
        or none at all, is that provider's fault.
        """
        agreed = [source.name]
        for provider in self.providers:
            if provider is source or provider.name in faults:
                continue
            try:
                other = self._fetch_block(provider, block.number)
                if other is None:
                    raise StaleProvider(
                        provider.name,
                        f"does not serve block #{block.number}, which {source.name} proved",
                        number=block.number,
                    )
                if other.hash == block.hash:
                    agreed.append(provider.name)
                    continue
                self._check_conflict(provider, block, other, source)
            except RECOVERABLE as exc:
                faults.add(provider.name, exc)
        if len(agreed) < self.min_agree:
            raise faults.fail(
                f"block #{block.number} is confirmed by {len(agreed)} provider(s),"
                f" {self.min_agree} required",
                agreed=agreed,
            )
        return VerifiedHeader(block=block, agreed=tuple(agreed), faults=faults.as_tuple())

    def _check_conflict(
        self, provider: Provider, block: LightBlock, other: LightBlock, source: Provider
    ) -> None:
        """Verify a header that differs from ``block``; if it holds, report a fork."""
        anchor = self.store.get_closest_below(other.number - 1)
        if anchor is None:
            raise InvalidBlock(f"serves another block #{other.number} before the trust root")
        committed = self._follow_changes(provider, anchor, other.number)
        try:
            validate_light_block(other, committed)
        except InvalidBlock as exc:
            raise type(exc)(
                f"serves another block #{other.number} that does not verify: {exc.message}",
                **exc.data,
            ) from exc
        self._report_fork(block, other, [source.name, provider.name])

    def _report_fork(self, first: LightBlock, second: LightBlock, providers: list[str]) -> None:
        self.store.save_evidence(first, second, providers)
        raise ForkDetected(
            f"FORK: two blocks #{first.number} each carry a quorum of seals"
            f" (0x{first.hash.hex()} and 0x{second.hash.hex()}, from {', '.join(providers)});"
            " more than a third of the validators signed both. The evidence is stored;"
            " this height is no longer trusted. Tell every municipality.",
            number=first.number,
            hashes=["0x" + first.hash.hex(), "0x" + second.hash.hex()],
            providers=providers,
        )

    def _refuse_forked(self, number: int) -> None:
        evidence = self.store.get_evidence(number)
        if evidence:
            raise ForkDetected(
                f"block #{number} has fork evidence in this store; it is not trusted",
                evidence=evidence,
            )

    # -- transactions and state ------------------------------------------------------------

    def verify_transaction(self, tx_hash: bytes) -> VerifiedTransaction:
        """Prove a transaction and its receipt, in a header confirmed by other providers.

        A provider that says the transaction is unknown while another proves it
        is named as stale; if every provider says unknown, the heads are
        checked for staleness before :class:`NotFound` is raised.
        """
        faults = Faults()
        unknown: list[Provider] = []
        for provider in self.providers:
            try:
                answer = provider.call("polder_getTransactionProof", "0x" + tx_hash.hex())
                if answer is None:
                    unknown.append(provider)
                    continue
                block, proven = self._verify_transaction_answer(provider, answer, tx_hash)
            except RECOVERABLE as exc:
                faults.add(provider.name, exc)
                continue
            for lagging in unknown:
                faults.add(
                    lagging.name,
                    StaleProvider(
                        lagging.name,
                        f"says 0x{tx_hash.hex()} is unknown, but {provider.name} proved it"
                        f" in block #{block.number}",
                    ),
                )
            header = self._confirm(block, provider, faults)
            return VerifiedTransaction(
                tx_hash=tx_hash,
                block=block,
                proven=proven,
                agreed=header.agreed,
                faults=header.faults,
            )
        if unknown and len(unknown) + len(faults.as_tuple()) == len(self.providers):
            head = self.verify_head()
            raise NotFound(
                f"transaction 0x{tx_hash.hex()} is in no block up to the verified head"
                f" #{head.block.number} ({len(unknown)} provider(s) looked)",
                head=head.block.number,
            )
        raise faults.fail(f"no provider proved transaction 0x{tx_hash.hex()}")

    def _verify_transaction_answer(
        self, provider: Provider, answer: Any, tx_hash: bytes
    ) -> tuple[LightBlock, ProvenTransaction]:
        if not isinstance(answer, dict):
            raise ProviderError(provider.name, "transaction proof is not a JSON object")
        block = decode_light_block(answer.get("lightBlock"))
        if (
            decode_quantity(answer.get("blockNumber"), "blockNumber") != block.number
            or decode_hex(answer.get("blockHash"), "blockHash", 32) != block.hash
        ):
            raise InvalidProof("the proof names another block than its header")
        block = self._verify_block(provider, block)
        return block, validate_transaction_proof(answer, block, tx_hash)

    def verify_account(
        self, address: bytes, block: int | str = "latest", slots: Sequence[int] = ()
    ) -> VerifiedAccount:
        """Prove an account (and storage slots) at a verified block ([LC-PROOF-ACCOUNT.1])."""
        header = self.verify_head() if block == "latest" else self.verify_header(int(block))
        faults = Faults(header.faults)
        for provider in self.providers:
            if provider.name in faults:
                continue
            try:
                answer = provider.call(
                    "eth_getProof",
                    "0x" + address.hex(),
                    [hex(slot) for slot in slots],
                    hex(header.block.number),
                )
                account, storage = validate_account_answer(answer, header.block, address, slots)
            except RECOVERABLE as exc:
                faults.add(provider.name, exc)
                continue
            return VerifiedAccount(
                address=address,
                block=header.block,
                account=account,
                storage=storage,
                agreed=header.agreed,
                faults=faults.as_tuple(),
            )
        raise faults.fail(f"no provider proved account 0x{address.hex()} at #{header.block.number}")


def validate_account_answer(
    answer: Any, block: LightBlock, address: bytes, slots: Sequence[int]
) -> tuple[Account, dict[int, int]]:
    """Check an ``eth_getProof`` answer against ``block``'s state root."""
    if not isinstance(answer, dict):
        raise InvalidProof("eth_getProof answer is not a JSON object")
    account = compute_proven_account(
        block.state_root, address, decode_hex_list(answer.get("accountProof"), "accountProof")
    )
    claimed = (
        decode_quantity(answer.get("balance"), "balance"),
        decode_quantity(answer.get("nonce"), "nonce"),
        decode_hex(answer.get("storageHash"), "storageHash", 32),
    )
    if claimed != (account.balance, account.nonce, account.storage_root):
        raise InvalidProof("the account fields sent are not the ones the proof holds")
    entries = answer.get("storageProof")
    if not isinstance(entries, list) or len(entries) != len(slots):
        raise InvalidProof(f"eth_getProof must prove the {len(slots)} slot(s) asked for")
    storage: dict[int, int] = {}
    for slot, entry in zip(slots, entries, strict=True):
        if not isinstance(entry, dict) or decode_quantity(entry.get("key"), "key") != slot:
            raise InvalidProof(f"storage proof for slot {slot} is missing")
        value = compute_proven_storage(
            account.storage_root, slot, decode_hex_list(entry.get("proof"), "storage proof")
        )
        if decode_quantity(entry.get("value"), "storage value") != value:
            raise InvalidProof(f"the value sent for slot {slot} is not the one the proof holds")
        storage[slot] = value
    return account, storage
