# pragma version 0.4.3
# pragma evm-version prague
"""
@title PollRegistry
@notice Secret polls of Polder: creation, the trustees' key ceremony, issuers'
        credential counts, encrypted ballots (the last one per voting key
        counts), close, partial decryptions and the published result.
@dev Every proof is checked by the node's PollCrypto precompile (0x...0b00,
     docs/spec/polls.md), which reverts with a reason when a check fails; this
     contract keeps the state and the rules (who, when, how many). Genesis
     places the runtime code at a fixed address; there is no constructor and
     every state variable starts at zero.
"""

MAX_OPTIONS: constant(uint256) = 16
MAX_TRUSTEES: constant(uint256) = 16
MAX_ISSUERS: constant(uint256) = 8
MAX_QUESTION: constant(uint256) = 256
MAX_OPTION_TEXT: constant(uint256) = 64
MAX_KEY: constant(uint256) = 600
MAX_CREDENTIAL: constant(uint256) = 600
MAX_BALLOT: constant(uint256) = 4096
MAX_CIPHERTEXTS: constant(uint256) = 1056
MAX_DEALING: constant(uint256) = 1024
MAX_SHARES: constant(uint256) = 1296
MAX_ELECTION_KEY: constant(uint256) = 1024
MAX_PARTIAL: constant(uint256) = 2048
CRYPTO: constant(address) = 0x0000000000000000000000000000000000000B00


interface PollCrypto:
    def verifyBallot(
        pollId: bytes32,
        electionKey: Bytes[MAX_ELECTION_KEY],
        optionCount: uint8,
        minSelections: uint8,
        maxSelections: uint8,
        voter: address,
        issuerThreshold: uint8,
        issuerKeys: DynArray[Bytes[MAX_KEY], MAX_ISSUERS],
        credentials: DynArray[Bytes[MAX_CREDENTIAL], MAX_ISSUERS],
        ballot: Bytes[MAX_BALLOT],
    ) -> (bytes32, Bytes[MAX_CIPHERTEXTS]): view
    def verifyDealing(
        pollId: bytes32, trusteeCount: uint8, threshold: uint8, dealerIndex: uint8, dealing: Bytes[MAX_DEALING]
    ) -> bool: view
    def computeElectionKey(
        pollId: bytes32, trusteeCount: uint8, threshold: uint8, dealings: DynArray[Bytes[MAX_DEALING], MAX_TRUSTEES]
    ) -> Bytes[MAX_ELECTION_KEY]: view
    def addCiphertexts(
        aggregate: Bytes[MAX_CIPHERTEXTS], added: Bytes[MAX_CIPHERTEXTS], removed: Bytes[MAX_CIPHERTEXTS]
    ) -> Bytes[MAX_CIPHERTEXTS]: view
    def verifyPartial(
        pollId: bytes32, electionKey: Bytes[MAX_ELECTION_KEY], aggregate: Bytes[MAX_CIPHERTEXTS], partial: Bytes[MAX_PARTIAL]
    ) -> uint8: view
    def verifyTally(
        pollId: bytes32,
        electionKey: Bytes[MAX_ELECTION_KEY],
        aggregate: Bytes[MAX_CIPHERTEXTS],
        partials: DynArray[Bytes[MAX_PARTIAL], MAX_TRUSTEES],
        counts: DynArray[uint256, MAX_OPTIONS],
        bound: uint256,
    ) -> bool: view


struct Poll:
    number: uint256
    creator: address
    option_count: uint8
    min_selections: uint8
    max_selections: uint8
    opens: uint256
    closes: uint256
    threshold: uint8
    issuer_threshold: uint8
    key_final: bool
    closed: bool
    published: bool
    ballot_count: uint256


