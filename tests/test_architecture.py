"""Stage boundaries (DESIGN.md), read from the source with ``ast``.

Four rules: (a) imports point down the stages; (b) a stage imports only the public names of another
stage (its ``__all__``), never its ``_private`` modules; (c) ``serving`` calls ``workflows`` only;
(d) no import cycle among the package's modules, counting imports inside functions. The root
modules (``retention.exceptions``, ``_settings``, ``_progress``, ``_lazy``) may be imported from
anywhere and import no stage.

Every check is a function of a package folder, so the self-tests at the end run it on a small fake
package written under ``tmp_path`` and show that it can fail.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

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
#: root modules every stage may import (after the package name)
ROOT_MODULES = ("exceptions", "_settings", "_progress", "_lazy")


# ------------------------------------------------------------------------------------------------
# the import graph


@dataclass(frozen=True)
class Import:
    """One module loaded by one import statement of the package."""

    path: Path  # the importing file
    source: str  # the importing module, dotted
    target: str  # the module the statement loads (the deepest one that exists in the package)
    names: tuple[str, ...]  # with ``from target import ...``: the names that are not modules
    line: int
    runtime: bool  # False under ``if TYPE_CHECKING:``

    def where(self, root: Path) -> str:
        return f"{root.name}/{self.path.relative_to(root).as_posix()}:{self.line}"


def package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under the package folder ``root``."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([root.name, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    tree: ast.AST, runtime: bool = True
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, at any depth (functions too), and whether it runs at run time."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, runtime
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for node in child.body:
                yield from _import_nodes(ast.Module(body=[node], type_ignores=[]), False)
            for node in child.orelse:
                yield from _import_nodes(ast.Module(body=[node], type_ignores=[]), runtime)
        else:
            yield from _import_nodes(child, runtime)


def _absolute(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _deepest(name: str, modules: Collection[str]) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def package_imports(root: Path) -> list[Import]:
    """Every import of one of the package's own modules, in every module of the package."""
    modules = package_modules(root)
    found: list[Import] = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, runtime in _import_nodes(tree):
            here = {"path": path, "source": source, "line": node.lineno, "runtime": runtime}
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (target := _deepest(alias.name, modules)) is not None:
                        found.append(Import(target=target, names=(), **here))
                continue
            module = _absolute(node, source, is_package)
            if (target := _deepest(module, modules)) is None:
                continue
            names = []
            for alias in node.names:
                if target == module and f"{module}.{alias.name}" in modules:
                    found.append(Import(target=f"{module}.{alias.name}", names=(), **here))
                else:
                    names.append(alias.name)
            if names or target != module:
                found.append(Import(target=target, names=tuple(names), **here))
    return found


def _by_place(lines: list[str]) -> list[str]:
    """Violations sorted by file, then line number (``path:line: message``)."""

    def place(line: str) -> tuple[str, int]:
        path, number, _ = line.split(":", 2)
        return path, int(number)

    return sorted(lines, key=place)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def _is_root_module(module: str, package: str) -> bool:
    return module == package or module in {f"{package}.{m}" for m in ROOT_MODULES}


# ------------------------------------------------------------------------------------------------
# the four checks: each returns one line per violation


def backwards_imports(root: Path) -> list[str]:
    """(a) Imports that point up the stages, and root modules that import a stage."""
    bad = []
    for imp in package_imports(root):
        source, target = _stage(imp.source), _stage(imp.target)
        if target is None or imp.source in {root.name, f"{root.name}.__main__"}:
            continue  # the package's __init__ exposes the stages, its __main__ runs the CLI
        if source is None:
            bad.append(f"{imp.where(root)}: root module {imp.source} imports {imp.target}")
        elif ORDER.index(target) > ORDER.index(source):
            bad.append(
                f"{imp.where(root)}: {source} imports {imp.target}, a later stage ({target})"
            )
    return _by_place(bad)


