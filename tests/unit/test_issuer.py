"""Credential issuance (clients/issuer): the roll, the key file, the service, the client.

Real aiohttp servers on 127.0.0.1 (port 0), real RFC 9474 blind signatures
with 2048-bit keys, a real SQLite roll in a temporary directory. The voter's
client (blocking urllib) runs on a worker thread so the server keeps serving.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from Crypto.IO import PEM
from Crypto.PublicKey import RSA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.issuer import cli
from clients.issuer.client import (
    Credential,
    decode_credential,
    encode_credential,
    fetch_issuer_key,
    request_credential,
    validate_issuer_url,
)
from clients.issuer.errors import (
    AlreadyIssued,
    InvalidIssuerAnswer,
    IssuerUnavailable,
    MalformedRequest,
    PollNotServed,
    RollError,
    VoterLocked,
    WrongCode,
)
from clients.issuer.keys import (
    encode_issuer_public_key,
    load_issuer_key,
    save_issuer_key,
)
from clients.issuer.reporter import IssuanceReporter
from clients.issuer.roll import (
    CODE_ALPHABET,
    add_voters,
    apply_issuance,
    clear_failures,
    count_issued,
    generate_code,
    is_code_correct,
    load_roll,
    normalize_code,
    open_roll,
)
from clients.issuer.service import (
    MAX_FAILED_CODES,
    WRONG_CODE_MESSAGE,
    IssuerConfig,
    make_app,
)
from consensus.errors import ConfigError, PolderError
from contracts.ballot.blind import (
    blind_message,
    compute_credential_message,
    decode_public_key,
    generate_signing_key,
    prepare_message,
    sign_blinded_message,
    validate_credential,
)

POLL = bytes.fromhex("11" * 32)
OTHER_POLL = bytes.fromhex("22" * 32)
UNSERVED_POLL = bytes.fromhex("33" * 32)
ADDRESS = bytes.fromhex("ab" * 20)
VOTERS = ["voter-1", "voter-2", "voter-3", "voter-4", "voter-5"]


@pytest.fixture(scope="module")
def issuer_key() -> RSA.RsaKey:
    return generate_signing_key(2048)


@pytest.fixture
def roll(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "roll.sqlite"
    with closing(open_roll(path)) as connection:
        codes = add_voters(connection, VOTERS)
    return path, codes


@pytest.fixture
def config(issuer_key: RSA.RsaKey, roll: tuple[Path, dict[str, str]]) -> IssuerConfig:
    return IssuerConfig(
        name="Schiedam", key=issuer_key, roll_path=roll[0], polls=frozenset({POLL, OTHER_POLL})
    )


@pytest.fixture
def codes(roll: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return roll[1]


@asynccontextmanager
async def serving(config: IssuerConfig) -> AsyncIterator[str]:
    """Run the service on a free loopback port; yield its base URL."""
    runner = web.AppRunner(make_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def blinded_hex(key: RSA.RsaKey, poll_id: bytes = POLL) -> str:
    prepared = prepare_message(compute_credential_message(poll_id, ADDRESS))
    return "0x" + blind_message(key, prepared).blinded_message.hex()


async def post(
    url: str, poll_id: bytes, body: Any, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/polls/0x{poll_id.hex()}/credentials", data=data) as response,
    ):
        return response.status, await response.json()


async def get(url: str, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + path) as response:
        return response.status, await response.json()


def request(url: str, voter_id: str, code: str, **options: Any) -> Any:
    """The voter's client on a worker thread (it blocks)."""
    options.setdefault("issuer_index", 2)
    options.setdefault("poll_id", POLL)
    return asyncio.to_thread(
        request_credential,
        url,
        options.pop("poll_id"),
        voter_id,
        code,
        ADDRESS,
        **options,
    )


# -- end to end -------------------------------------------------------------------