event PollCreated:
    pollId: indexed(bytes32)
    number: uint256
    creator: indexed(address)
    question: String[MAX_QUESTION]
    options: DynArray[String[MAX_OPTION_TEXT], MAX_OPTIONS]
    minSelections: uint8
    maxSelections: uint8
    opens: uint256
    closes: uint256
    trustees: DynArray[address, MAX_TRUSTEES]
    threshold: uint8
    issuers: DynArray[address, MAX_ISSUERS]
    issuerKeys: DynArray[Bytes[MAX_KEY], MAX_ISSUERS]
    issuerThreshold: uint8


event TrusteeKeyRegistered:
    pollId: indexed(bytes32)
    trustee: indexed(address)
    index: uint8
    key: Bytes[33]


event DealingPosted:
    pollId: indexed(bytes32)
    trustee: indexed(address)
    index: uint8
    dealing: Bytes[MAX_DEALING]
    encryptedShares: Bytes[MAX_SHARES]


event KeyFinalized:
    pollId: indexed(bytes32)
    electionKey: Bytes[MAX_ELECTION_KEY]
    dealers: uint256


event IssuedReported:
    pollId: indexed(bytes32)
    issuer: indexed(address)
    index: uint8
    count: uint256


event BallotCast:
    pollId: indexed(bytes32)
    voter: indexed(address)
    trackingCode: bytes32
    ballot: Bytes[MAX_BALLOT]
    credentials: DynArray[Bytes[MAX_CREDENTIAL], MAX_ISSUERS]
    replaced: bool


event PollClosed:
    pollId: indexed(bytes32)
    ballots: uint256
    aggregate: Bytes[MAX_CIPHERTEXTS]


event PartialPosted:
    pollId: indexed(bytes32)
    trustee: indexed(address)
    index: uint8
    partial: Bytes[MAX_PARTIAL]


event ResultPublished:
    pollId: indexed(bytes32)
    counts: DynArray[uint256, MAX_OPTIONS]
    ballots: uint256


poll_count: public(uint256)
poll_ids: public(HashMap[uint256, bytes32])
polls: public(HashMap[bytes32, Poll])
options: HashMap[bytes32, DynArray[String[MAX_OPTION_TEXT], MAX_OPTIONS]]
trustees: HashMap[bytes32, DynArray[address, MAX_TRUSTEES]]
issuers: HashMap[bytes32, DynArray[address, MAX_ISSUERS]]
issuer_keys: HashMap[bytes32, DynArray[Bytes[MAX_KEY], MAX_ISSUERS]]
trustee_keys: public(HashMap[bytes32, HashMap[uint256, Bytes[33]]])
trustee_key_count: public(HashMap[bytes32, uint256])
dealings: HashMap[bytes32, DynArray[Bytes[MAX_DEALING], MAX_TRUSTEES]]
dealt: public(HashMap[bytes32, HashMap[uint256, bool]])
election_key: public(HashMap[bytes32, Bytes[MAX_ELECTION_KEY]])
issued: public(HashMap[bytes32, HashMap[uint256, uint256]])
aggregate: public(HashMap[bytes32, Bytes[MAX_CIPHERTEXTS]])
last_ciphertexts: HashMap[bytes32, HashMap[address, Bytes[MAX_CIPHERTEXTS]]]
tracking_codes: public(HashMap[bytes32, HashMap[address, bytes32]])
partials: HashMap[bytes32, DynArray[Bytes[MAX_PARTIAL], MAX_TRUSTEES]]
decrypted: public(HashMap[bytes32, HashMap[uint256, bool]])
result: HashMap[bytes32, DynArray[uint256, MAX_OPTIONS]]


@view
@external
def get_options(poll_id: bytes32) -> DynArray[String[MAX_OPTION_TEXT], MAX_OPTIONS]:
    return self.options[poll_id]


@view
@external
def get_trustees(poll_id: bytes32) -> DynArray[address, MAX_TRUSTEES]:
    return self.trustees[poll_id]


@view
@external
def get_issuers(poll_id: bytes32) -> DynArray[address, MAX_ISSUERS]:
    return self.issuers[poll_id]


@view
@external
def get_issuer_keys(poll_id: bytes32) -> DynArray[Bytes[MAX_KEY], MAX_ISSUERS]:
    return self.issuer_keys[poll_id]


