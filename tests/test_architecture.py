"""Imports run one way down the stages (DESIGN.md); a backwards import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import retention

ROOT = Path(retention.__file__).parent
ORDER = [
    "data",
    "features",
    "models",
    "explain",
    "strategies",
    "experiments",
    "workflows",
    "serving",
]


def _stage(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if rel.parts[0] in ORDER else None


def _imported_stages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "retention":
                names += [f"retention.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "retention" and len(parts) > 1 and parts[1] in ORDER:
                found.add(parts[1])
    return found


def test_imports_point_down_the_stages() -> None:
    backwards = []
    for path in ROOT.rglob("*.py"):
        stage = _stage(path)
        if stage is None:
            continue
        for target in _imported_stages(path):
            if ORDER.index(target) > ORDER.index(stage):
                backwards.append(f"{path.relative_to(ROOT)} imports retention.{target}")
    assert not backwards, "imports that point backwards: " + "; ".join(sorted(backwards))


def test_the_checker_sees_a_backwards_import(tmp_path: Path) -> None:
    bad = ROOT / "data" / "_tmp_backwards_probe.py"
    bad.write_text("from retention.models import get_model\n", encoding="utf-8")
    try:
        assert "models" in _imported_stages(bad)
    finally:
        bad.unlink()


def test_root_modules_import_no_stage() -> None:
    for name in ("exceptions.py", "_settings.py", "_progress.py", "_lazy.py"):
        assert not _imported_stages(ROOT / name), name


def test_root_exposes_stages_and_version() -> None:
    assert retention.__version__
    assert retention.models.get_model is not None
