"""docs/architecture.md agrees with the code: its package table with the real import graph, its config-group table
with conf/, and the package has no import cycle between packages."""

from __future__ import annotations

import ast
import re
from collections import defaultdict

import pytest

from conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "architecture.md"
SRC = REPO_ROOT / "src" / "mrisr"


def table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after ``heading``."""
    text = DOC.read_text().split(heading, 1)[1]
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header


def names(cell: str) -> set[str]:
    return {n.strip("` ") for n in cell.split(",") if n.strip("` —")}


def package_of(module: str) -> str:
    parts = module.split(".")
    return "(root)" if len(parts) == 1 else parts[1]


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package → imported package → the importing modules (every import statement, lazy ones included)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mrisr":
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "mrisr"]
            for target in targets:
                a, b = package_of(module), package_of(target)
                if a != b:
                    graph[a][b].append(module)
    return graph


def test_every_package_imports_only_what_the_architecture_allows() -> None:
    allowed = {row[0].strip("`"): names(row[2]) for row in table("## Packages and what each may import")}
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"} | {"(root)"}
    assert set(allowed) == packages, "the table lists exactly the packages of src/mrisr"
    graph = import_graph()
    wrong = {
        f"{a} -> {b} ({', '.join(sorted(set(modules))[:2])})"
        for a, targets in graph.items()
        for b, modules in targets.items()
        if b not in allowed[a]
    }
    assert not wrong, f"imports the architecture does not allow: {sorted(wrong)}"


def test_no_cycle_between_packages() -> None:
    graph = import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph.get(stack.pop(), {}):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not cycles


@pytest.mark.parametrize("row", table("## Config groups (`conf/`)"), ids=lambda row: row[0])
def test_config_group_table_lists_every_option(row: list[str]) -> None:
    group = row[0].strip("`")
    folder = REPO_ROOT / "conf" / group
    on_disk = {p.stem for p in folder.glob("*.yaml")}
    assert names(row[1]) == on_disk, f"conf/{group}"


def test_config_group_table_lists_every_group() -> None:
    listed = {row[0].strip("`") for row in table("## Config groups (`conf/`)")}
    on_disk = {p.name for p in (REPO_ROOT / "conf").iterdir() if p.is_dir()}
    assert listed == on_disk


def test_documented_modules_exist() -> None:
    """Every ``mrisr.x.y`` named in docs/ is a module (or an attribute of one) of the package."""
    import importlib

    missing = set()
    for doc in (REPO_ROOT / "docs").glob("*.md"):
        prose = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)  # examples of code to write are not names
        for dotted in set(re.findall(r"(?<![\w./-])mrisr(?:\.[a-z_][a-z0-9_]*)+", prose)):
            parts = dotted.split(".")
            for n in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:n]))
                except ImportError:
                    continue
                for attribute in parts[n:]:
                    obj = getattr(obj, attribute, None)
                if obj is None:
                    missing.add(f"{doc.name}: {dotted}")
                break
            else:
                missing.add(f"{doc.name}: {dotted}")
    assert not missing, sorted(missing)


# ------------------------------------------------------------------------------------------------------ test layout
TESTS = REPO_ROOT / "tests"
#: Test folders that are not a package of src/mrisr: command-line contracts, the scripts of experiments/, helpers.
NON_PACKAGE_TEST_FOLDERS = {"cli", "experiments", "support", "golden"}
#: Tests outside tests/cli that must start processes: several training processes talking to each other (DDP).
MULTI_PROCESS_TESTS = {"tests/callbacks/test_callbacks.py"}


def test_tests_mirror_the_package() -> None:
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders - NON_PACKAGE_TEST_FOLDERS <= packages, "a test folder that names no package of src/mrisr"
    stray = sorted(str(p.relative_to(REPO_ROOT)) for p in TESTS.glob("test_*.py"))
    top_level = {"tests/test_architecture.py", "tests/test_api.py"}  # the whole package; the api.py module
    assert set(stray) <= top_level, (
        f"test modules belong in the folder of their package: {sorted(set(stray) - top_level)}"
    )


def test_only_command_line_tests_start_the_project_in_a_subprocess() -> None:
    offenders = []
    for path in TESTS.rglob("test_*.py"):
        rel = str(path.relative_to(REPO_ROOT))
        if rel.startswith("tests/cli/") or rel in MULTI_PROCESS_TESTS:
            continue
        if re.search(r"\brun_command\(|sys\.executable", path.read_text()):
            offenders.append(rel)
    assert not offenders, f"move command-line contracts to tests/cli or call the function in process: {offenders}"
