"""[LAYERS.1] The dependency arrows of DESIGN.md hold (checked by import-linter)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert linter, "import-linter is a dev dependency; run make setup"
    result = subprocess.run([linter], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def imported_modules(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_consensus_does_no_io() -> None:
    """The consensus core takes events and `now`; it never touches sockets or disk."""
    forbidden = {"asyncio", "aiohttp", "plyvel", "socket", "eth", "node", "clients", "os"}
    assert imported_modules("consensus") & forbidden == set()


def test_clients_never_import_node() -> None:
    assert "node" not in imported_modules("clients")
