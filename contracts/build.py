"""Compile every ``contracts/*.vy`` into ``contracts/artifacts/<Name>.json``.

Run as ``python -m contracts.build`` (``make contracts``) to write the
artifacts, or with ``--check`` to only list the stale ones and exit non-zero.

This is the only module that imports vyper: vyper is a dev-time dependency,
and the node reads the committed artifacts through ``contracts.loader``.
Compiler version, EVM version and optimisation level are pinned here, so the
same source always yields byte-identical artifacts on every machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import vyper
from vyper.compiler import compile_code
from vyper.compiler.settings import OptimizationLevel, Settings
from vyper.exceptions import VyperException

from consensus.errors import ConfigError

PINNED_VYPER_VERSION = "0.4.3"
"""The one vyper release whose output is committed; another release differs."""

EVM_VERSION = "prague"
"""Target fork, pinned rather than left to the compiler's default."""

CONTRACTS_DIR = Path(__file__).resolve().parent
"""Where the ``.vy`` sources live."""

ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
"""Where the compiled ``<Name>.json`` artifacts are written."""

_OUTPUT_FORMATS = ("abi", "bytecode", "bytecode_runtime", "layout")


def get_source_paths() -> list[Path]:
    """Return the ``.vy`` sources of the package, sorted by name."""
    return sorted(CONTRACTS_DIR.glob("*.vy"))


def get_artifact_path(name: str) -> Path:
    """Return where the artifact of contract ``name`` is stored."""
    return ARTIFACTS_DIR / f"{name}.json"


def compute_source_sha256(source: bytes) -> str:
    """Return the hex SHA-256 of a contract's source bytes."""
    return hashlib.sha256(source).hexdigest()


def validate_compiler_version() -> None:
    """Refuse to build with a vyper other than the pinned one."""
    if vyper.__version__ != PINNED_VYPER_VERSION:
        raise ConfigError(
            f"vyper {vyper.__version__} is installed but artifacts are built with "
            f"vyper {PINNED_VYPER_VERSION}; run `make setup`",
            expected=PINNED_VYPER_VERSION,
            actual=vyper.__version__,
        )


def compile_source(path: Path) -> dict[str, Any]:
    """Compile one ``.vy`` file and return its artifact as a JSON-ready dict."""
    validate_compiler_version()
    source = path.read_bytes()
    settings = Settings(evm_version=EVM_VERSION, optimize=OptimizationLevel.GAS)
    # Only the file name is passed: the absolute path would otherwise leak
    # into error messages and make the build depend on the checkout location.
    output = compile_code(
        source.decode("utf-8"),
        contract_path=path.name,
        output_formats=list(_OUTPUT_FORMATS),
        settings=settings,
    )
    return {
        "contract_name": path.stem,
        "abi": output["abi"],
        "bytecode": output["bytecode"],
        "runtime_bytecode": output["bytecode_runtime"],
        "storage_layout": output["layout"]["storage_layout"],
        "source_sha256": compute_source_sha256(source),
        "compiler": f"vyper {PINNED_VYPER_VERSION}",
        "evm_version": EVM_VERSION,
    }


def encode_artifact(artifact: dict[str, Any]) -> str:
    """Return the stable JSON text of an artifact (sorted keys, trailing newline)."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def is_artifact_current(name: str) -> bool:
    """Return whether ``artifacts/<name>.json`` is exactly what its source compiles to."""
    source_path = CONTRACTS_DIR / f"{name}.vy"
    artifact_path = get_artifact_path(name)
    if not source_path.is_file() or not artifact_path.is_file():
        return False
    try:
        stored = json.loads(artifact_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return bool(stored == compile_source(source_path))


def get_orphan_artifacts() -> list[Path]:
    """Return artifacts whose ``.vy`` source no longer exists."""
    names = {path.stem for path in get_source_paths()}
    return sorted(p for p in ARTIFACTS_DIR.glob("*.json") if p.stem not in names)


def get_stale_names() -> list[str]:
    """Return the contracts whose artifact is missing, outdated or orphaned."""
    stale = [p.stem for p in get_source_paths() if not is_artifact_current(p.stem)]
    stale += [p.stem for p in get_orphan_artifacts()]
    return sorted(stale)


def save_artifacts() -> list[str]:
    """Compile every source, write its artifact, drop orphans; return names written."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    written = []
    for source_path in get_source_paths():
        get_artifact_path(source_path.stem).write_text(
            encode_artifact(compile_source(source_path)), encoding="utf-8"
        )
        written.append(source_path.stem)
    # The directory holds generated files only, so an artifact without a
    # source would otherwise let the node deploy code nobody can rebuild.
    for orphan in get_orphan_artifacts():
        orphan.unlink()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m contracts.build", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list stale artifacts and exit 1 if there are any",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = get_stale_names()
            for name in stale:
                print(f"stale: contracts/artifacts/{name}.json", file=sys.stderr)
            if stale:
                print("run `make contracts` to rebuild", file=sys.stderr)
                return 1
            return 0
        for name in save_artifacts():
            print(f"wrote contracts/artifacts/{name}.json")
    except ConfigError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    except VyperException as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
