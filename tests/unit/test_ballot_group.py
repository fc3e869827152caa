"""The secp256k1 group, its canonical encodings and the transcript hash (group.py).

[BALLOT-GROUP.1] arithmetic including the point at infinity, [BALLOT-GROUP.2]
the second generator, [BALLOT-HASH.1] framing and challenges, [BALLOT-ENC.1]
and [BALLOT-ENC.2] the point and scalar codecs with every rejection.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.ballot.errors import InvalidEncoding
from contracts.ballot.group import (
    FIELD_PRIME,
    GENERATOR,
    GROUP_ORDER,
    INFINITY,
    INFINITY_ENCODING,
    Point,
    compute_challenge,
    compute_combination,
    compute_generator_h,
    decode_point,
    decode_scalar,
    encode_point,
    encode_scalar,
    encode_transcript,
    multiply_generator,
    random_scalar,
    sum_points,
)

scalars = st.integers(min_value=0, max_value=GROUP_ORDER - 1)
nonzero_scalars = st.integers(min_value=1, max_value=GROUP_ORDER - 1)
points = st.one_of(st.just(INFINITY), nonzero_scalars.map(multiply_generator))


def _is_on_curve(x: int) -> bool:
    """x³ + 7 is a square mod p (Euler's criterion)."""
    return pow(x**3 + 7, (FIELD_PRIME - 1) // 2, FIELD_PRIME) in (0, 1)


# --- arithmetic ----------------------------------------------------------------------


def test_known_multiples_of_the_generator() -> None:
    """[BALLOT-GROUP.1] G, 2G and (n-1)G = -G are the standard values; nG = O."""
    assert encode_point(GENERATOR).hex() == (
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    )
    assert encode_point(multiply_generator(2)).hex() == (
        "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
    )
    assert multiply_generator(GROUP_ORDER - 1) == -GENERATOR
    assert multiply_generator(GROUP_ORDER - 1) + GENERATOR == INFINITY
    assert multiply_generator(GROUP_ORDER) == INFINITY
    assert GENERATOR * 0 == INFINITY


@given(a=scalars, b=scalars)
def test_scalar_multiplication_is_a_homomorphism(a: int, b: int) -> None:
    """[BALLOT-GROUP.1] (a+b)G = aG + bG and a(bG) = (ab)G, infinity included."""
    assert multiply_generator(a + b) == multiply_generator(a) + multiply_generator(b)
    assert multiply_generator(b) * a == multiply_generator(a * b)
    assert GENERATOR * a == multiply_generator(a)


@given(point=points, other=points)
def test_infinity_is_the_identity(point: Point, other: Point) -> None:
    """[BALLOT-GROUP.1] P + O = P, P - P = O, -O = O; sums that cancel give O."""
    assert point + INFINITY == point
    assert INFINITY + point == point
    assert point - point == INFINITY
    assert -INFINITY == INFINITY
    assert sum_points([point, other, -point, -other]) == INFINITY
    assert sum_points([]) == INFINITY
    assert (point + other) - other == point
    assert INFINITY * 5 == INFINITY


@given(g=scalars, terms=st.lists(st.tuples(scalars, points), max_size=4))
def test_combination_matches_term_by_term(g: int, terms: list[tuple[int, Point]]) -> None:
    """[BALLOT-GROUP.1] compute_combination(g, [(k, P)…]) = gG + Σ kP."""
    expected = multiply_generator(g)
    for scalar, point in terms:
        expected = expected + point * scalar
    assert compute_combination(g, terms) == expected


def test_random_scalars_are_nonzero_and_reduced() -> None:
    """[BALLOT-GROUP.1] Nonces come from the CSPRNG, in 1..n-1, and differ."""
    drawn = {random_scalar() for _ in range(50)}
    assert len(drawn) == 50
    assert all(0 < value < GROUP_ORDER for value in drawn)


def test_second_generator_is_derived_by_try_and_increment() -> None:
    """[BALLOT-GROUP.2] H = (x, even y) for the first counter whose SHA-256 x is on the curve."""
    generator_h, counter = compute_generator_h()
    tag = b"polder/ballot/v1/generator-h"
    for attempt in range(counter + 1):
        data = len(tag).to_bytes(4, "big") + tag + (4).to_bytes(4, "big")
        x = int.from_bytes(hashlib.sha256(data + attempt.to_bytes(4, "big")).digest(), "big")
        hit = x < FIELD_PRIME and _is_on_curve(x)
        assert hit == (attempt == counter)
    assert encode_point(generator_h)[0] == 0x02
    assert encode_point(generator_h)[1:] == x.to_bytes(32, "big")
    assert generator_h not in (GENERATOR, INFINITY)


# --- transcript hash -----------------------------------------------------------------


def test_transcript_frames_every_item() -> None:
    """[BALLOT-HASH.1] u32 length ‖ bytes, tag first; the challenge is SHA-512 mod n."""
    transcript = encode_transcript(b"tag", [b"ab", b""])
    assert transcript == b"\x00\x00\x00\x03tag\x00\x00\x00\x02ab\x00\x00\x00\x00"
    digest = hashlib.sha512(transcript).digest()
    assert compute_challenge(b"tag", [b"ab", b""]) == int.from_bytes(digest, "big") % GROUP_ORDER


@given(left=st.binary(max_size=8), right=st.binary(max_size=8), cut=st.integers(0, 16))
def test_transcript_is_injective(left: bytes, right: bytes, cut: int) -> None:
    """[BALLOT-HASH.1] Moving bytes between items changes the transcript."""
    joined = left + right
    cut = min(cut, len(joined))
    if (joined[:cut], joined[cut:]) != (left, right):
        assert encode_transcript(b"t", [left, right]) != encode_transcript(
            b"t", [joined[:cut], joined[cut:]]
        )
    assert encode_transcript(b"t", [joined]) != encode_transcript(b"t", [left, right])


# --- point and scalar codecs -----------------------------------------------------------


@given(point=points)
def test_point_codec_round_trips(point: Point) -> None:
    """[BALLOT-ENC.1] 33 bytes, compressed SEC1 or all-zero infinity, decodes to itself."""
    encoded = encode_point(point)
    assert len(encoded) == 33
    assert decode_point(encoded) == point
    assert (encoded == INFINITY_ENCODING) == point.is_infinity


@given(x=st.integers(min_value=0, max_value=2**256 - 1), prefix=st.sampled_from([2, 3]))
def test_point_decoder_refuses_off_curve_and_unreduced_x(x: int, prefix: int) -> None:
    """[BALLOT-ENC.1] x ≥ p or x³+7 not a square is refused with its reason."""
    data = bytes((prefix,)) + x.to_bytes(32, "big")
    if x >= FIELD_PRIME:
        with pytest.raises(InvalidEncoding) as error:
            decode_point(data)
        assert error.value.data["reason"] == "point-coordinate"
    elif not _is_on_curve(x):
        with pytest.raises(InvalidEncoding) as error:
            decode_point(data)
        assert error.value.data["reason"] == "point-off-curve"
    else:
        assert encode_point(decode_point(data)) == data


@given(
    prefix=st.integers(0, 255).filter(lambda b: b not in (2, 3)),
    tail=st.binary(min_size=32, max_size=32),
)
def test_point_decoder_refuses_other_prefixes(prefix: int, tail: bytes) -> None:
    """[BALLOT-ENC.1] Only 0x02, 0x03 and the all-zero infinity are points."""
    data = bytes((prefix,)) + tail
    if data == INFINITY_ENCODING:
        assert decode_point(data) == INFINITY
        return
    with pytest.raises(InvalidEncoding) as error:
        decode_point(data)
    assert error.value.data["reason"] == "point-prefix"


@given(data=st.binary(max_size=70).filter(lambda d: len(d) != 33))
def test_point_decoder_refuses_other_lengths(data: bytes) -> None:
    """[BALLOT-ENC.1] Uncompressed (65-byte) and every other length are refused."""
    with pytest.raises(InvalidEncoding, match="expected 33 bytes"):
        decode_point(data)


def test_point_decoder_refuses_uncompressed_form() -> None:
    """[BALLOT-ENC.1] coincurve would parse 65-byte 0x04 keys; the decoder does not."""
    assert GENERATOR.key is not None
    with pytest.raises(InvalidEncoding):
        decode_point(GENERATOR.key.format(compressed=False))


@given(value=scalars)
def test_scalar_codec_round_trips(value: int) -> None:
    """[BALLOT-ENC.2] 32 big-endian bytes below n."""
    assert decode_scalar(encode_scalar(value)) == value
    assert len(encode_scalar(value)) == 32


@given(value=st.integers(min_value=GROUP_ORDER, max_value=2**256 - 1))
def test_scalar_decoder_refuses_values_not_below_n(value: int) -> None:
    """[BALLOT-ENC.2] A scalar ≥ n would alias value - n: refused."""
    with pytest.raises(InvalidEncoding) as error:
        decode_scalar(value.to_bytes(32, "big"))
    assert error.value.data["reason"] == "scalar-range"


def test_scalar_codec_refuses_wrong_sizes_and_ranges() -> None:
    """[BALLOT-ENC.2] Lengths other than 32 and encoding out-of-range ints are refused."""
    with pytest.raises(InvalidEncoding, match="expected 32 bytes"):
        decode_scalar(bytes(31))
    with pytest.raises(InvalidEncoding):
        encode_scalar(GROUP_ORDER)
    with pytest.raises(InvalidEncoding):
        encode_scalar(-1)
