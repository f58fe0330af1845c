"""The project stays readable: a short README, docs whose links resolve, no dates a reader
outside the team cannot decode, and the module boundaries docs/design.md describes."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfclf"
SKIPPED_DIRS = {".git", ".venv", "venv", "runs", "build", "dist", "__pycache__"}
TEXT_SUFFIXES = {".py", ".md", ".flags", ".cfg", ".toml", ".sh", ".txt", ".yml", ".yaml", ""}


def _text_files():
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIPPED_DIRS or any(
            p.endswith(".egg-info") or p.startswith(".ruff") for p in parts
        ):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            yield path


def _package_modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_readme_is_short():
    assert len((ROOT / "README.md").read_bytes()) <= 6 * 1024


def test_nothing_is_dated_by_session():
    """Things are dated by version and date (CHANGELOG.md, git tags); a "session N" means
    nothing outside the team."""
    pattern = re.compile(r"\bsessions? [0-9]", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _text_files()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not found, found


def _markdown_files():
    return [ROOT / "README.md", ROOT / "BUILD_NOTES.md", ROOT / "CHANGELOG.md"] + sorted(
        (ROOT / "docs").rglob("*.md")
    )


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    broken = [link for link in links if "://" not in link and not (path.parent / link).exists()]
    assert not broken, broken


def test_docs_name_every_registered_model():
    from tfclf.models import list_models

    text = (ROOT / "docs" / "models.md").read_text()
    missing = [name for name in list_models() if f"`{name}`" not in text]
    assert not missing, f"{missing}: regenerate with python -m tfclf.models --markdown"


def test_changelog_leads_with_this_version_and_dates_each_entry():
    import tfclf

    headings = re.findall(
        r"^## (\S+) \((\d{4}-\d{2}-\d{2})\)$", (ROOT / "CHANGELOG.md").read_text(), re.M
    )
    assert headings and headings[0][0] == tfclf.__version__
    entries = re.findall(r"^## .*$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert len(entries) == len(headings), entries  # every entry dated


# the command-line modules: they may import tfclf/cli.py and read FLAGS
CLI_MODULES = {
    "cli.py",
    "train.py",
    "evaluate.py",
    "predict.py",
    "results.py",
    "compress/__main__.py",
    "models/__main__.py",
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_library_modules_do_not_import_the_cli():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in _package_modules()
        if str(path.relative_to(PACKAGE)) not in CLI_MODULES and "tfclf.cli" in _imports(path)
    ]
    assert not offenders, offenders


RUN_DIR_NAMES = {
    "flags.txt",
    "best_model",
    "model.keras",
    "model_card.json",
    "classes.json",
    "normalizer.json",
    "metrics.json",
    "history.json",
}


def test_only_rundir_spells_the_run_directory_layout():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}"
        for path in _package_modules()
        if path.name != "rundir.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in RUN_DIR_NAMES
    ]
    assert not offenders, offenders


def test_no_function_is_over_80_lines():
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path in _package_modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not long, long
