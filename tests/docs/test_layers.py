"""docs/ARCHITECTURE.md against the import-linter contract of pyproject.toml.

The page lists the layers top to bottom and, for each package, what it may import; both
are read here and compared with the ``layers`` contract that ``lint-imports`` enforces in
``make check``, so the page cannot drift from the rule.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ARCHITECTURE.md"
PYPROJECT = REPO / "pyproject.toml"
MAKEFILE = REPO / "Makefile"

_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)/?`")


def contract() -> tuple[list[str], list[list[str]], list[bool]]:
    """root packages, the layers top to bottom (each a list of packages), and whether the
    packages of each layer are independent (``a | b``) or not (``a : b``)."""
    config = tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["importlinter"]
    # The project's layers: the layers contract over the root packages (a contract with
    # ``containers`` layers the modules inside one package).
    (layered,) = [
        c for c in config["contracts"] if c["type"] == "layers" and not c.get("containers")
    ]
    layers: list[list[str]] = []
    independent: list[bool] = []
    for layer in layered["layers"]:
        sep = ":" if ":" in layer else "|"
        layers.append([p.strip() for p in layer.split(sep)])
        independent.append(sep == "|" and len(layers[-1]) > 1)
    return list(config["root_packages"]), layers, independent


def section(text: str, heading: str) -> str:
    """The body of the markdown section titled ``heading`` (any level), up to the next
    heading of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(#+) (.*)", line)
        if m and m.group(2).strip() == heading:
            level = len(m.group(1))
            body = []
            for rest in lines[i + 1 :]:
                n = re.match(r"(#+) ", rest)
                if n and len(n.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    msg = f"no section {heading!r} in {DOC.name}"
    raise AssertionError(msg)


def doc_layers(text: str) -> tuple[list[list[str]], list[bool]]:
    """The numbered list of the "The layers" section: packages per layer, and whether the
    layer's packages are written as independent (``|``)."""
    layers: list[list[str]] = []
    independent: list[bool] = []
    for line in section(text, "The layers").splitlines():
        m = re.match(r"\d+\. (.*)", line)
        if not m:
            continue
        item = m.group(1).strip()
        layers.append(_NAME.findall(item))
        independent.append("|" in item)
    return layers, independent


def may_import(text: str, package: str) -> set[str] | None:
    """What the page says ``package`` may import (its "May import:" line); an empty set
    for "nothing of the project"."""
    body = section(text, f"`{package}/`")
    for line in re.split(r"\n\s*\n", body):
        if line.startswith("May import:"):
            if "nothing" in line:
                return set()
            return set(_NAME.findall(line))
    return None


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text("utf-8")


def test_the_layer_list_is_the_contract(doc: str) -> None:
    _, layers, independent = contract()
    got_layers, got_independent = doc_layers(doc)
    assert got_layers == layers, "docs/ARCHITECTURE.md's layers differ from pyproject.toml's"
    assert got_independent == independent


def test_every_root_package_is_in_one_layer_and_described(doc: str) -> None:
    roots, layers, _ = contract()
    listed = [p for layer in layers for p in layer]
    assert sorted(listed) == sorted(roots)
    for package in roots:
        assert may_import(doc, package) is not None, f"no 'May import:' line for {package}/"


def test_what_each_package_may_import_follows_from_the_layers(doc: str) -> None:
    _, layers, independent = contract()
    for i, layer in enumerate(layers):
        below = {p for lower in layers[i + 1 :] for p in lower}
        for package in layer:
            siblings = set() if independent[i] else set(layer) - {package}
            assert may_import(doc, package) == below | siblings, package


def test_the_rule_is_enforced_by_make_check(doc: str) -> None:
    """What the page says about enforcement: ``make check`` runs ``lint-imports``."""
    recipe = MAKEFILE.read_text("utf-8").split("\ncheck:", 1)[1].split("\n\n", 1)[0]
    assert "lint-imports" in recipe
    assert "`lint-imports`" in section(doc, "How the rule is enforced")


def test_the_parsers_catch_a_drift() -> None:
    """A swapped pair of layers or a wrong import line is seen (the checks above are real)."""
    text = DOC.read_text("utf-8")
    _, layers, _ = contract()
    swapped = text.replace("5. `monitoring`", "5. `schemas`", 1).replace(
        "6. `schemas`", "6. `monitoring`", 1
    )
    assert doc_layers(swapped)[0] != layers
    joined = text.replace("4. `streams` | `producers`", "4. `streams` : `producers`", 1)
    assert doc_layers(joined)[1] != contract()[2]
    wrong = text.replace("May import: `kappa`.", "May import: `kappa`, `monitoring`.", 1)
    assert may_import(wrong, "schemas") == {"kappa", "monitoring"}


ROOTS = ("cli", "orchestration", "stack", "replay", "streams", "producers", "monitoring")
ROOTS += ("schemas", "kappa")
_PATH = re.compile(r"(?:[\w.-]+/)+[\w.-]+\.(?:py|yml|avsc|toml|json|md)")
_FOLDER = re.compile(rf"(?:{'|'.join((*ROOTS, 'tests', 'bench', 'compose', 'docs'))})(?:/\w+)*/?")
_DOTTED = re.compile(rf"(?:{'|'.join(ROOTS)})(?:\.\w+)+")


def cited(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def test_the_files_and_folders_cited_exist(doc: str) -> None:
    missing = [
        token
        for token in cited(doc)
        if (_PATH.fullmatch(token) or _FOLDER.fullmatch(token)) and not (REPO / token).exists()
    ]
    assert not missing, f"docs/ARCHITECTURE.md cites what is not there: {missing}"


def test_the_python_names_cited_exist(doc: str) -> None:
    import importlib

    missing = []
    for token in {t for t in cited(doc) if _DOTTED.fullmatch(t)}:
        parts = token.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            if obj is None:
                missing.append(token)
            break
        else:
            missing.append(token)
    assert not missing, f"docs/ARCHITECTURE.md cites names that are not there: {missing}"


def test_the_names_cited_in_a_file_are_defined_there(doc: str) -> None:
    """ "`NAME` in `path.py`": the file defines NAME (at its top level, or a method)."""
    pairs = re.findall(r"`(\w+)(?:\(\))?` in `([\w/.-]+\.py)`", " ".join(doc.split()))
    assert pairs
    missing = [
        (name, path)
        for name, path in pairs
        if not re.search(
            rf"^(?:{name}\b|\s*(?:async )?def {name}\b|class {name}\b)",
            (REPO / path).read_text("utf-8"),
            re.MULTILINE,
        )
    ]
    assert not missing, f"docs/ARCHITECTURE.md cites names not defined where it says: {missing}"
