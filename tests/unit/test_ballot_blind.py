"""RSA blind signatures, RFC 9474 RSABSSA-SHA384-PSS-Randomized (contracts/ballot/blind.py).

[BALLOT-BLIND.1]-[BALLOT-BLIND.6]: the RFC's published test vector (Appendix A,
RSABSSA-SHA384-PSS-Randomized) reproduced step by step, the PSS encoding
checked against pycryptodome's independent RSASSA-PSS implementation, round
trips, and rejection of every tampered input.
"""

from __future__ import annotations

import hashlib

import pytest
from Crypto.Hash import SHA384
from Crypto.PublicKey import RSA
from Crypto.Signature import pss
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.errors import InvalidProof
from contracts.ballot.blind import (
    PREFIX_SIZE,
    SALT_SIZE,
    blind_message,
    compute_blinded_message,
    compute_credential_message,
    compute_pss_encoding,
    decode_public_key,
    encode_public_key,
    finalize_signature,
    generate_signing_key,
    is_valid_pss_encoding,
    prepare_message,
    sign_blinded_message,
    validate_credential,
    validate_signature,
)
from contracts.ballot.errors import InvalidCredential
from contracts.ballot.group import encode_transcript


def _hex(*chunks: str) -> bytes:
    return bytes.fromhex("".join(chunks))


# --- RFC 9474, Appendix A: RSABSSA-SHA384-PSS-Randomized test vector ---------------
# Values as published (the same in the RFC text and in cloudflare/circl's
# testdata/test_vectors_rfc9474.json); encoded_msg is the EMSA-PSS encoding of
# prepared_msg with the given salt.