def private_imports(root: Path, exports: Mapping[str, Collection[str]] | None = None) -> list[str]:
    """(b) Imports of another stage's private module or name (or, given ``exports``, a name that
    is not in that stage's ``__all__``), and of a private root module other than the shared ones.
    """
    package = root.name
    bad = []
    for imp in package_imports(root):
        source, target = _stage(imp.source), _stage(imp.target)
        if target is None:
            if not _is_root_module(imp.target, package) and source is not None:
                bad.append(
                    f"{imp.where(root)}: {imp.source} imports {imp.target}, a root module no "
                    f"stage may use; only {', '.join(ROOT_MODULES)} are shared"
                )
            continue
        if target == source:
            continue
        fix = f"import the name from {package}.{target} (add it to its __all__)"
        if any(part.startswith("_") for part in imp.target.split(".")[2:]):
            bad.append(
                f"{imp.where(root)}: {imp.source} imports {imp.target}, a private module of "
                f"{target}; {fix}"
            )
            continue
        private = [n for n in imp.names if n.startswith("_")]
        if exports is not None and imp.target == f"{package}.{target}":
            private += [n for n in imp.names if n not in exports.get(target, ()) and n != "*"]
        if private:
            bad.append(
                f"{imp.where(root)}: {imp.source} imports {', '.join(sorted(set(private)))} from "
                f"{imp.target}, not in the public names of {target}; {fix}"
            )
    return _by_place(bad)


def serving_imports(root: Path) -> list[str]:
    """(c) Imports in ``serving`` of anything but ``workflows``, serving itself and root modules."""
    package = root.name
    bad = []
    for imp in package_imports(root):
        if _stage(imp.source) != "serving" or _stage(imp.target) in {"serving", "workflows"}:
            continue
        if not _is_root_module(imp.target, package):
            bad.append(
                f"{imp.where(root)}: {imp.source} imports {imp.target}; serving calls "
                f"{package}.workflows only (re-export what it needs there)"
            )
    return _by_place(bad)


def import_cycles(root: Path) -> list[str]:
    """(d) Cycles in the graph of run-time imports (module level or inside functions).

    One line per strongly connected group of modules, showing one cycle through it.
    """
    graph: dict[str, set[str]] = {m: set() for m in package_modules(root)}
    for imp in package_imports(root):
        if imp.runtime and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return sorted(" -> ".join(_one_cycle(graph, group)) for group in groups)


def _one_cycle(graph: Mapping[str, set[str]], group: list[str]) -> list[str]:
    """The shortest cycle through the first module of a strongly connected group."""
    members, start = set(group), group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


# ------------------------------------------------------------------------------------------------
# the package


def _public_names() -> dict[str, list[str]]:
    return {stage: list(getattr(retention, stage).__all__) for stage in ORDER}


def test_imports_point_down_the_stages() -> None:
    bad = backwards_imports(ROOT)
    assert not bad, "imports that point backwards:\n" + "\n".join(bad)


def test_no_stage_imports_another_stages_private_names() -> None:
    bad = private_imports(ROOT, _public_names())
    assert not bad, "imports of another stage's private modules or names:\n" + "\n".join(bad)


def test_serving_calls_only_workflows() -> None:
    bad = serving_imports(ROOT)
    assert not bad, "serving imports beside workflows:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    cycles = import_cycles(ROOT)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_graph_sees_the_package() -> None:
    imports = package_imports(ROOT)
    edges = {(i.source, i.target) for i in imports}
    # a module-level import, a lazy one inside a function, and a ``from package import module``
    assert ("retention.models", "retention.models._gbdt") in edges
    assert ("retention.serving.cli", "retention.serving.cli._predict") in edges
    assert any(
        i.source == "retention.serving.cli._predict" and i.target == "retention.serving.report"
        for i in imports
    )
    assert all(not i.runtime for i in imports if i.source == "retention" and _stage(i.target))


def test_root_exposes_stages_and_version() -> None:
    assert retention.__all__ == ["__version__", *ORDER]
    assert retention.__version__ == importlib.metadata.version("retention")
    for stage in ORDER:
        module = getattr(retention, stage)
        assert isinstance(module, ModuleType)
        assert module is importlib.import_module(f"retention.{stage}")
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = retention.nonsense  # type: ignore[attr-defined]


@pytest.mark.parametrize("stage", ORDER)
def test_every_public_name_resolves(stage: str) -> None:
    module = importlib.import_module(f"retention.{stage}")
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"retention.{stage}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"retention.{stage}.__all__ names what it does not define: {missing}"


# ------------------------------------------------------------------------------------------------
# the checks can fail: probes in a fake package under tmp_path


def _fake_package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    """A package ``retention`` under ``tmp_path``: every stage, the root modules, and ``files``."""
    root = tmp_path / "retention"
    for stage in ORDER:
        (root / stage).mkdir(parents=True)
        (root / stage / "__init__.py").write_text('"""A stage."""\n', encoding="utf-8")
    (root / "__init__.py").write_text("", encoding="utf-8")
    for name in ROOT_MODULES:
        (root / f"{name}.py").write_text("", encoding="utf-8")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


