"""docs/spec/ballots.md and the tests agree: the coverage table is complete and true.

Every requirement tag the spec defines appears in its coverage table, every
test the table names exists, and that test's docstring names the tag (a range
such as ``[BALLOT-ENC.1]-[BALLOT-ENC.7]`` names every tag in between).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "docs" / "spec" / "ballots.md").read_text(encoding="utf-8")
TAG = re.compile(r"\[(BALLOT-[A-Z0-9-]+?)\.(\d+)\]")
RANGE = re.compile(r"\[(BALLOT-[A-Z0-9-]+?)\.(\d+)\]-\[(BALLOT-[A-Z0-9-]+?)\.(\d+)\]")


def docstring_tags(text: str) -> set[str]:
    """Tags a docstring names, ranges expanded."""
    tags = {f"{name}.{number}" for name, number in TAG.findall(text)}
    for first, low, last, high in RANGE.findall(text):
        if first == last:
            tags.update(f"{first}.{number}" for number in range(int(low), int(high) + 1))
    return tags


def collect_test_docstrings() -> dict[str, str]:
    """Map ``file::test`` to its docstring for every ballot test module."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "tests" / "unit").glob("test_ballot_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found[f"{path.name}::{node.name}"] = ast.get_docstring(node) or ""
    return found


def coverage_table() -> dict[str, list[str]]:
    """The spec's closing table: tag → ``file::test`` names."""
    table: dict[str, list[str]] = {}
    for line in SPEC.split("## Which tests cover which requirement")[1].splitlines():
        match = re.match(r"\| `\[(BALLOT-[^\]]+)\]` \| (.+) \|$", line)
        if not match:
            continue
        current_file = ""
        names: list[str] = []
        for item in re.findall(r"`([^`]+)`", match.group(2)):
            if item.startswith("::"):
                names.append(f"{current_file}{item}")
            else:
                current_file = item.split("::")[0]
                names.append(item)
        table[match.group(1)] = names
    return table


def test_every_spec_tag_is_in_the_table() -> None:
    """Each tag the spec defines (a bullet starting with it) has a row in the table."""
    defined = set(re.findall(r"^- `\[(BALLOT-[^\]]+)\]`", SPEC, flags=re.MULTILINE))
    assert defined
    assert defined == set(coverage_table())


def test_every_listed_test_exists_and_names_its_tag() -> None:
    """The table never names a missing test, and each listed test's docstring has the tag."""
    docstrings = collect_test_docstrings()
    for tag, names in coverage_table().items():
        assert names, tag
        for name in names:
            assert name in docstrings, f"{tag}: {name} does not exist"
            assert tag in docstring_tags(docstrings[name]), f"{name} does not name {tag}"