@view
@external
def get_dealings(poll_id: bytes32) -> DynArray[Bytes[MAX_DEALING], MAX_TRUSTEES]:
    return self.dealings[poll_id]


@view
@external
def get_partials(poll_id: bytes32) -> DynArray[Bytes[MAX_PARTIAL], MAX_TRUSTEES]:
    return self.partials[poll_id]


@view
@external
def get_result(poll_id: bytes32) -> DynArray[uint256, MAX_OPTIONS]:
    return self.result[poll_id]


@view
@internal
def _existing(poll_id: bytes32) -> Poll:
    poll: Poll = self.polls[poll_id]
    assert poll.creator != empty(address), "no such poll"
    return poll


@view
@internal
def _trustee_index(poll_id: bytes32, who: address) -> uint256:
    index: uint256 = 0
    for member: address in self.trustees[poll_id]:
        index += 1
        if member == who:
            return index
    raise "sender is not a trustee of this poll"


@view
@internal
def _issuer_index(poll_id: bytes32, who: address) -> uint256:
    index: uint256 = 0
    for member: address in self.issuers[poll_id]:
        if member == who:
            return index
        index += 1
    raise "sender is not an issuer of this poll"


@external
def createPoll(
    question: String[MAX_QUESTION],
    options: DynArray[String[MAX_OPTION_TEXT], MAX_OPTIONS],
    min_selections: uint8,
    max_selections: uint8,
    opens: uint256,
    closes: uint256,
    trustees: DynArray[address, MAX_TRUSTEES],
    threshold: uint8,
    issuers: DynArray[address, MAX_ISSUERS],
    issuer_keys: DynArray[Bytes[MAX_KEY], MAX_ISSUERS],
    issuer_threshold: uint8,
) -> bytes32:
    """
    @notice Create a poll; returns its id, keccak256(abi.encode(chainid, this, number)).
    """
    assert len(options) >= 2, "a poll needs at least two options"
    assert min_selections <= max_selections, "min selections above max selections"
    assert convert(max_selections, uint256) <= len(options), "max selections above the options"
    assert max_selections >= 1, "a ballot must be able to select an option"
    assert opens < closes, "the poll must open before it closes"
    assert closes > block.timestamp, "the poll would already be closed"
    assert threshold >= 1 and convert(threshold, uint256) <= len(trustees), "threshold must be 1..trustees"
    assert issuer_threshold >= 1 and convert(issuer_threshold, uint256) <= len(issuers), "issuer threshold must be 1..issuers"
    assert len(issuer_keys) == len(issuers), "one key per issuer"
    for i: uint256 in range(MAX_TRUSTEES):
        if i >= len(trustees):
            break
        assert trustees[i] != empty(address), "trustee address is zero"
        for j: uint256 in range(MAX_TRUSTEES):
            if j >= i:
                break
            assert trustees[i] != trustees[j], "a trustee is listed twice"
    number: uint256 = self.poll_count + 1
    self.poll_count = number
    poll_id: bytes32 = keccak256(abi_encode(chain.id, self, number))
    self.poll_ids[number] = poll_id
    self.polls[poll_id] = Poll(
        number=number,
        creator=msg.sender,
        option_count=convert(len(options), uint8),
        min_selections=min_selections,
        max_selections=max_selections,
        opens=opens,
        closes=closes,
        threshold=threshold,
        issuer_threshold=issuer_threshold,
        key_final=False,
        closed=False,
        published=False,
        ballot_count=0,
    )
    self.options[poll_id] = options
    self.trustees[poll_id] = trustees
    self.issuers[poll_id] = issuers
    self.issuer_keys[poll_id] = issuer_keys
    log PollCreated(
        pollId=poll_id,
        number=number,
        creator=msg.sender,
        question=question,
        options=options,
        minSelections=min_selections,
        maxSelections=max_selections,
        opens=opens,
        closes=closes,
        trustees=trustees,
        threshold=threshold,
        issuers=issuers,
        issuerKeys=issuer_keys,
        issuerThreshold=issuer_threshold,
    )
    return poll_id


