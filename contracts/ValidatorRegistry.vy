# pragma version 0.4.3
# pragma evm-version prague
"""
@title ValidatorRegistry
@notice The validator set of Polder, changed only by a vote of the set itself.
        A current validator proposes to add (name, address, endpoint) or to
        remove a validator; the change is adopted once more than two thirds
        of the current set approved it, and takes effect ACTIVATION_DELAY
        blocks later. Proposals expire after PROPOSAL_LIFETIME blocks.
@dev Genesis places this runtime code at a fixed address and writes the
     initial set into `validators` (a DynArray: length at its slot, members
     in the slots after it; see contracts/registry.py). There is no
     constructor. Nodes read `validators_at(n)` on the state after block
     n - 1 to learn the set that seals block n (docs/spec/governance.md).
"""

MAX_VALIDATORS: constant(uint256) = 64
PROPOSAL_LIFETIME: constant(uint256) = 200
ACTIVATION_DELAY: constant(uint256) = 2


struct Proposal:
    add: bool
    validator: address
    name: String[64]
    endpoint: String[128]
    proposer: address
    created: uint256
    expires: uint256
    approvals: DynArray[address, MAX_VALIDATORS]
    adopted: bool


event Proposed:
    id: indexed(uint256)
    validator: indexed(address)
    add: bool
    proposer: indexed(address)
    expires: uint256


event Approved:
    id: indexed(uint256)
    approver: indexed(address)
    approvals: uint256
    needed: uint256


event Adopted:
    id: indexed(uint256)
    validator: indexed(address)
    add: bool
    height: uint256
    name: String[64]
    endpoint: String[128]


validators: public(DynArray[address, MAX_VALIDATORS])
pending: public(DynArray[address, MAX_VALIDATORS])
pending_height: public(uint256)
proposal_count: public(uint256)
proposals: HashMap[uint256, Proposal]
endpoints: public(HashMap[address, String[128]])
names: public(HashMap[address, String[64]])


@view
@internal
def _set_at(height: uint256) -> DynArray[address, MAX_VALIDATORS]:
    if self.pending_height != 0 and height >= self.pending_height:
        return self.pending
    return self.validators


@view
@external
def validators_at(height: uint256) -> DynArray[address, MAX_VALIDATORS]:
    """
    @notice The set that seals block `height`, as known from this state.
    """
    return self._set_at(height)


@view
@external
def get_proposal(id: uint256) -> Proposal:
    return self.proposals[id]


@view
@internal
def _needed(size: uint256) -> uint256:
    # more than two thirds: the smallest k with 3k > 2n
    return size * 2 // 3 + 1


@internal
def _roll():
    """
    @dev A change takes effect by height; the first transaction after that
         height moves it into `validators`, so later votes use the new set.
    """
    if self.pending_height != 0 and block.number >= self.pending_height:
        self.validators = self.pending
        self.pending = []
        self.pending_height = 0


@view
@internal
def _count_current(approvals: DynArray[address, MAX_VALIDATORS]) -> uint256:
    count: uint256 = 0
    for approver: address in approvals:
        if approver in self.validators:
            count += 1
    return count


@internal
def _adopt_if_ready(id: uint256):
    proposal: Proposal = self.proposals[id]
    if self._count_current(proposal.approvals) < self._needed(len(self.validators)):
        return
    assert self.pending_height == 0, "another validator change is pending"
    changed: DynArray[address, MAX_VALIDATORS] = []
    if proposal.add:
        assert proposal.validator not in self.validators, "already a validator"
        changed = self.validators
        changed.append(proposal.validator)
        self.endpoints[proposal.validator] = proposal.endpoint
        self.names[proposal.validator] = proposal.name
    else:
        assert proposal.validator in self.validators, "not a validator"
        for member: address in self.validators:
            if member != proposal.validator:
                changed.append(member)
    self.pending = changed
    self.pending_height = block.number + ACTIVATION_DELAY
    self.proposals[id].adopted = True
    log Adopted(
        id=id,
        validator=proposal.validator,
        add=proposal.add,
        height=block.number + ACTIVATION_DELAY,
        name=proposal.name,
        endpoint=proposal.endpoint,
    )


@external
def propose(add: bool, validator: address, name: String[64], endpoint: String[128]) -> uint256:
    """
    @notice Propose adding `validator` (add=True, with its name and P2P
            endpoint) or removing it (add=False). The proposer's approval
            counts.
    """
    self._roll()
    assert msg.sender in self.validators, "sender is not a current validator"
    assert validator != empty(address), "validator address is zero"
    if add:
        assert validator not in self.validators, "already a validator"
        assert len(self.validators) < MAX_VALIDATORS, "the validator set is full"
        assert len(name) > 0 and len(endpoint) > 0, "a new validator needs a name and an endpoint"
    else:
        assert validator in self.validators, "not a validator"
        assert len(self.validators) > 1, "the last validator cannot be removed"
    id: uint256 = self.proposal_count + 1
    self.proposal_count = id
    self.proposals[id] = Proposal(
        add=add,
        validator=validator,
        name=name,
        endpoint=endpoint,
        proposer=msg.sender,
        created=block.number,
        expires=block.number + PROPOSAL_LIFETIME,
        approvals=[msg.sender],
        adopted=False,
    )
    log Proposed(
        id=id, validator=validator, add=add, proposer=msg.sender, expires=block.number + PROPOSAL_LIFETIME
    )
    self._adopt_if_ready(id)
    return id


@external
def approve(id: uint256):
    """
    @notice Approve proposal `id` as a current validator.
    """
    self._roll()
    assert msg.sender in self.validators, "sender is not a current validator"
    assert self.proposals[id].created != 0, "no such proposal"
    assert not self.proposals[id].adopted, "proposal already adopted"
    assert block.number <= self.proposals[id].expires, "proposal expired"
    assert msg.sender not in self.proposals[id].approvals, "already approved"
    self.proposals[id].approvals.append(msg.sender)
    log Approved(
        id=id,
        approver=msg.sender,
        approvals=self._count_current(self.proposals[id].approvals),
        needed=self._needed(len(self.validators)),
    )
    self._adopt_if_ready(id)