RFC_P = int(
    "e1f4d7a34802e27c7392a3cea32a262a34dc3691bd87f3f310dc75673488930559c120fd0410194fb8a0da55bd0b81227e"
    "843fdca6692ae80e5a5d414116d4803fca7d8c30eaaae57e44a1816ebb5c5b0606c536246c7f11985d731684150b63c9a3"
    "ad9e41b04c0b5b27cb188a692c84696b742a80d3cd00ab891f2457443dadfeba6d6daf108602be26d7071803c67105a542"
    "6838e6889d77e8474b29244cefaf418e381b312048b457d73419213063c60ee7b0d81820165864fef93523c9635c222109"
    "56e53a8d96322493ffc58d845368e2416e078e5bcb5d2fd68ae6acfa54f9627c42e84a9d3f2774017e32ebca06308a12ec"
    "c290c7cd1156dcccfb2311",
    16,
)
RFC_Q = int(
    "c601a9caea66dc3835827b539db9df6f6f5ae77244692780cd334a006ab353c806426b60718c05245650821d39445d3ab5"
    "91ed10a7339f15d83fe13f6a3dfb20b9452c6a9b42eaa62a68c970df3cadb2139f804ad8223d56108dfde30ba7d367e9b0"
    "a7a80c4fdba2fd9dde6661fc73fc2947569d2029f2870fc02d8325acf28c9afa19ecf962daa7916e21afad09eb62fe9f1c"
    "f91b77dc879b7974b490d3ebd2e95426057f35d0a3c9f45f79ac727ab81a519a8b9285932d9b2e5ccd347e59f3f32ad9ca"
    "359115e7da008ab7406707bd0e8e185a5ed8758b5ba266e8828f8d863ae133846304a2936ad7bc7c9803879d2fc4a28e69"
    "291d73dbd799f8bc238385",
    16,
)
RFC_N = int(
    "aec4d69addc70b990ea66a5e70603b6fee27aafebd08f2d94cbe1250c556e047a928d635c3f45ee9b66d1bc628a03bac9b"
    "7c3f416fe20dabea8f3d7b4bbf7f963be335d2328d67e6c13ee4a8f955e05a3283720d3e1f139c38e43e0338ad058a9495"
    "c53377fc35be64d208f89b4aa721bf7f7d3fef837be2a80e0f8adf0bcd1eec5bb040443a2b2792fdca522a7472aed74f31"
    "a1ebe1eebc1f408660a0543dfe2a850f106a617ec6685573702eaaa21a5640a5dcaf9b74e397fa3af18a2f1b7c03ba91a6"
    "336158de420d63188ee143866ee415735d155b7c2d854d795b7bc236cffd71542df34234221a0413e142d8c61355cc44d4"
    "5bda94204974557ac2704cd8b593f035a5724b1adf442e78c542cd4414fce6f1298182fb6d8e53cef1adfd2e90e1e4deec"
    "52999bdc6c29144e8d52a125232c8c6d75c706ea3cc06841c7bda33568c63a6c03817f722b50fcf898237d788a4400869e"
    "44d90a3020923dc646388abcc914315215fcd1bae11b1c751fd52443aac8f601087d8d42737c18a3fa11ecd4131ecae017"
    "ae0a14acfc4ef85b83c19fed33cfd1cd629da2c4c09e222b398e18d822f77bb378dea3cb360b605e5aa58b20edc29d000a"
    "66bd177c682a17e7eb12a63ef7c2e4183e0d898f3d6bf567ba8ae84f84f1d23bf8b8e261c3729e2fa6d07b832e07cddd1d"
    "14f55325c6f924267957121902dc19b3b32948bdead5",
    16,
)
RFC_E = 0x010001
RFC_D = int(
    "0d43242aefe1fb2c13fbc66e20b678c4336d20b1808c558b6e62ad16a287077180b177e1f01b12f9c6cd6c52630257ccef"
    "26a45135a990928773f3bd2fc01a313f1dac97a51cec71cb1fd7efc7adffdeb05f1fb04812c924ed7f4a8269925dad88bd"
    "7dcfbc4ef01020ebfc60cb3e04c54f981fdbd273e69a8a58b8ceb7c2d83fbcbd6f784d052201b88a9848186f2a45c0d282"
    "6870733e6fd9aa46983e0a6e82e35ca20a439c5ee7b502a9062e1066493bdadf8b49eb30d9558ed85abc7afb29b3c9bc64"
    "4199654a4676681af4babcea4e6f71fe4565c9c1b85d9985b84ec1abf1a820a9bbebee0df1398aae2c85ab580a9f13e774"
    "3afd3108eb32100b870648fa6bc17e8abac4d3c99246b1f0ea9f7f93a5dd5458c56d9f3f81ff2216b3c3680a13591673c4"
    "3194d8e6fc93fc1e37ce2986bd628ac48088bc723d8fbe293861ca7a9f4a73e9fa63b1b6d0074f5dea2a624c5249ff3ad8"
    "11b6255b299d6bc5451ba7477f19c5a0db690c3e6476398b1483d10314afd38bbaf6e2fbdbcd62c3ca9797a420ca6034ec"
    "0a83360a3ee2adf4b9d4ba29731d131b099a38d6a23cc463db754603211260e99d19affc902c915d7854554aabf608e3ac"
    "52c19b8aa26ae042249b17b2d29669b5c859103ee53ef9bdc73ba3c6b537d5c34b6d8f034671d7f3a8a6966cc4543df223"
    "565343154140fd7391c7e7be03e241f4ecfeb877a051",
    16,
)
RFC_MSG = _hex(
    "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6b59f8cfec5fdbb36331372ebefedae7d"
)
RFC_MSG_PREFIX = _hex("8417e699b219d583fb6216ae0c53ca0e9723442d02f1d1a34295527e7d929e8b")
RFC_SALT = _hex(
    "051722b35f458781397c3a671a7d3bd3096503940e4c4f1aaa269d60300ce449555cd7340100df9d46944c5356825abf"
)
RFC_ENCODED_MSG = _hex(
    "2be01c5669eb676cb3f0002eb636427d61568f3f0579da5b998279a7eb3ab784e5617319376d04809d83e72bef9f0738e7"
    "324af3fd1b4f0a35f4f58058ab329495406bdb5ff31a0274be2d137c735ab0d5a591b3129a6cc46fcecc4b41dbc684c965"
    "cb30e3eb4864ef18cc8d95b4d6a2002607c821d4d8a7e026ae7bb1f6b4c7c93d1b58e9cd87864d6094b0d8f7e2b5f96647"
    "3703634fb58c774dd4a24376e0eb262a24b58e3a0b4da4f36ef75651627561ff2ecee9dcbfe1d728cc31a7b46030f7a281"
    "5ae9edf9a2a5c0c6d8dbab1b33b9c3bbda5c083670a3550f7d74c4263aad09f8ed1d435fc6295ca4d51fc02c7de9ae28ff"
    "d53372c3fa864521b27560daa11ab9daad8d0d747661718d2f79c59d0661b09c74863fa32bdcb1c408d3bd24569c57aeca"
    "e6e06c0c9deb7303c5b7b1240960fd2413d61b2e3829af8c09874fdba0fe84ca6aa7e7d533f9b0ddfe508f562b132ca2d3"
    "25f1e73f91a8a6b831a2fd9bc0bd5bfa5ea3a1dee16bd9b264174b9553a4c0c0d62373353355c05b35824e4bae702f49e5"
    "a6bf83eaff65af499045bcef1470a0e58ddb21856034af0db96f8636d4a6f1591f34c7224e0c0293e3d3be2139f2797c5e"
    "d8b65473ac2f83c52b87f8cf8754ac2f55f5e41e105df1d079a647fb1aa591526295667f37db1129752d024eb03bfe506a"
    "43665072118423351ef9b8663376f9fc073141e1e7bc"
)
RFC_INV = int(
    "80682c48982407b489d53d1261b19ec8627d02b8cda5336750b8cee332ae260de57b02d72609c1e0e9f28e2040fc65b6f0"
    "2d56dbd6aa9af8fde656f70495dfb723ba01173d4707a12fddac628ca29f3e32340bd8f7ddb557cf819f6b01e445ad96f8"
    "74ba235584ee71f6581f62d4f43bf03f910f6510deb85e8ef06c7f09d9794a008be7ff2529f0ebb69decef646387dc767b"
    "74939265fec0223aa6d84d2a8a1cc912d5ca25b4e144ab8f6ba054b54910176d5737a2cff011da431bd5f2a0d2d66b9e70"
    "b39f4b050e45c0d9c16f02deda9ddf2d00f3e4b01037d7029cd49c2d46a8e1fc2c0c17520af1f4b5e25ba396afc4cd60c4"
    "94a4c426448b35b49635b337cfb08e7c22a39b256dd032c00adddafb51a627f99a0e1704170ac1f1912e49d9db10ec04c1"
    "9c58f420212973e0cb329524223a6aa56c7937c5dffdb5d966b6cd4cbc26f3201dd25c80960a1a111b32947bb78973d269"
    "fac7f5186530930ed19f68507540eed9e1bab8b00f00d8ca09b3f099aae46180e04e3584bd7ca054df18a1504b89d1d167"
    "5d0966c4ae1407be325cdf623cf13ff13e4a28b594d59e3eadbadf6136eee7a59d6a444c9eb4e2198e8a974f27a39eb63a"
    "f2c9af3870488b8adaad444674f512133ad80b9220e09158521614f1faadfe8505ef57b7df6813048603f0dd04f4280177"
    "a11380fbfc861dbcbd7418d62155248dad5fdec0991f",
    16,
)
RFC_BLINDED_MSG = _hex(
    "aa3ee045138d874669685ffaef962c7694a9450aa9b4fd6465db9b3b75a522bb921c4c0fdcdfae9667593255099cff51f5"
    "d3fd65e8ffb9d3b3036252a6b51b6edfb3f40382b2bbf34c0055e4cbcc422850e586d84f190cd449af11dc65545f5fe26f"
    "d89796eb87da4bda0c545f397cddfeeb56f06e28135ec74fd477949e7677f6f36cfae8fd5c1c5898b03b9c244cf6d1a4fb"
    "7ad1cb43aff5e80cb462fac541e72f67f0a50f1843d1759edfaae92d1a916d3f0efaf4d650db416c3bf8abdb5414a78ceb"
    "c97de676723cb119e77aea489f2bbf530c440ebc5a75dccd3ebf5a412a5f346badd61bee588e5917bdcce9dc33c882e398"
    "26951b0b8276c6203971947072b726e935816056ff5cb11a71ca2946478584126bb877acdf87255f26e6cca4e087880130"
    "7485d3b7bb89b289551a8b65a7a6b93db010423d1406e149c87731910306e5e410b41d4da3234624e74f92845183e323cf"
    "7eb244f212a695f8856c675fbc3a021ce649e22c6f0d053a9d238841cf3afdc2739f99672a419ae13c17f1f8a3bc302ec2"
    "e7b98e8c353898b7150ad8877ec841ea6e4b288064c254fefd0d049c3ad196bf7ffa535e74585d0120ce728036ed500942"
    "fbd5e6332c298f1ffebe9ff60c1e117b274cf0cb9d70c36ee4891528996ec1ed0b178e9f3c0c0e6120885f39e8ccaadbb2"
    "0f3196378c07b1ff22d10049d3039a7a92fe7efdd95d"
)
RFC_BLIND_SIG = _hex(
    "3f4a79eacd4445fca628a310d41e12fcd813c4d43aa4ef2b81226953248d6d00adfee6b79cb88bfa1f99270369fd063c02"
    "3e5ed546719b0b2d143dd1bca46b0e0e615fe5c63d95c5a6b873b8b50bc52487354e69c3dfbf416e7aca18d5842c89b676"
    "efdd38087008fa5a810161fcdec26f20ccf2f1e6ab0f9d2bb93e051cb9e86a9b28c5bb62fd5f5391379f887c0f706a08bc"
    "c3b9e7506aaf02485d688198f5e22eefdf837b2dd919320b17482c5cc54271b4ccb41d267629b3f844fd63750b01f5276c"
    "79e33718bb561a152acb2eb36d8be75bce05c9d1b94eb609106f38226fb2e0f5cd5c5c39c59dda166862de498b8d92f6bc"
    "b41af433d65a2ac23da87f39764cb64e79e74a8f4ce4dd567480d967cefac46b6e9c06434c3715635834357edd2ce6f105"
    "eea854ac126ccfa3de2aac5607565a4e5efaac5eed491c335f6fc97e6eb7e9cea3e12de38dfb315220c0a3f84536abb2fd"
    "d722813e083feda010391ac3d8fd1cd9212b5d94e634e69ebcc800c4d5c4c1091c64afc37acf563c7fc0a6e4c082bc5554"
    "4f50a7971f3fb97d5853d72c3af34ffd5ce123998be5360d1059820c66a81e1ee6d9c1803b5b62af6bc877526df255b6d1"
    "d835d8c840bebbcd6cc0ee910f17da37caf8488afbc08397a1941fcc79e76a5888a95b3d5405e13f737bea5c78d716a48e"
    "b9dc0aec8de39c4b45c6914ad4a8185969f70b1adf46"
)
RFC_SIG = _hex(
    "191e941c57510e22d29afad257de5ca436d2316221fe870c7cb75205a6c071c2735aed0bc24c37f3d5bd960ab97a829a50"
    "8f966bbaed7a82645e65eadaf24ab5e6d9421392c5b15b7f9b640d34fec512846a3100b80f75ef51064602118c1a77d28d"
    "938f6efc22041d60159a518d3de7c4d840c9c68109672d743d299d8d2577ef60c19ab463c716b3fa75fa56f5735349d414"
    "a44df12bf0dd44aa3e10822a651ed4cb0eb6f47c9bd0ef14a034a7ac2451e30434d513eb22e68b7587a8de9b4e63a059d0"
    "5c8b22c7c51e2cfee2d8bef511412e93c859a13726d87c57d1bc4c2e68ab121562f839c3a3d233e87ed63c69b7e5752536"
    "7753fbebcc2a9805a2802659f5888b2c69115bf865559f10d906c09d048a0d71bfee4b33857393ec2b69e451433496d02c"
    "9a7910abb954317720bbde9e69108eafc3e90bad3d5ca4066d7b1e49013fa04e948104a1dd82b12509ecb146e948c54bd8"
    "bfb5e6d18127cd1f7a93c3cf9f2d869d5a78878c03fe808a0d799e910be6f26d18db61c485b303631d3568368fc41986d0"
    "8a95ea6ac0592240c19d7b22416b9c82ae6241e211dd5610d0baaa9823158f9c32b66318f5529491b7eeadcaa71898a63b"
    "ac9d95f4aa548d5e97568d744fc429104e32edd9c87519892a198a30d333d427739ffb9607b092e910ae37771abf2adb9f"
    "63bc058bf58062ad456cb934679795bbdfcdfad5e0f2"
)