@external
def registerTrusteeKey(poll_id: bytes32, key: Bytes[33]):
    """
    @notice A trustee's key for receiving its encrypted shares (33-byte point).
    """
    poll: Poll = self._existing(poll_id)
    assert not poll.key_final, "the election key is already final"
    index: uint256 = self._trustee_index(poll_id, msg.sender)
    assert len(key) == 33, "the key is a 33-byte compressed point"
    assert len(self.trustee_keys[poll_id][index]) == 0, "this trustee already registered a key"
    self.trustee_keys[poll_id][index] = key
    self.trustee_key_count[poll_id] += 1
    log TrusteeKeyRegistered(pollId=poll_id, trustee=msg.sender, index=convert(index, uint8), key=key)


@external
def postDealing(poll_id: bytes32, dealing: Bytes[MAX_DEALING], encrypted_shares: Bytes[MAX_SHARES]):
    """
    @notice A trustee's Feldman commitments and proof, with its shares encrypted to each trustee.
    """
    poll: Poll = self._existing(poll_id)
    assert not poll.key_final, "the election key is already final"
    count: uint256 = len(self.trustees[poll_id])
    assert self.trustee_key_count[poll_id] == count, "not every trustee registered a key yet"
    index: uint256 = self._trustee_index(poll_id, msg.sender)
    assert not self.dealt[poll_id][index], "this trustee already posted a dealing"
    assert len(encrypted_shares) == 81 * count, "one 81-byte encrypted share per trustee"
    extcall_ok: bool = staticcall PollCrypto(CRYPTO).verifyDealing(
        poll_id, convert(count, uint8), poll.threshold, convert(index, uint8), dealing
    )
    assert extcall_ok, "dealing refused"
    self.dealt[poll_id][index] = True
    self.dealings[poll_id].append(dealing)
    log DealingPosted(
        pollId=poll_id,
        trustee=msg.sender,
        index=convert(index, uint8),
        dealing=dealing,
        encryptedShares=encrypted_shares,
    )


@external
def finalizeKey(poll_id: bytes32):
    """
    @notice Fix the election key: when every trustee dealt, or when at least
            the threshold did and the poll has opened.
    """
    poll: Poll = self._existing(poll_id)
    assert not poll.key_final, "the election key is already final"
    dealt: uint256 = len(self.dealings[poll_id])
    count: uint256 = len(self.trustees[poll_id])
    assert dealt >= convert(poll.threshold, uint256), "fewer dealings than the threshold"
    assert dealt == count or block.timestamp >= poll.opens, "wait for every trustee or for the opening"
    key: Bytes[MAX_ELECTION_KEY] = staticcall PollCrypto(CRYPTO).computeElectionKey(
        poll_id, convert(count, uint8), poll.threshold, self.dealings[poll_id]
    )
    self.election_key[poll_id] = key
    self.polls[poll_id].key_final = True
    log KeyFinalized(pollId=poll_id, electionKey=key, dealers=dealt)


@external
def reportIssued(poll_id: bytes32, count: uint256):
    """
    @notice An issuer's number of credentials issued for this poll so far.
    """
    self._existing(poll_id)
    index: uint256 = self._issuer_index(poll_id, msg.sender)
    assert count >= self.issued[poll_id][index], "the issued count never decreases"
    self.issued[poll_id][index] = count
    log IssuedReported(pollId=poll_id, issuer=msg.sender, index=convert(index, uint8), count=count)


