# pragma version 0.4.3
# pragma evm-version prague
"""
@title VoucherBook
@notice Purpose-bound budget vouchers of Polder (docs/spec/vouchers.md).
        Municipalities that validate the chain register as issuers and
        create funds; an issuer registers pseudonymous holders for a fund
        and shops (merchants) that accept the fund's budgets, and issues
        budgets per (fund, category, period). Holders pay shops only, never
        each other, within the shop's categories, the period's expiry, any
        frozen part and any spending limit; every refusal has a code and a
        plain-language message. Fixed charges are paid by mandates, one due
        instalment per call. Shops redeem into payouts with a cancellation
        window; the issuer closes payout batches by anchoring a hash. Per
        fund, issued == held + spent + pending + redeemed + swept +
        clawed_back at all times, and the events carry every term.
@dev Genesis places this runtime code at a fixed address; there is no
     constructor and every state variable starts at zero. Nothing personal
     is stored: addresses, amounts, enumerated codes and one batch hash.
"""

REGISTRY: constant(address) = 0x0000000000000000000000000000000000000200
MAX_VALIDATORS: constant(uint256) = 64
MAX_HELD: constant(uint256) = 64
MAX_BATCH: constant(uint256) = 128
MAX_RECOVERY_HOPS: constant(uint256) = 8
MAX_AUTHORISATION_SECONDS: constant(uint256) = 900
MAX_WINDOW: constant(uint256) = 7776000
MASK32: constant(uint256) = 4294967295

# categories; a shop's accepted categories are a bitmask of 1 << category
RENT: constant(uint256) = 1
RESERVATION: constant(uint256) = 5
ALL_CATEGORIES: constant(uint256) = 62

# holder status
ACTIVE: constant(uint8) = 1
FROZEN: constant(uint8) = 2
RECOVERED: constant(uint8) = 3

# payout status
PENDING: constant(uint8) = 1
CANCELLED: constant(uint8) = 2
PAID: constant(uint8) = 3

# reasons of the issuer's powers, 1 ..= MAX_REASON (docs/spec/vouchers.md)
MAX_REASON: constant(uint8) = 8

# transfer restriction codes (ERC-1404 style); 20 + category: wrong category
OK: constant(uint8) = 0
ZERO_AMOUNT: constant(uint8) = 1
NOT_A_HOLDER: constant(uint8) = 2
KEY_REPLACED: constant(uint8) = 3
HOLDER_FROZEN: constant(uint8) = 4
HOLDER_TO_HOLDER: constant(uint8) = 5
NOT_A_SHOP: constant(uint8) = 6
SHOP_INACTIVE: constant(uint8) = 7
NO_SUCH_BUDGET: constant(uint8) = 8
FUND_NOT_ACCEPTED: constant(uint8) = 9
EXPIRED: constant(uint8) = 10
NOT_ENOUGH: constant(uint8) = 11
PART_FROZEN: constant(uint8) = 12
OVER_LIMIT: constant(uint8) = 13
CATEGORY_BASE: constant(uint8) = 20

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
PAYMENT_TYPEHASH: constant(bytes32) = keccak256(
    "Payment(address merchant,uint256 id,uint256 maxAmount,uint256 nonce,uint256 expiry)"
)
NAME_HASH: constant(bytes32) = keccak256("Polder VoucherBook")
VERSION_HASH: constant(bytes32) = keccak256("1")


interface ValidatorRegistry:
    def validators_at(height: uint256) -> DynArray[address, MAX_VALIDATORS]: view


struct Fund:
    issuer: address
    window: uint256


struct Merchant:
    registrar: address
    categories: uint256
    active: bool


struct Holder:
    fund: uint256
    status: uint8


struct Mandate:
    holder: address
    merchant: address
    id: uint256
    amount: uint256
    next_due: uint256
    interval: uint256
    remaining: uint256


struct Payout:
    merchant: address
    fund: uint256
    id: uint256
    amount: uint256
    created: uint256
    window_end: uint256
    status: uint8