RFC_KEY = RSA.construct((RFC_N, RFC_E, RFC_D, RFC_P, RFC_Q))
RFC_PREPARED = RFC_MSG_PREFIX + RFC_MSG


def _pycryptodome_accepts(key: RSA.RsaKey, message: bytes, signature: bytes) -> bool:
    """Independent RSASSA-PSS-VERIFY: SHA-384, MGF1-SHA-384, 48-byte salt."""
    verifier = pss.new(key.public_key(), salt_bytes=SALT_SIZE)
    try:
        verifier.verify(SHA384.new(message), signature)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def fresh_key() -> RSA.RsaKey:
    """One newly generated 2048-bit issuer key for the module (generation takes ~1 s)."""
    return generate_signing_key(2048)


# --- the RFC 9474 vector, step by step ---------------------------------------------


def test_rfc_vector_key_is_the_published_one() -> None:
    """[BALLOT-BLIND.1] Guards the transcription of the vector: n = p·q, d inverts e."""
    assert RFC_P * RFC_Q == RFC_N
    assert pow(pow(12345, RFC_E, RFC_N), RFC_D, RFC_N) == 12345


def test_rfc_vector_pss_encoding() -> None:
    """[BALLOT-BLIND.2] EMSA-PSS-ENCODE(prepared_msg, modBits-1) with the salt is encoded_msg."""
    encoded = compute_pss_encoding(RFC_PREPARED, RFC_N.bit_length() - 1, RFC_SALT)
    assert encoded == RFC_ENCODED_MSG
    assert is_valid_pss_encoding(RFC_PREPARED, encoded, RFC_N.bit_length() - 1)