async def test_credential_end_to_end_verifies(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    async with serving(config) as url:
        credential = await request(url, "voter-1", codes["voter-1"])
        status, issued = await get(url, f"/polls/0x{POLL.hex()}/issued")
        _, key = await get(url, "/key")
    validate_credential(issuer_key, POLL, ADDRESS, credential.message_prefix, credential.signature)
    encoded = encode_credential(credential)
    assert encoded[0] == 2  # [POLL-CRED.1] u8(issuerIndex) ‖ prefix(32) ‖ signature
    assert encoded[1:33] == credential.message_prefix
    assert len(encoded) == 1 + 32 + 256
    assert decode_credential(encoded) == credential
    assert (status, issued) == (200, {"count": 1})
    assert key == {
        "publicKey": "0x" + encode_issuer_public_key(issuer_key).hex(),
        "name": "Schiedam",
    }


async def test_key_given_as_der_and_fetched_key(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    der = encode_issuer_public_key(issuer_key)
    async with serving(config) as url:
        credential = await request(url, "voter-1", codes["voter-1"], public_key=der)
        fetched = await asyncio.to_thread(fetch_issuer_key, url)
    assert fetched.name == "Schiedam"
    assert fetched.public_key == decode_public_key(der)
    validate_credential(issuer_key, POLL, ADDRESS, credential.message_prefix, credential.signature)


@pytest.mark.parametrize("size", [256, 255])
async def test_a_bad_blind_signature_is_an_invalid_answer(
    issuer_key: RSA.RsaKey, size: int
) -> None:
    """A misbehaving issuer: the client's Finalize catches it ([BALLOT-BLIND.5])."""

    async def evil(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"blindSignature": "0x" + secrets.token_bytes(size).hex(), "issuer": "Evil"}
        )

    app = web.Application()
    app.router.add_post("/polls/{poll_id}/credentials", evil)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        with pytest.raises(InvalidIssuerAnswer, match="Evil's blind signature does not verify"):
            await request(
                f"http://{host}:{port}", "voter-1", "x", public_key=issuer_key.public_key()
            )
    finally:
        await runner.cleanup()


async def test_second_request_for_the_same_poll_is_refused(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    body = {"voterId": "voter-1", "code": codes["voter-1"]}
    async with serving(config) as url:
        first = await post(url, POLL, {**body, "blindedMessage": blinded_hex(issuer_key)})
        second = await post(url, POLL, {**body, "blindedMessage": blinded_hex(issuer_key)})
        with pytest.raises(AlreadyIssued, match="already received a credential for this poll"):
            await request(url, "voter-1", codes["voter-1"])
        _, issued = await get(url, f"/polls/0x{POLL.hex()}/issued")
    assert first[0] == 200
    assert first[1]["issuedCount"] == 1
    assert second[0] == 409
    assert second[1]["error"]["code"] == AlreadyIssued.code
    assert "blindSignature" not in second[1]
    assert issued == {"count": 1}


async def test_same_voter_id_in_another_poll_gets_a_credential(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    async with serving(config) as url:
        await request(url, "voter-1", codes["voter-1"])
        credential = await request(url, "voter-1", codes["voter-1"], poll_id=OTHER_POLL)
        counts = [(await get(url, f"/polls/0x{p.hex()}/issued"))[1] for p in (POLL, OTHER_POLL)]
    validate_credential(
        issuer_key, OTHER_POLL, ADDRESS, credential.message_prefix, credential.signature
    )
    assert counts == [{"count": 1}, {"count": 1}]


async def test_wrong_code_and_unknown_voter_get_the_same_answer(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    blinded = blinded_hex(issuer_key)
    wrong_code = generate_code()
    async with serving(config) as url:
        wrong = await post(
            url, POLL, {"voterId": "voter-1", "code": wrong_code, "blindedMessage": blinded}
        )
        unknown = await post(
            url, POLL, {"voterId": "nobody", "code": codes["voter-1"], "blindedMessage": blinded}
        )
        with pytest.raises(WrongCode, match="wrong voter id or code"):
            await request(url, "voter-2", wrong_code)
    assert wrong == unknown
    assert wrong == (401, {"error": {"code": WrongCode.code, "message": WRONG_CODE_MESSAGE}})


async def test_repeated_wrong_codes_lock_the_voter_id_for_that_poll(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    async def attempt(voter_id: str, code: str, poll_id: bytes = POLL) -> tuple[int, Any]:
        body = {"voterId": voter_id, "code": code, "blindedMessage": blinded_hex(issuer_key)}
        return await post(url, poll_id, body)

    async with serving(config) as url:
        for voter_id in ("voter-1", "nobody"):
            statuses = [(await attempt(voter_id, "WRONG"))[0] for _ in range(MAX_FAILED_CODES)]
            assert statuses == [401] * MAX_FAILED_CODES
        locked = await attempt("voter-1", codes["voter-1"])
        locked_unknown = await attempt("nobody", "WRONG")
        with pytest.raises(VoterLocked, match="contact the municipality"):
            await request(url, "voter-1", codes["voter-1"])
        # The lock is per poll, and the municipality can lift it.
        assert (await attempt("voter-1", codes["voter-1"], OTHER_POLL))[0] == 200
        with closing(sqlite3.connect(config.roll_path)) as connection:
            clear_failures(connection, POLL, "voter-1")
            connection.commit()
        assert (await attempt("voter-1", codes["voter-1"]))[0] == 200
    assert locked[0] == 429
    assert locked[1]["error"]["code"] == VoterLocked.code
    # An unknown id locks the same way, so locking cannot probe the roll either.
    assert locked_unknown == locked


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        # the decoder may refuse the nesting or return nested lists: refused either way
        (b"[" * 3000 + b"]" * 3000, "JSON"),
        (json.dumps({"code": "x", "blindedMessage": "0x00"}).encode(), "voterId"),
        (json.dumps({"voterId": "voter-1", "blindedMessage": "0x00"}).encode(), "code"),
        (json.dumps({"voterId": "voter-1", "code": "x"}).encode(), "blindedMessage"),
        (json.dumps({"voterId": 7, "code": "x", "blindedMessage": "0x"}).encode(), "voterId"),
        (json.dumps({"voterId": "=cmd", "code": "x", "blindedMessage": "0x"}).encode(), "voterId"),
        (json.dumps({"voterId": "v", "code": "x" * 65, "blindedMessage": "0x"}).encode(), "code"),
        (json.dumps({"voterId": "v", "code": "x", "blindedMessage": "0xzz"}).encode(), "bytes"),
        (json.dumps({"voterId": "v", "code": "x", "blindedMessage": "0x00"}).encode(), "bytes"),
        (
            json.dumps({"voterId": "v", "code": "x", "blindedMessage": "0x" + "ff" * 256}).encode(),
            "modulus",
        ),
        (
            json.dumps({"voterId": "v", "code": "x", "blindedMessage": "ab" * 257}).encode(),
            "bytes",
        ),
    ],
)
async def test_malformed_requests_get_400_json_errors(
    config: IssuerConfig, raw: bytes, fragment: str
) -> None:
    async with serving(config) as url:
        status, answer = await post(url, POLL, None, raw=raw)
        _, issued = await get(url, f"/polls/0x{POLL.hex()}/issued")
    assert status == 400
    assert answer["error"]["code"] == MalformedRequest.code
    assert fragment in answer["error"]["message"]
    assert issued == {"count": 0}


async def test_oversized_bodies_bad_paths_and_unknown_polls_are_json_errors(
    config: IssuerConfig,
) -> None:
    async with serving(config) as url:
        too_large = await post(url, POLL, None, raw=b"{" + b" " * 20_000 + b"}")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b" " * 1000

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/polls/0x{POLL.hex()}/credentials", data=chunks()) as response,
        ):
            chunked = response.status, await response.json()
        bad_poll = await get(url, "/polls/0x1234/issued")
        unserved = await get(url, f"/polls/0x{UNSERVED_POLL.hex()}/issued")
        no_route = await get(url, "/nothing")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/polls/0x{POLL.hex()}/credentials") as response,
        ):
            wrong_method = response.status, await response.json()
        with pytest.raises(PollNotServed, match="check the poll id"):
            await request(url, "voter-1", "x", poll_id=UNSERVED_POLL)
    assert too_large[0] == 413
    assert too_large[1]["error"]["code"] == -32066
    assert chunked[0] == 413
    assert chunked[1]["error"]["code"] == -32066
    assert bad_poll[0] == 400
    assert bad_poll[1]["error"]["code"] == MalformedRequest.code
    assert unserved[0] == 404
    assert unserved[1]["error"]["code"] == PollNotServed.code
    assert no_route[0] == 404
    assert "error" in no_route[1]
    assert wrong_method[0] == 405
    assert "error" in wrong_method[1]


async def test_concurrent_requests_for_one_voter_issue_exactly_once(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    async with serving(config) as url:
        answers = await asyncio.gather(
            *(
                post(
                    url,
                    POLL,
                    {
                        "voterId": "voter-3",
                        "code": codes["voter-3"],
                        "blindedMessage": blinded_hex(issuer_key),
                    },
                )
                for _ in range(5)
            )
        )
        _, issued = await get(url, f"/polls/0x{POLL.hex()}/issued")
    assert sorted(status for status, _ in answers) == [200, 409, 409, 409, 409]
    assert sum("blindSignature" in answer for _, answer in answers) == 1
    assert issued == {"count": 1}


async def test_logs_hold_no_codes_nor_blinded_messages(
    config: IssuerConfig,
    codes: dict[str, str],
    issuer_key: RSA.RsaKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    blinded = blinded_hex(issuer_key)
    async with serving(config) as url:
        body = {"voterId": "voter-4", "code": codes["voter-4"], "blindedMessage": blinded}
        assert (await post(url, POLL, body))[0] == 200
        await post(url, POLL, {**body, "voterId": "voter-5", "code": "WRONG-CODE"})
    text = caplog.text
    assert "issued credential 1" in text
    assert blinded[2:] not in text
    assert codes["voter-4"] not in text
    assert "voter-4" not in text


# -- the roll ---------------------------------------------------------------------


def test_codes_are_stored_hashed_only(roll: tuple[Path, dict[str, str]]) -> None:
    path, codes = roll
    data = path.read_bytes()
    for code in codes.values():
        assert code.encode() not in data
        assert normalize_code(code).encode() not in data
    assert path.stat().st_mode & 0o077 == 0
    with closing(open_roll(path)) as connection:
        code = codes["voter-2"]
        assert is_code_correct(connection, "voter-2", code)
        assert is_code_correct(connection, "voter-2", code.lower().replace("-", " "))
        assert not is_code_correct(connection, "voter-2", codes["voter-3"])
        assert not is_code_correct(connection, "nobody", code)
        columns = [row[1] for row in connection.execute("PRAGMA table_info(voters)")]
    assert columns == ["voter_id", "code_hash", "salt"]


def test_adding_a_voter_twice_adds_nothing(tmp_path: Path) -> None:
    with closing(open_roll(tmp_path / "roll.sqlite")) as connection:
        add_voters(connection, ["a1"])
        with pytest.raises(RollError, match="'a1' is already on the roll"):
            add_voters(connection, ["b2", "a1"])
        with pytest.raises(RollError, match="more than once"):
            add_voters(connection, ["c3", "c3"])
        voters = [row[0] for row in connection.execute("SELECT voter_id FROM voters")]
    assert voters == ["a1"]


def test_failed_signing_rolls_the_issuance_back(roll: tuple[Path, dict[str, str]]) -> None:
    def broken() -> bytes:
        raise RuntimeError("hardware fault")

    with closing(open_roll(roll[0])) as connection:
        with pytest.raises(RuntimeError):
            apply_issuance(connection, POLL, "voter-1", broken)
        assert count_issued(connection, POLL) == 0
        assert apply_issuance(connection, POLL, "voter-1", lambda: b"sig") == (b"sig", 1)
        with pytest.raises(AlreadyIssued):
            apply_issuance(connection, POLL, "voter-1", lambda: b"again")
        with pytest.raises(RollError, match="not on the roll"):
            apply_issuance(connection, POLL, "nobody", lambda: b"sig")


def test_issuance_is_atomic_across_connections(roll: tuple[Path, dict[str, str]]) -> None:
    """Two processes (here threads with their own connections) racing: one signature."""
    signed: list[bytes] = []
    refused: list[PolderError] = []
    barrier = threading.Barrier(4)

    def race(index: int) -> None:
        with closing(open_roll(roll[0])) as connection:
            barrier.wait()
            try:
                signed.append(
                    apply_issuance(connection, POLL, "voter-2", lambda: bytes([index]))[0]
                )
            except AlreadyIssued as exc:
                refused.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(signed) == 1
    assert len(refused) == 3


voter_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}", fullmatch=True)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(voter_ids, min_size=1, max_size=20, unique=True), as_objects=st.booleans())
def test_voter_ids_round_trip_through_load_roll(
    tmp_path: Path, ids: list[str], as_objects: bool
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "voter_id"])
    writer.writerows([["", voter_id] for voter_id in ids])
    source = tmp_path / "roll.csv"
    source.write_text(buffer.getvalue())
    assert load_roll(source) == ids
    entries = [{"voterId": v} for v in ids] if as_objects else ids
    source = tmp_path / "roll.json"
    source.write_text(json.dumps(entries))
    assert load_roll(source) == ids


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("roll.csv", "id\nabc\n", "voter_id column"),
        ("roll.csv", "voter_id\nabc\nabc\n", "more than once"),
        ("roll.csv", "voter_id\n=HYPERLINK()\n", "is not 1..64"),
        ("roll.json", '{"voters": []}', "JSON list"),
        ("roll.json", "[1]", "entry 0"),
        ("roll.json", "[", "not valid JSON"),
    ],
)
def test_load_roll_names_what_is_wrong(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    source = tmp_path / name
    source.write_text(text)
    with pytest.raises(RollError, match=fragment):
        load_roll(source)


@given(st.data())
def test_generated_codes_are_normalized_leniently(data: st.DataObject) -> None:
    code = generate_code()
    assert len(code) == 19
    assert all(c in CODE_ALPHABET for c in code.replace("-", ""))
    typed = data.draw(
        st.sampled_from([code, code.lower(), code.replace("-", ""), code.replace("-", " ")])
    )
    assert normalize_code(typed) == code.replace("-", "")
    assert normalize_code("o1l-I") == "0111"


@given(
    index=st.integers(0, 255),
    prefix=st.binary(min_size=32, max_size=32),
    signature=st.binary(min_size=1, max_size=512),
)
def test_credential_codec_round_trips(index: int, prefix: bytes, signature: bytes) -> None:
    credential = Credential(index, prefix, signature)
    assert decode_credential(encode_credential(credential)) == credential


# -- the key file -----------------------------------------------------------------


def test_key_file_is_private_and_checked(tmp_path: Path, issuer_key: RSA.RsaKey) -> None:
    path = tmp_path / "keys" / "issuer.pem"
    save_issuer_key(path, issuer_key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_issuer_key(path) == issuer_key
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        save_issuer_key(path, issuer_key)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others; run chmod 600"):
        load_issuer_key(path)
    public = tmp_path / "public.pem"
    public.write_bytes(issuer_key.public_key().export_key(format="PEM"))
    public.chmod(0o600)
    with pytest.raises(ConfigError, match="holds a public key"):
        load_issuer_key(public)
    small = tmp_path / "small.pem"
    small.write_bytes(RSA.generate(1024).export_key(format="PEM"))
    small.chmod(0o600)
    with pytest.raises(ConfigError, match="1024-bit modulus"):
        load_issuer_key(small)


# -- the on-chain reporter hook -------------------------------------------------------


class Recorder:
    """A ``report`` hook that records its calls (from the reporter's worker thread)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[bytes, int]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, poll_id: bytes, count: int) -> None:
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                raise ConnectionError("node unreachable")
            self.calls.append((poll_id, count))


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_service_reports_counts_debounced_and_at_shutdown(
    config: IssuerConfig, codes: dict[str, str], issuer_key: RSA.RsaKey
) -> None:
    recorder = Recorder()
    config = replace(config, report=recorder, report_interval=1.0)

    async def issue(voter_id: str) -> None:
        body = {
            "voterId": voter_id,
            "code": codes[voter_id],
            "blindedMessage": blinded_hex(issuer_key),
        }
        assert (await post(url, POLL, body))[0] == 200

    async with serving(config) as url:
        await issue("voter-1")
        await wait_for(lambda: len(recorder.calls) == 1)
        await issue("voter-2")
        await issue("voter-3")
        await asyncio.sleep(0.1)
        assert recorder.calls == [(POLL, 1)]  # within the interval: coalesced, not yet sent
        await wait_for(lambda: len(recorder.calls) == 2)
        await issue("voter-4")
    # Shut down inside the interval: the pending count is reported once more.
    assert recorder.calls == [(POLL, 1), (POLL, 3), (POLL, 4)]

    # A restart reports the stored counts again (a crash may have lost the last report).
    restarted = Recorder()
    async with serving(replace(config, report=restarted)):
        await wait_for(lambda: len(restarted.calls) == 1)
    assert restarted.calls == [(POLL, 4)]


async def test_reporter_retries_a_failed_report_and_never_decreases() -> None:
    recorder = Recorder(fail_first=1)
    reporter = IssuanceReporter(recorder, interval=0.05)
    reporter.on_issued(POLL, 2)
    reporter.on_issued(POLL, 1)  # late, lower counts are never reported
    reporter.on_issued(OTHER_POLL, 7)
    await wait_for(lambda: len(recorder.calls) == 2)
    await reporter.close()
    assert sorted(recorder.calls) == [(POLL, 2), (OTHER_POLL, 7)]
    reporter.on_issued(POLL, 3)  # after close: nothing more is started
    await asyncio.sleep(0.1)
    assert len(recorder.calls) == 2


# -- the client's checks and the CLI --------------------------------------------------


def test_client_refuses_plain_http_to_other_machines() -> None:
    validate_issuer_url("https://issuer.schiedam.nl")
    validate_issuer_url("http://127.0.0.1:8750")
    validate_issuer_url("http://localhost:8750")
    validate_issuer_url("http://issuer.lan:8750", insecure=True)
    with pytest.raises(ValueError, match="https://"):
        validate_issuer_url("http://issuer.schiedam.nl")
    with pytest.raises(ValueError, match="https://"):
        validate_issuer_url("file:///etc/passwd")


async def test_client_reports_an_unreachable_issuer(issuer_key: RSA.RsaKey) -> None:
    with pytest.raises(IssuerUnavailable, match="cannot be reached"):
        await asyncio.to_thread(
            request_credential,
            "http://127.0.0.1:9",
            POLL,
            "voter-1",
            "x",
            ADDRESS,
            issuer_index=0,
            public_key=issuer_key.public_key(),
            timeout=2.0,
        )


def test_cli_keygen_add_voters_issued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], issuer_key: RSA.RsaKey
) -> None:
    key = tmp_path / "issuer.pem"
    assert cli.main(["keygen", "--key", str(key), "--bits", "2048"]) == 0
    printed = capsys.readouterr().out
    assert "0x" + encode_issuer_public_key(load_issuer_key(key)).hex() in printed
    assert cli.main(["keygen", "--key", str(key)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err

    source = tmp_path / "voters.csv"
    source.write_text("voter_id\nx1\nx2\n")
    roll_path = tmp_path / "roll.sqlite"
    assert cli.main(["add-voters", "--roll", str(roll_path), "--from", str(source)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["voter_id", "code"]
    assert [row[0] for row in rows[1:]] == ["x1", "x2"]
    with closing(open_roll(roll_path)) as connection:
        assert all(is_code_correct(connection, v, c) for v, c in rows[1:])
        prepared = prepare_message(b"m")
        blinded = blind_message(issuer_key, prepared).blinded_message
        apply_issuance(connection, POLL, "x1", lambda: sign_blinded_message(issuer_key, blinded))
    assert cli.main(["issued", "--roll", str(roll_path), "--poll", "0x" + POLL.hex()]) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert cli.main(["issued", "--roll", str(tmp_path / "none"), "--poll", "0x" + POLL.hex()]) == 1
    assert cli.main(["serve", "--roll", str(roll_path)]) == 2


def test_key_file_written_by_keygen_is_not_world_readable(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    old = os.umask(0)
    try:
        assert cli.main(["keygen", "--key", str(key), "--bits", "2048"]) == 0
    finally:
        os.umask(old)
    assert key.stat().st_mode & 0o077 == 0
    # a PKCS#8 private key in PEM armour, named by its marker
    _, marker, _ = PEM.decode(key.read_text())
    assert marker == "PRIVATE KEY"


async def test_polls_may_be_given_as_a_callable(config: IssuerConfig) -> None:
    asked: list[bytes] = []

    def exists(poll_id: bytes) -> bool:
        asked.append(poll_id)
        return poll_id == OTHER_POLL

    async with serving(replace(config, polls=exists)) as url:
        served = await get(url, f"/polls/0x{OTHER_POLL.hex()}/issued")
        unserved = await get(url, f"/polls/{POLL.hex()}/issued")  # 0x is optional
    assert served == (200, {"count": 0})
    assert unserved[0] == 404
    assert asked == [OTHER_POLL, POLL]
    with pytest.raises(ValueError, match="32 bytes"):
        make_app(replace(config, polls={b"short"}))
    with pytest.raises(ValueError, match="private key"):
        make_app(replace(config, key=config.key.public_key()))