struct Books:
    issued: uint256
    held: uint256
    spent: uint256
    pending: uint256
    redeemed: uint256
    swept: uint256
    clawed_back: uint256


event TransferSingle:
    operator: indexed(address)
    sender: indexed(address)
    receiver: indexed(address)
    id: uint256
    value: uint256


event IssuerRegistered:
    issuer: indexed(address)


event IssuerDeregistered:
    issuer: indexed(address)
    by: indexed(address)


event FundCreated:
    fund: indexed(uint256)
    issuer: indexed(address)
    window: uint256


event MerchantSet:
    merchant: indexed(address)
    registrar: indexed(address)
    categories: uint256
    active: bool


event MerchantFundSet:
    merchant: indexed(address)
    fund: indexed(uint256)
    accepted: bool


event HolderRegistered:
    holder: indexed(address)
    fund: indexed(uint256)


event PeriodOpened:
    fund: indexed(uint256)
    period: uint256
    expiry: uint256


event Issued:
    fund: indexed(uint256)
    holder: indexed(address)
    id: uint256
    amount: uint256


event Paid:
    fund: indexed(uint256)
    holder: indexed(address)
    merchant: indexed(address)
    id: uint256
    amount: uint256
    mandate: uint256


event AuthorizationUsed:
    holder: indexed(address)
    nonce: uint256
    cancelled: bool


event SpendingCapSet:
    fund: indexed(uint256)
    holder: indexed(address)
    id: uint256
    cap: uint256


event HolderFrozen:
    fund: indexed(uint256)
    holder: indexed(address)
    frozen: bool
    reason: uint8


event PartFrozen:
    fund: indexed(uint256)
    holder: indexed(address)
    id: uint256
    amount: uint256
    reason: uint8


event ClawedBack:
    fund: indexed(uint256)
    holder: indexed(address)
    id: uint256
    amount: uint256
    reason: uint8


event Recovered:
    fund: indexed(uint256)
    old: indexed(address)
    replacement: indexed(address)
    reason: uint8


event Swept:
    fund: indexed(uint256)
    holder: indexed(address)
    id: uint256
    amount: uint256


event MandateCreated:
    mandate: indexed(uint256)
    fund: indexed(uint256)
    holder: indexed(address)
    merchant: address
    id: uint256
    amount: uint256
    firstDue: uint256
    interval: uint256
    count: uint256


event MandateCancelled:
    mandate: indexed(uint256)
    fund: indexed(uint256)
    remaining: uint256


event Redeemed:
    fund: indexed(uint256)
    payout: indexed(uint256)
    merchant: indexed(address)
    id: uint256
    amount: uint256
    windowEnd: uint256


event RedemptionCancelled:
    fund: indexed(uint256)
    payout: indexed(uint256)
    merchant: indexed(address)
    id: uint256
    amount: uint256
    by: address


event PayoutBatchClosed:
    fund: indexed(uint256)
    batch: indexed(uint256)
    batchHash: bytes32
    payouts: DynArray[uint256, MAX_BATCH]
    total: uint256


issuers: public(HashMap[address, bool])
fund_count: public(uint256)
funds: public(HashMap[uint256, Fund])
merchants: public(HashMap[address, Merchant])
accepts: public(HashMap[address, HashMap[uint256, bool]])
holders: public(HashMap[address, Holder])
successors: public(HashMap[address, address])
expiry: public(HashMap[uint256, HashMap[uint256, uint256]])
balanceOf: public(HashMap[address, HashMap[uint256, uint256]])
held_ids: HashMap[address, DynArray[uint256, MAX_HELD]]
tracked: HashMap[address, HashMap[uint256, bool]]
frozen: public(HashMap[address, HashMap[uint256, uint256]])
caps: public(HashMap[address, HashMap[uint256, uint256]])
period_spent: public(HashMap[address, HashMap[uint256, uint256]])
used_nonces: public(HashMap[address, HashMap[uint256, bool]])
mandate_count: public(uint256)
mandates: public(HashMap[uint256, Mandate])
payout_count: public(uint256)
payouts: public(HashMap[uint256, Payout])
batch_count: public(uint256)
batch_hashes: public(HashMap[uint256, bytes32])
books: public(HashMap[uint256, Books])