@external
def cast(poll_id: bytes32, ballot: Bytes[MAX_BALLOT], credentials: DynArray[Bytes[MAX_CREDENTIAL], MAX_ISSUERS]):
    """
    @notice Cast (or replace) the ballot of the sending voting key.
    """
    poll: Poll = self._existing(poll_id)
    assert poll.key_final, "the election key is not final yet"
    assert block.timestamp >= poll.opens, "the poll is not open yet"
    assert block.timestamp < poll.closes and not poll.closed, "the poll is closed"
    tracking: bytes32 = empty(bytes32)
    ciphertexts: Bytes[MAX_CIPHERTEXTS] = b""
    tracking, ciphertexts = staticcall PollCrypto(CRYPTO).verifyBallot(
        poll_id,
        self.election_key[poll_id],
        poll.option_count,
        poll.min_selections,
        poll.max_selections,
        msg.sender,
        poll.issuer_threshold,
        self.issuer_keys[poll_id],
        credentials,
        ballot,
    )
    assert self.tracking_codes[poll_id][msg.sender] != tracking, "this ballot was already cast"
    previous: Bytes[MAX_CIPHERTEXTS] = self.last_ciphertexts[poll_id][msg.sender]
    replaced: bool = len(previous) > 0
    self.aggregate[poll_id] = staticcall PollCrypto(CRYPTO).addCiphertexts(
        self.aggregate[poll_id], ciphertexts, previous
    )
    if not replaced:
        self.polls[poll_id].ballot_count += 1
    self.last_ciphertexts[poll_id][msg.sender] = ciphertexts
    self.tracking_codes[poll_id][msg.sender] = tracking
    log BallotCast(
        pollId=poll_id,
        voter=msg.sender,
        trackingCode=tracking,
        ballot=ballot,
        credentials=credentials,
        replaced=replaced,
    )


@external
def close(poll_id: bytes32):
    """
    @notice Close the poll once its closing time passed; anyone may call it.
    """
    poll: Poll = self._existing(poll_id)
    assert not poll.closed, "the poll is already closed"
    assert block.timestamp >= poll.closes, "the poll is still open"
    self.polls[poll_id].closed = True
    log PollClosed(pollId=poll_id, ballots=poll.ballot_count, aggregate=self.aggregate[poll_id])


@external
def postPartial(poll_id: bytes32, partial: Bytes[MAX_PARTIAL]):
    """
    @notice A trustee's partial decryption of the aggregate, with its proofs.
    """
    poll: Poll = self._existing(poll_id)
    assert poll.closed, "the poll is not closed yet"
    assert poll.ballot_count > 0, "there are no ballots to decrypt"
    index: uint256 = self._trustee_index(poll_id, msg.sender)
    assert not self.decrypted[poll_id][index], "this trustee already posted its partial decryption"
    claimed: uint8 = staticcall PollCrypto(CRYPTO).verifyPartial(
        poll_id, self.election_key[poll_id], self.aggregate[poll_id], partial
    )
    assert convert(claimed, uint256) == index, "the partial decryption is another trustee's"
    self.decrypted[poll_id][index] = True
    self.partials[poll_id].append(partial)
    log PartialPosted(pollId=poll_id, trustee=msg.sender, index=claimed, partial=partial)


@external
def publishResult(poll_id: bytes32, counts: DynArray[uint256, MAX_OPTIONS]):
    """
    @notice Publish the totals; the precompile checks them against the partials.
    """
    poll: Poll = self._existing(poll_id)
    assert poll.closed, "the poll is not closed yet"
    assert not poll.published, "the result is already published"
    assert len(counts) == convert(poll.option_count, uint256), "one count per option"
    if poll.ballot_count == 0:
        for count: uint256 in counts:
            assert count == 0, "a poll without ballots has only zero counts"
    else:
        assert len(self.partials[poll_id]) >= convert(poll.threshold, uint256), "fewer partial decryptions than the threshold"
        ok: bool = staticcall PollCrypto(CRYPTO).verifyTally(
            poll_id,
            self.election_key[poll_id],
            self.aggregate[poll_id],
            self.partials[poll_id],
            counts,
            poll.ballot_count,
        )
        assert ok, "the counts do not match the decryption"
    self.polls[poll_id].published = True
    self.result[poll_id] = counts
    log ResultPublished(pollId=poll_id, counts=counts, ballots=poll.ballot_count)