CLEAN = {
    "features/_frame.py": "from retention.exceptions import DataError\n",
    "features/__init__.py": "from retention.features._frame import CutoffFrame\n",
    # a cycle only through ``if TYPE_CHECKING:`` is none
    "models/_base.py": (
        "from typing import TYPE_CHECKING\n"
        "from retention.features import CutoffFrame\n"
        "if TYPE_CHECKING:\n"
        "    from retention.models._gbdt import GBDT\n"
    ),
    "models/_gbdt.py": (
        "from . import _base\ndef fit():\n    from retention.features import CutoffFrame\n"
    ),
    "workflows/_predict.py": "import retention.models\nfrom retention._progress import track\n",
    "serving/cli.py": "from retention import workflows\nfrom retention.exceptions import Error\n",
}


def test_a_clean_fake_package_passes(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, CLEAN)
    assert backwards_imports(root) == []
    assert private_imports(root, {"features": ["CutoffFrame"]}) == []
    assert serving_imports(root) == []
    assert import_cycles(root) == []
    assert not list(ROOT.rglob("*probe*"))  # nothing was written into the package


def test_the_checker_sees_a_backwards_import(tmp_path: Path) -> None:
    probe = {
        "data/_probe.py": "from retention.models import get_model\n",
        "features/_lazy_probe.py": "def f():\n    import retention.explain._x\n",
        "_settings.py": "from retention import serving\n",
    }
    bad = backwards_imports(_fake_package(tmp_path, {**CLEAN, **probe}))
    assert bad == [
        "retention/_settings.py:1: root module retention._settings imports retention.serving",
        "retention/data/_probe.py:1: data imports retention.models, a later stage (models)",
        "retention/features/_lazy_probe.py:2: features imports retention.explain, a later stage "
        "(explain)",
    ]


def test_the_checker_sees_a_private_cross_stage_import(tmp_path: Path) -> None:
    probe = {
        "features/_text.py": "def serialise_history(): ...\n",
        "models/_p1.py": "from retention.features._text import serialise_history\n",
        "models/_p2.py": "def f():\n    import retention.features._text as t\n",
        "models/_p3.py": "from retention.features import _text, CutoffFrame\n",
        "models/_p4.py": "from retention.features import _resolve, build\n",
        "models/_p5.py": "from retention._secret import x\n",
    }
    root = _fake_package(tmp_path, {**CLEAN, **probe})
    bad = private_imports(root, {"features": ["CutoffFrame"]})
    assert [line.split(":")[0] for line in bad] == [
        "retention/models/_p1.py",
        "retention/models/_p2.py",
        "retention/models/_p3.py",
        "retention/models/_p4.py",
    ]
    assert "a private module of features" in bad[0] and "retention.features._text" in bad[2]
    assert "imports _resolve, build from retention.features" in bad[3]
    # without the public names only the underscore is private, and a root _module is refused
    (root / "_secret.py").write_text("x = 1\n", encoding="utf-8")
    bad = private_imports(root)
    assert "imports _resolve from retention.features" in bad[3]
    assert bad[4].startswith("retention/models/_p5.py:1: retention.models._p5 imports")


def test_the_checker_sees_serving_import_models(tmp_path: Path) -> None:
    probe = {
        "models/_metrics.py": "class BacktestResult: ...\n",
        "serving/report/_backtest.py": (
            "import retention\nfrom retention.models import BacktestResult\n"
            "from retention.workflows import score\n"
            "def f():\n    from retention.features import cohort_retention\n"
        ),
    }
    bad = serving_imports(_fake_package(tmp_path, {**CLEAN, **probe}))
    assert [line.split(";")[0] for line in bad] == [
        "retention/serving/report/_backtest.py:2: retention.serving.report._backtest imports "
        "retention.models",
        "retention/serving/report/_backtest.py:5: retention.serving.report._backtest imports "
        "retention.features",
    ]


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    probe = {
        "workflows/_explain.py": "from retention.workflows._predict import RISK_BANDS\n",
        "workflows/_predict.py": (
            "def score():\n    from retention.workflows._explain import write_reasons\n"
        ),
        # a three-module cycle through relative imports
        "explain/_a.py": "from ._b import x\n",
        "explain/_b.py": "from . import _c\n",
        "explain/_c.py": "from .. import explain\n",
        "explain/__init__.py": "from retention.explain._a import x\n",
    }
    assert import_cycles(_fake_package(tmp_path, {**CLEAN, **probe})) == [
        "retention.explain -> retention.explain._a -> retention.explain._b -> "
        "retention.explain._c -> retention.explain",
        "retention.workflows._explain -> retention.workflows._predict -> "
        "retention.workflows._explain",
    ]