# --- views -----------------------------------------------------------------------


@pure
@external
def tokenId(fund: uint256, category: uint256, period: uint256) -> uint256:
    """
    @notice The token id of a budget: fund << 64 | category << 32 | period.
    """
    assert fund < 2**192 and category <= MASK32 and period <= MASK32, "a part of the token id is too large"
    return (fund << 64) | (category << 32) | period


@view
@external
def heldIds(holder: address) -> DynArray[uint256, MAX_HELD]:
    """
    @notice Every token id the contract tracks for `holder` (issued, capped or frozen).
    """
    return self.held_ids[holder]


@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@view
@external
def domainSeparator() -> bytes32:
    """
    @notice The EIP-712 domain separator of payment authorisations.
    """
    return self._domain_separator()


@pure
@internal
def _message(code: uint8) -> String[64]:
    if code == OK:
        return "no restriction"
    if code == ZERO_AMOUNT:
        return "the amount is zero"
    if code == NOT_A_HOLDER:
        return "the payer is not a registered budget holder"
    if code == KEY_REPLACED:
        return "this key was replaced; pay with the holder's new key"
    if code == HOLDER_FROZEN:
        return "the holder's budget is frozen"
    if code == HOLDER_TO_HOLDER:
        return "holders cannot pay each other"
    if code == NOT_A_SHOP:
        return "the receiver is not a registered shop"
    if code == SHOP_INACTIVE:
        return "this shop is not active"
    if code == NO_SUCH_BUDGET:
        return "the holder has no such budget"
    if code == FUND_NOT_ACCEPTED:
        return "this shop does not accept budgets of this fund"
    if code == EXPIRED:
        return "the budget for this period has expired"
    if code == NOT_ENOUGH:
        return "not enough budget"
    if code == PART_FROZEN:
        return "this part of the budget is frozen"
    if code == OVER_LIMIT:
        return "over the spending limit for this period"
    if code == CATEGORY_BASE + 1:
        return "this shop does not accept rent money"
    if code == CATEGORY_BASE + 2:
        return "this shop does not accept energy money"
    if code == CATEGORY_BASE + 3:
        return "this shop does not accept insurance money"
    if code == CATEGORY_BASE + 4:
        return "this shop does not accept living money"
    if code == CATEGORY_BASE + 5:
        return "this shop does not accept reservation money"
    return "unknown restriction code"


@pure
@external
def messageForTransferRestriction(code: uint8) -> String[64]:
    """
    @notice The plain-language message of a restriction code, for clients to show.
    """
    return self._message(code)


@view
@internal
def _restriction(payer: address, merchant: address, id: uint256, amount: uint256) -> uint8:
    if amount == 0:
        return ZERO_AMOUNT
    holder: Holder = self.holders[payer]
    if holder.status == 0:
        return NOT_A_HOLDER
    if holder.status == RECOVERED:
        return KEY_REPLACED
    if holder.status == FROZEN:
        return HOLDER_FROZEN
    if self.holders[merchant].status != 0:
        return HOLDER_TO_HOLDER
    shop: Merchant = self.merchants[merchant]
    if shop.registrar == empty(address):
        return NOT_A_SHOP
    if not shop.active:
        return SHOP_INACTIVE
    fund: uint256 = id >> 64
    category: uint256 = (id >> 32) & MASK32
    ends: uint256 = self.expiry[fund][id & MASK32]
    if fund != holder.fund or category < RENT or category > RESERVATION or ends == 0:
        return NO_SUCH_BUDGET
    if shop.categories & (1 << category) == 0:
        return CATEGORY_BASE + convert(category, uint8)
    if not self.accepts[merchant][fund]:
        return FUND_NOT_ACCEPTED
    if block.timestamp >= ends:
        return EXPIRED
    balance: uint256 = self.balanceOf[payer][id]
    if balance < amount:
        return NOT_ENOUGH
    if balance - amount < self.frozen[payer][id]:
        return PART_FROZEN
    cap: uint256 = self.caps[payer][id]
    if cap != 0 and self.period_spent[payer][id] + amount > cap:
        return OVER_LIMIT
    return OK