def test_rfc_vector_blind() -> None:
    """[BALLOT-BLIND.3] Blind with the vector's salt and r = inv⁻¹ gives blinded_msg and inv."""
    blinded = compute_blinded_message(RFC_KEY, RFC_PREPARED, RFC_SALT, pow(RFC_INV, -1, RFC_N))
    assert blinded.blinded_message == RFC_BLINDED_MSG
    assert blinded.inverse == RFC_INV


def test_rfc_vector_blind_sign() -> None:
    """[BALLOT-BLIND.4] BlindSign(sk, blinded_msg) is blind_sig."""
    assert sign_blinded_message(RFC_KEY, RFC_BLINDED_MSG) == RFC_BLIND_SIG


def test_rfc_vector_finalize_and_verify() -> None:
    """[BALLOT-BLIND.5] Finalize gives sig, which our verifier and pycryptodome's accept."""
    signature = finalize_signature(RFC_KEY, RFC_PREPARED, RFC_BLIND_SIG, RFC_INV)
    assert signature == RFC_SIG
    validate_signature(RFC_KEY.public_key(), RFC_PREPARED, RFC_SIG)
    assert _pycryptodome_accepts(RFC_KEY, RFC_PREPARED, RFC_SIG)


# --- round trips and interoperability -----------------------------------------------


