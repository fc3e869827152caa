"""The committed contract artifacts match their Vyper sources, and load cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.errors import ConfigError
from contracts import build, loader

SOURCES = build.get_source_paths()


def test_every_contract_has_a_source() -> None:
    assert SOURCES, "no contracts/*.vy found; the package data is broken"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_artifact_matches_source(source: Path) -> None:
    artifact_path = build.get_artifact_path(source.stem)
    assert artifact_path.is_file(), f"{source.name} has no artifact; run `make contracts`"
    stored = json.loads(artifact_path.read_text(encoding="utf-8"))
    fresh = build.compile_source(source)
    hint = f"{artifact_path.name} is stale; run `make contracts`"
    assert stored["source_sha256"] == fresh["source_sha256"], hint
    assert stored["abi"] == fresh["abi"], hint
    assert stored["bytecode"] == fresh["bytecode"], hint
    assert stored["runtime_bytecode"] == fresh["runtime_bytecode"], hint
    assert artifact_path.read_text(encoding="utf-8") == build.encode_artifact(fresh), hint
    assert build.is_artifact_current(source.stem)


def test_no_orphan_artifacts() -> None:
    assert build.get_orphan_artifacts() == []


def test_check_mode_reports_nothing_stale() -> None:
    assert build.main(["--check"]) == 0


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_loader_decodes_artifact(source: Path) -> None:
    artifact = loader.load_artifact(source.stem)
    stored = json.loads(build.get_artifact_path(source.stem).read_text(encoding="utf-8"))
    assert artifact.name == source.stem
    assert list(artifact.abi) == stored["abi"]
    assert artifact.bytecode == bytes.fromhex(stored["bytecode"][2:])
    assert artifact.runtime_bytecode == bytes.fromhex(stored["runtime_bytecode"][2:])
    assert artifact.source_sha256 == build.compute_source_sha256(source.read_bytes())


def test_notary_abi() -> None:
    abi = loader.load_artifact("Notary").abi
    functions = {entry["name"]: entry for entry in abi if entry["type"] == "function"}
    assert [i["type"] for i in functions["record"]["inputs"]] == ["bytes32", "bytes32"]
    assert functions["values"]["stateMutability"] == "view"
    assert functions["count"]["outputs"] == [{"name": "", "type": "uint256"}]
    (event,) = (entry for entry in abi if entry["type"] == "event")
    assert event["name"] == "Recorded"
    assert [(i["name"], i["type"], i["indexed"]) for i in event["inputs"]] == [
        ("key", "bytes32", True),
        ("value", "bytes32", False),
        ("author", "address", True),
    ]


def test_loader_missing_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="make contracts"):
        loader.load_artifact("NoSuchContract")


@pytest.mark.parametrize("name", ["", "../build", "Notary.json", "a/b"])
def test_loader_rejects_path_like_names(name: str) -> None:
    with pytest.raises(ConfigError):
        loader.load_artifact(name)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"contract_name": "Other"}',
        json.dumps({"contract_name": "Notary", "abi": {}}),
        json.dumps(
            {
                "contract_name": "Notary",
                "abi": [],
                "source_sha256": "0" * 64,
                "bytecode": "0xzz",
                "runtime_bytecode": "0x00",
            }
        ),
        json.dumps(
            {
                "contract_name": "Notary",
                "abi": [],
                "source_sha256": "0" * 64,
                "bytecode": "00",
                "runtime_bytecode": "0x00",
            }
        ),
    ],
)
def test_loader_garbled_artifact_raises_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="make contracts"):
        loader.decode_artifact("Notary", text)


def test_stale_artifact_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SOURCES[0]
    (tmp_path / source.name).write_bytes(source.read_bytes() + b"\n# edited\n")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    current = build.get_artifact_path(source.stem)
    (artifacts / current.name).write_bytes(current.read_bytes())
    monkeypatch.setattr(build, "CONTRACTS_DIR", tmp_path)
    monkeypatch.setattr(build, "ARTIFACTS_DIR", artifacts)
    assert not build.is_artifact_current(source.stem)
    assert build.get_stale_names() == [source.stem]
    assert build.main(["--check"]) == 1