@view
@external
def detectTransferRestriction(sender: address, receiver: address, id: uint256, amount: uint256) -> uint8:
    """
    @notice 0 if `sender` may pay `amount` of budget `id` to `receiver` now, else the
            restriction code (messageForTransferRestriction gives its message).
    """
    return self._restriction(sender, receiver, id, amount)


# --- internal rules --------------------------------------------------------------


@view
@internal
def _check_fund_issuer(fund: uint256):
    issuer: address = self.funds[fund].issuer
    assert issuer != empty(address), "no such fund"
    assert issuer == msg.sender, "sender is not the fund's issuer"


@view
@internal
def _check_creating_issuer(fund: uint256):
    self._check_fund_issuer(fund)
    assert self.issuers[msg.sender], "sender is not a registered issuer"


@view
@internal
def _holder_fund(holder: address) -> uint256:
    """
    @dev The fund of a holder that is not replaced; the sender must be its issuer.
    """
    record: Holder = self.holders[holder]
    assert record.status == ACTIVE or record.status == FROZEN, "not an active or frozen holder"
    self._check_fund_issuer(record.fund)
    return record.fund


@view
@internal
def _check_budget(holder: address, id: uint256):
    """
    @dev `id` is a budget of a valid category in `holder`'s fund, which the sender issues.
    """
    category: uint256 = (id >> 32) & MASK32
    assert category >= RENT and category <= RESERVATION, "unknown category"
    assert self._holder_fund(holder) == id >> 64, "the budget is not of the holder's fund"


@pure
@internal
def _check_reason(reason: uint8):
    assert reason >= 1 and reason <= MAX_REASON, "unknown reason code"


@view
@internal
def _is_validator(who: address) -> bool:
    return who in staticcall ValidatorRegistry(REGISTRY).validators_at(block.number)


@internal
def _track(holder: address, id: uint256):
    if not self.tracked[holder][id]:
        assert len(self.held_ids[holder]) < MAX_HELD, "the holder has too many budgets"
        self.tracked[holder][id] = True
        self.held_ids[holder].append(id)


@internal
def _pay(payer: address, merchant: address, id: uint256, amount: uint256, mandate: uint256):
    code: uint8 = self._restriction(payer, merchant, id, amount)
    if code != OK:
        raise self._message(code)
    fund: uint256 = id >> 64
    self.balanceOf[payer][id] -= amount
    self.balanceOf[merchant][id] += amount
    self.period_spent[payer][id] += amount
    self.books[fund].held -= amount
    self.books[fund].spent += amount
    log TransferSingle(operator=msg.sender, sender=payer, receiver=merchant, id=id, value=amount)
    log Paid(fund=fund, holder=payer, merchant=merchant, id=id, amount=amount, mandate=mandate)


# --- registries ------------------------------------------------------------------


@external
def registerIssuer():
    """
    @notice A municipality in the current validator set registers itself as issuer.
    """
    assert not self.issuers[msg.sender], "already an issuer"
    assert self._is_validator(msg.sender), "sender is not a current validator"
    self.issuers[msg.sender] = True
    log IssuerRegistered(issuer=msg.sender)


@external
def deregisterIssuer(issuer: address):
    """
    @notice The issuer itself, or anyone once the validator set voted it out,
            ends its registration. Its funds keep their winding-down powers.
    """
    assert self.issuers[issuer], "not a registered issuer"
    if msg.sender != issuer:
        assert not self._is_validator(issuer), "only the issuer can deregister itself while it validates"
    self.issuers[issuer] = False
    log IssuerDeregistered(issuer=issuer, by=msg.sender)