def test_round_trip_with_a_fresh_key(fresh_key: RSA.RsaKey) -> None:
    """[BALLOT-BLIND.1] [BALLOT-BLIND.5] Prepare, blind, sign, finalize; the result is RSA-PSS."""
    public_key = fresh_key.public_key()
    message = compute_credential_message(bytes(32), bytes(20))
    prepared = prepare_message(message)
    assert len(prepared) == PREFIX_SIZE + len(message)
    assert prepared.endswith(message)
    blinded = blind_message(public_key, prepared)
    blind_signature = sign_blinded_message(fresh_key, blinded.blinded_message)
    signature = finalize_signature(public_key, prepared, blind_signature, blinded.inverse)
    validate_signature(public_key, prepared, signature)
    assert _pycryptodome_accepts(fresh_key, prepared, signature)


def test_generated_keys_are_fresh_and_sized(fresh_key: RSA.RsaKey) -> None:
    """[BALLOT-BLIND.1] Keys have e = 65537 and the requested size; odd sizes are refused."""
    assert fresh_key.n.bit_length() == 2048
    assert fresh_key.e == 65537
    with pytest.raises(ValueError, match="modulus size"):
        generate_signing_key(1024)


def test_prepare_and_blind_are_randomized() -> None:
    """[BALLOT-BLIND.1] Two preparations or blindings of one message never coincide."""
    message = b"same message"
    assert prepare_message(message) != prepare_message(message)
    first = blind_message(RFC_KEY, RFC_PREPARED)
    second = blind_message(RFC_KEY, RFC_PREPARED)
    assert first.blinded_message != second.blinded_message


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=200), salt=st.binary(min_size=SALT_SIZE, max_size=SALT_SIZE))
def test_pycryptodome_pss_signatures_verify_here(message: bytes, salt: bytes) -> None:
    """[BALLOT-BLIND.6] A PSS signature made by pycryptodome with SHA-384/48-byte salt verifies."""
    signer = pss.new(RFC_KEY, salt_bytes=SALT_SIZE, rand_func=lambda size: salt[:size])
    signature = signer.sign(SHA384.new(message))
    validate_signature(RFC_KEY, message, signature)
    encoded = compute_pss_encoding(message, RFC_N.bit_length() - 1, salt)
    assert pow(int.from_bytes(signature, "big"), RFC_E, RFC_N) == int.from_bytes(encoded, "big")


