# pragma version 0.4.3
# pragma evm-version prague
"""
@title Notary
@notice Demo and benchmark contract of Polder: records a nonzero 32-byte
        value under a 32-byte key and logs who recorded it.
@dev There is deliberately no constructor: genesis may place this runtime
     code at a fixed address with empty storage, so every state variable
     must be correct when it starts at zero.
"""

event Recorded:
    key: indexed(bytes32)
    value: bytes32
    author: indexed(address)


values: public(HashMap[bytes32, bytes32])
count: public(uint256)


@external
def record(key: bytes32, _value: bytes32):
    """
    @notice Store `_value` under `key`, overwriting any earlier value.
    @dev Vyper reserves `value` as an argument name (it is the ether kwarg of
         external calls), hence `_value`; the selector is unaffected.
         A zero value is refused because it is indistinguishable from
         "never recorded" when read back through `values`.
    """
    assert _value != empty(bytes32), "value must be nonzero"
    self.values[key] = _value
    self.count += 1
    log Recorded(key=key, value=_value, author=msg.sender)