@external
def createFund(window: uint256) -> uint256:
    """
    @notice A registered issuer creates a fund; `window` is the cancellation
            window of its redemptions, in seconds. Returns the fund id (1, 2, ...).
    """
    assert self.issuers[msg.sender], "sender is not a registered issuer"
    assert window <= MAX_WINDOW, "the cancellation window is longer than 90 days"
    fund: uint256 = self.fund_count + 1
    self.fund_count = fund
    self.funds[fund] = Fund(issuer=msg.sender, window=window)
    log FundCreated(fund=fund, issuer=msg.sender, window=window)
    return fund


@external
def setMerchant(merchant: address, categories: uint256, active: bool):
    """
    @notice Register a shop (any registered issuer, once) or change its
            categories bitmask and active flag (the issuer that registered it).
    """
    registrar: address = self.merchants[merchant].registrar
    if registrar == empty(address):
        assert self.issuers[msg.sender], "sender is not a registered issuer"
        assert merchant != empty(address), "the shop address is zero"
        assert self.holders[merchant].status == 0, "the address is a budget holder"
        registrar = msg.sender
    else:
        assert msg.sender == registrar, "only the issuer that registered the shop can change it"
    assert categories != 0 and categories | ALL_CATEGORIES == ALL_CATEGORIES, "invalid categories bitmask"
    self.merchants[merchant] = Merchant(registrar=registrar, categories=categories, active=active)
    log MerchantSet(merchant=merchant, registrar=registrar, categories=categories, active=active)


@external
def setMerchantFund(merchant: address, fund: uint256, accepted: bool):
    """
    @notice The fund's issuer sets whether a registered shop accepts the fund.
    """
    self._check_fund_issuer(fund)
    assert self.merchants[merchant].registrar != empty(address), "not a registered shop"
    self.accepts[merchant][fund] = accepted
    log MerchantFundSet(merchant=merchant, fund=fund, accepted=accepted)


@external
def registerHolder(holder: address, fund: uint256):
    """
    @notice The fund's issuer registers a fresh pseudonymous holder address for the fund.
    """
    self._check_creating_issuer(fund)
    assert holder != empty(address), "the holder address is zero"
    assert self.holders[holder].status == 0, "the address is already a holder"
    assert self.merchants[holder].registrar == empty(address), "the address is a shop"
    self.holders[holder] = Holder(fund=fund, status=ACTIVE)
    log HolderRegistered(holder=holder, fund=fund)


# --- issuing and paying ----------------------------------------------------------


@external
def issue(holder: address, id: uint256, amount: uint256, expiry: uint256):
    """
    @notice Issue `amount` of budget `id` to `holder`. The first issuance in a
            (fund, period) fixes its expiry; later ones must repeat it.
    """
    fund: uint256 = id >> 64
    self._check_creating_issuer(fund)
    self._check_budget(holder, id)
    assert amount > 0, "the amount is zero"
    period: uint256 = id & MASK32
    ends: uint256 = self.expiry[fund][period]
    if ends == 0:
        assert expiry > block.timestamp, "the expiry is not in the future"
        self.expiry[fund][period] = expiry
        log PeriodOpened(fund=fund, period=period, expiry=expiry)
    else:
        assert expiry == ends, "the period has another expiry"
        assert block.timestamp < ends, "the budget for this period has expired"
    self._track(holder, id)
    self.balanceOf[holder][id] += amount
    self.books[fund].issued += amount
    self.books[fund].held += amount
    log TransferSingle(operator=msg.sender, sender=empty(address), receiver=holder, id=id, value=amount)
    log Issued(fund=fund, holder=holder, id=id, amount=amount)


@external
def pay(merchant: address, id: uint256, amount: uint256):
    """
    @notice The holder (sender) pays a shop; reverts with the restriction's message.
    """
    self._pay(msg.sender, merchant, id, amount, 0)