# --- rejection ---------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(RFC_SIG) * 8 - 1))
def test_any_flipped_signature_bit_is_rejected(bit: int) -> None:
    """[BALLOT-BLIND.6] Change any bit of a signature → InvalidCredential."""
    tampered = bytearray(RFC_SIG)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidCredential, match="invalid signature"):
        validate_signature(RFC_KEY, RFC_PREPARED, bytes(tampered))


@settings(max_examples=40, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(RFC_PREPARED) * 8 - 1))
def test_any_flipped_message_bit_is_rejected(bit: int) -> None:
    """[BALLOT-BLIND.6] The signature covers every bit of prefix and message."""
    tampered = bytearray(RFC_PREPARED)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidCredential):
        validate_signature(RFC_KEY, bytes(tampered), RFC_SIG)


@settings(max_examples=40, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(RFC_ENCODED_MSG) * 8 - 1))
def test_any_flipped_encoding_bit_is_inconsistent(bit: int) -> None:
    """[BALLOT-BLIND.2] EMSA-PSS-VERIFY refuses an encoding with any bit changed."""
    tampered = bytearray(RFC_ENCODED_MSG)
    tampered[bit // 8] ^= 1 << (bit % 8)
    assert not is_valid_pss_encoding(RFC_PREPARED, bytes(tampered), RFC_N.bit_length() - 1)


def test_signature_under_another_key_is_rejected(fresh_key: RSA.RsaKey) -> None:
    """[BALLOT-BLIND.6] A valid signature by one issuer does not verify under another."""
    with pytest.raises(InvalidCredential):
        validate_signature(fresh_key.public_key(), RFC_PREPARED, RFC_SIG)


def test_signature_of_wrong_length_or_out_of_range_is_rejected() -> None:
    """[BALLOT-BLIND.6] RSASSA-PSS-VERIFY steps 1 and 2: length k and s < n."""
    with pytest.raises(InvalidCredential, match="wrong length"):
        validate_signature(RFC_KEY, RFC_PREPARED, RFC_SIG[1:])
    with pytest.raises(InvalidCredential, match="not below n"):
        validate_signature(RFC_KEY, RFC_PREPARED, b"\xff" * len(RFC_SIG))


def test_finalize_catches_a_bad_signer(fresh_key: RSA.RsaKey) -> None:
    """[BALLOT-BLIND.5] Finalize verifies: a blind signature by the wrong key is refused."""
    blinded = blind_message(RFC_KEY, RFC_PREPARED)
    wrong = sign_blinded_message(RFC_KEY, blinded.blinded_message)
    wrong = bytes(wrong[:-1]) + bytes([wrong[-1] ^ 1])
    with pytest.raises(InvalidCredential, match="invalid signature"):
        finalize_signature(RFC_KEY, RFC_PREPARED, wrong, blinded.inverse)
    with pytest.raises(InvalidCredential, match="unexpected input size"):
        finalize_signature(fresh_key, RFC_PREPARED, RFC_BLIND_SIG, RFC_INV)


def test_blind_sign_refuses_malformed_input() -> None:
    """[BALLOT-BLIND.4] Wrong size or a representative ≥ n is an error, not a signature."""
    with pytest.raises(InvalidCredential, match="unexpected input size"):
        sign_blinded_message(RFC_KEY, RFC_BLINDED_MSG + b"\x00")
    with pytest.raises(InvalidCredential, match="out of range"):
        sign_blinded_message(RFC_KEY, RFC_N.to_bytes(len(RFC_BLINDED_MSG), "big"))
    with pytest.raises(ValueError, match="private key"):
        sign_blinded_message(RFC_KEY.public_key(), RFC_BLINDED_MSG)


def test_blind_refuses_a_blind_without_inverse() -> None:
    """[BALLOT-BLIND.3] r must be invertible mod n (r = p is not)."""
    with pytest.raises(InvalidCredential, match="blinding error"):
        compute_blinded_message(RFC_KEY, RFC_PREPARED, RFC_SALT, RFC_P)


# --- credentials and issuer keys ----------------------------------------------------


def test_credential_binds_poll_and_voting_address() -> None:
    """[BALLOT-BLIND.7] The signed message is SHA-256 of the framed tag, poll id and address."""
    poll_id, address = bytes(31) + b"\x2a", b"\x10" * 20
    message = compute_credential_message(poll_id, address)
    expected = encode_transcript(b"polder/credential/v1", [poll_id, address])
    assert message == hashlib.sha256(expected).digest()
    prefix = b"\x07" * PREFIX_SIZE
    blinded = blind_message(RFC_KEY, prefix + message)
    blind_signature = sign_blinded_message(RFC_KEY, blinded.blinded_message)
    signature = finalize_signature(RFC_KEY, prefix + message, blind_signature, blinded.inverse)
    validate_credential(RFC_KEY, poll_id, address, prefix, signature)
    with pytest.raises(InvalidCredential):
        validate_credential(RFC_KEY, poll_id, b"\x11" * 20, prefix, signature)
    with pytest.raises(InvalidCredential):
        validate_credential(RFC_KEY, bytes(32), address, prefix, signature)
    with pytest.raises(InvalidCredential, match="prefix"):
        validate_credential(RFC_KEY, poll_id, address, prefix[1:], signature)


def test_issuer_public_key_codec(fresh_key: RSA.RsaKey) -> None:
    """[BALLOT-BLIND.8] DER SubjectPublicKeyInfo round-trips; anything else is refused."""
    encoded = encode_public_key(fresh_key)
    assert decode_public_key(encoded) == fresh_key.public_key()
    assert decode_public_key(encode_public_key(RFC_KEY)).n == RFC_N
    with pytest.raises(InvalidCredential, match="canonical"):
        decode_public_key(fresh_key.public_key().export_key(format="PEM"))
    with pytest.raises(InvalidCredential, match="canonical"):
        decode_public_key(fresh_key.export_key(format="DER"))
    with pytest.raises(InvalidCredential, match="not an RSA public key"):
        decode_public_key(b"\x30\x03garbage")
    too_small = RSA.construct((RFC_P >> 1024 | 1, RFC_E))  # a 1024-bit odd modulus
    with pytest.raises(InvalidProof, match="1024 bits"):
        decode_public_key(too_small.export_key(format="DER"))