@external
def payWithAuthorization(
    holder: address,
    merchant: address,
    id: uint256,
    amount: uint256,
    max_amount: uint256,
    nonce: uint256,
    expiry: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice The shop submits the holder's EIP-712 Payment authorisation and
            charges `amount` <= its maxAmount. Each nonce pays once.
    """
    assert msg.sender == merchant, "only the shop named in the authorisation can submit it"
    assert block.timestamp < expiry, "the payment authorisation has expired"
    assert expiry <= block.timestamp + MAX_AUTHORISATION_SECONDS, "the payment authorisation is valid for too long"
    assert amount <= max_amount, "the amount is above the authorised maximum"
    assert not self.used_nonces[holder][nonce], "this payment authorisation was already used"
    digest: bytes32 = keccak256(
        concat(
            b"\x19\x01",
            self._domain_separator(),
            keccak256(abi_encode(PAYMENT_TYPEHASH, merchant, id, max_amount, nonce, expiry)),
        )
    )
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address) and signer == holder, "the payment authorisation is not signed by the holder"
    self.used_nonces[holder][nonce] = True
    log AuthorizationUsed(holder=holder, nonce=nonce, cancelled=False)
    self._pay(holder, merchant, id, amount, 0)


@external
def cancelAuthorization(nonce: uint256):
    """
    @notice The holder voids a payment authorisation it signed but does not want used.
    """
    assert not self.used_nonces[msg.sender][nonce], "this payment authorisation was already used"
    self.used_nonces[msg.sender][nonce] = True
    log AuthorizationUsed(holder=msg.sender, nonce=nonce, cancelled=True)


@external
def sweep(holder: address, id: uint256):
    """
    @notice Anyone returns a holder's balance of an expired period to its fund.
    """
    fund: uint256 = id >> 64
    ends: uint256 = self.expiry[fund][id & MASK32]
    assert ends != 0 and block.timestamp >= ends, "the budget for this period has not expired"
    assert self.holders[holder].status != 0, "not a registered holder"
    amount: uint256 = self.balanceOf[holder][id]
    assert amount > 0, "nothing to sweep"
    self.balanceOf[holder][id] = 0
    self.books[fund].held -= amount
    self.books[fund].swept += amount
    log TransferSingle(operator=msg.sender, sender=holder, receiver=empty(address), id=id, value=amount)
    log Swept(fund=fund, holder=holder, id=id, amount=amount)


# --- issuer powers ---------------------------------------------------------------


@external
def setSpendingCap(holder: address, id: uint256, cap: uint256):
    """
    @notice The issuer limits what `holder` may pay from budget `id` (its period); 0: no limit.
    """
    self._check_budget(holder, id)
    self._track(holder, id)
    self.caps[holder][id] = cap
    log SpendingCapSet(fund=id >> 64, holder=holder, id=id, cap=cap)


@external
def freeze(holder: address, reason: uint8):
    """
    @notice The issuer freezes a holder's whole budget.
    """
    fund: uint256 = self._holder_fund(holder)
    self._check_reason(reason)
    assert self.holders[holder].status == ACTIVE, "the holder is already frozen"
    self.holders[holder].status = FROZEN
    log HolderFrozen(fund=fund, holder=holder, frozen=True, reason=reason)


@external
def unfreeze(holder: address, reason: uint8):
    """
    @notice The issuer lifts a whole freeze.
    """
    fund: uint256 = self._holder_fund(holder)
    self._check_reason(reason)
    assert self.holders[holder].status == FROZEN, "the holder is not frozen"
    self.holders[holder].status = ACTIVE
    log HolderFrozen(fund=fund, holder=holder, frozen=False, reason=reason)


@external
def freezePart(holder: address, id: uint256, amount: uint256, reason: uint8):
    """
    @notice The issuer sets the amount of budget `id` that `holder` cannot spend (0 lifts it).
    """
    self._check_budget(holder, id)
    self._check_reason(reason)
    self._track(holder, id)
    self.frozen[holder][id] = amount
    log PartFrozen(fund=id >> 64, holder=holder, id=id, amount=amount, reason=reason)


@external
def clawback(holder: address, id: uint256, amount: uint256, reason: uint8):
    """
    @notice The issuer takes `amount` of budget `id` back from `holder`.
    """
    fund: uint256 = self._holder_fund(holder)
    self._check_reason(reason)
    balance: uint256 = self.balanceOf[holder][id]
    assert amount > 0 and amount <= balance, "the amount is zero or above the holder's balance"
    self.balanceOf[holder][id] = balance - amount
    self.books[fund].held -= amount
    self.books[fund].clawed_back += amount
    log TransferSingle(operator=msg.sender, sender=holder, receiver=empty(address), id=id, value=amount)
    log ClawedBack(fund=fund, holder=holder, id=id, amount=amount, reason=reason)


@external
def recover(old: address, replacement: address, reason: uint8):
    """
    @notice The issuer moves every tracked balance, frozen part, limit and spent
            amount of `old` to the fresh address `replacement`; `old` never pays again.
    """
    fund: uint256 = self._holder_fund(old)
    self._check_reason(reason)
    assert replacement != empty(address), "the new address is zero"
    assert self.holders[replacement].status == 0, "the new address is already a holder"
    assert self.merchants[replacement].registrar == empty(address), "the new address is a shop"
    ids: DynArray[uint256, MAX_HELD] = self.held_ids[old]
    for id: uint256 in ids:
        amount: uint256 = self.balanceOf[old][id]
        self.balanceOf[replacement][id] = amount
        self.balanceOf[old][id] = 0
        self.frozen[replacement][id] = self.frozen[old][id]
        self.caps[replacement][id] = self.caps[old][id]
        self.period_spent[replacement][id] = self.period_spent[old][id]
        self.tracked[replacement][id] = True
        if amount > 0:
            log TransferSingle(operator=msg.sender, sender=old, receiver=replacement, id=id, value=amount)
    self.held_ids[replacement] = ids
    self.holders[old].status = RECOVERED
    self.successors[old] = replacement
    self.holders[replacement] = Holder(fund=fund, status=ACTIVE)
    log Recovered(fund=fund, old=old, replacement=replacement, reason=reason)


# --- mandates --------------------------------------------------------------------


@external
def createMandate(
    holder: address,
    merchant: address,
    id: uint256,
    amount: uint256,
    first_due: uint256,
    interval: uint256,
    count: uint256,
) -> uint256:
    """
    @notice The issuer sets up `count` fixed payments of `amount` from budget `id`
            of `holder` to shop `merchant`, due at first_due + k * interval.
    """
    fund: uint256 = id >> 64
    self._check_creating_issuer(fund)
    self._check_budget(holder, id)
    assert self.merchants[merchant].registrar != empty(address), "the payee is not a registered shop"
    assert amount > 0 and count > 0, "the amount and the count must be positive"
    assert interval > 0 or count == 1, "a repeated mandate needs an interval"
    mandate: uint256 = self.mandate_count + 1
    self.mandate_count = mandate
    self.mandates[mandate] = Mandate(
        holder=holder,
        merchant=merchant,
        id=id,
        amount=amount,
        next_due=first_due,
        interval=interval,
        remaining=count,
    )
    log MandateCreated(
        mandate=mandate,
        fund=fund,
        holder=holder,
        merchant=merchant,
        id=id,
        amount=amount,
        firstDue=first_due,
        interval=interval,
        count=count,
    )
    return mandate


@external
def payMandate(mandate_id: uint256):
    """
    @notice Anyone pays the mandate's next instalment once it is due, and only
            that one; next_due then moves one interval on.
    """
    mandate: Mandate = self.mandates[mandate_id]
    assert mandate.remaining > 0, "the mandate is finished, cancelled or unknown"
    assert block.timestamp >= mandate.next_due, "the next instalment is not due yet"
    holder: address = mandate.holder
    for hop: uint256 in range(MAX_RECOVERY_HOPS):
        if self.holders[holder].status != RECOVERED:
            break
        holder = self.successors[holder]
    self.mandates[mandate_id].holder = holder
    self.mandates[mandate_id].remaining = mandate.remaining - 1
    self.mandates[mandate_id].next_due = mandate.next_due + mandate.interval
    self._pay(holder, mandate.merchant, mandate.id, mandate.amount, mandate_id)


@external
def cancelMandate(mandate_id: uint256):
    """
    @notice The fund's issuer cancels the mandate's remaining instalments.
    """
    mandate: Mandate = self.mandates[mandate_id]
    fund: uint256 = mandate.id >> 64
    self._check_fund_issuer(fund)
    assert mandate.remaining > 0, "the mandate is already finished or cancelled"
    self.mandates[mandate_id].remaining = 0
    log MandateCancelled(mandate=mandate_id, fund=fund, remaining=mandate.remaining)


# --- redemption ------------------------------------------------------------------


@external
def redeem(id: uint256, amount: uint256) -> uint256:
    """
    @notice A shop burns `amount` of budget `id` into a pending payout; returns its id.
    """
    assert self.merchants[msg.sender].registrar != empty(address), "sender is not a registered shop"
    assert amount > 0, "the amount is zero"
    balance: uint256 = self.balanceOf[msg.sender][id]
    assert amount <= balance, "not enough vouchers to redeem"
    fund: uint256 = id >> 64
    self.balanceOf[msg.sender][id] = balance - amount
    payout: uint256 = self.payout_count + 1
    self.payout_count = payout
    window_end: uint256 = block.timestamp + self.funds[fund].window
    self.payouts[payout] = Payout(
        merchant=msg.sender,
        fund=fund,
        id=id,
        amount=amount,
        created=block.timestamp,
        window_end=window_end,
        status=PENDING,
    )
    self.books[fund].spent -= amount
    self.books[fund].pending += amount
    log TransferSingle(operator=msg.sender, sender=msg.sender, receiver=empty(address), id=id, value=amount)
    log Redeemed(fund=fund, payout=payout, merchant=msg.sender, id=id, amount=amount, windowEnd=window_end)
    return payout


@external
def cancelRedemption(payout_id: uint256):
    """
    @notice Within the window, the shop or the fund's issuer undoes a redemption.
    """
    payout: Payout = self.payouts[payout_id]
    assert payout.status == PENDING, "the payout is not pending"
    assert msg.sender == payout.merchant or msg.sender == self.funds[payout.fund].issuer, "only the shop or the issuer can cancel a redemption"
    assert block.timestamp < payout.window_end, "the cancellation window has passed"
    self.payouts[payout_id].status = CANCELLED
    self.balanceOf[payout.merchant][payout.id] += payout.amount
    self.books[payout.fund].pending -= payout.amount
    self.books[payout.fund].spent += payout.amount
    log TransferSingle(operator=msg.sender, sender=empty(address), receiver=payout.merchant, id=payout.id, value=payout.amount)
    log RedemptionCancelled(
        fund=payout.fund, payout=payout_id, merchant=payout.merchant, id=payout.id, amount=payout.amount, by=msg.sender
    )


@external
def closePayoutBatch(fund: uint256, payout_ids: DynArray[uint256, MAX_BATCH], batch_hash: bytes32) -> uint256:
    """
    @notice The fund's issuer marks pending payouts past their window as paid by
            an off-chain bank batch and anchors that batch's hash; returns the batch number.
    """
    self._check_fund_issuer(fund)
    assert batch_hash != empty(bytes32), "the batch hash is zero"
    assert len(payout_ids) > 0, "the batch is empty"
    total: uint256 = 0
    for payout_id: uint256 in payout_ids:
        payout: Payout = self.payouts[payout_id]
        assert payout.fund == fund and payout.status == PENDING, "a payout in the batch is not a pending payout of this fund"
        assert block.timestamp >= payout.window_end, "a payout in the batch is still in its cancellation window"
        self.payouts[payout_id].status = PAID
        total += payout.amount
    batch: uint256 = self.batch_count + 1
    self.batch_count = batch
    self.batch_hashes[batch] = batch_hash
    self.books[fund].pending -= total
    self.books[fund].redeemed += total
    log PayoutBatchClosed(fund=fund, batch=batch, batchHash=batch_hash, payouts=payout_ids, total=total)
    return batch
