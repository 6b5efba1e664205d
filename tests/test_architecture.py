"""The import contracts in pyproject.toml ([tool.importlinter]) hold: ml imports no Django or
webapp, webapp reaches ml only through webapp.ml_gateway (ml.types and ml.images aside), the
gateway imports no app, the learning and catalog jobs' tasks sit above the services they run,
catalog imports none of the apps built on it (they hear of its changes through
webapp.catalog.signals), the audit trail imports no app, and ml's layers point one way.
``make lint`` runs the same check. Beside them, no new import circle appears among webapp's
modules, counting the imports inside functions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]

# Circles not yet broken (issue 16: the catalogue import's services, the history import's
# services and the sweeper, the match request's services and task). A circle may shrink or
# go; none may grow or appear.
KNOWN_CIRCLES = [
]


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a dev dependency: pip install -e '.[dev]'"
    out = subprocess.run(
        [lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and out.stdout.count("KEPT") == 8


def _circles(graph: grimp.ImportGraph, package: str) -> list[set[str]]:
    """The strongly connected components (two modules or more) of `package`'s modules."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in modules)
             for m in modules}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iteratively (no recursion limit)
        work = [(start, iter(edges[start]))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)

    for module in modules:
        if module not in order:
            visit(module)
    return found


def test_circle_finder_sees_imports_inside_functions(tmp_path, monkeypatch) -> None:
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circled import b\n")
    (package / "b.py").write_text("def f():\n    from circled import a\n")
    (package / "c.py").write_text("from circled import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circled", cache_dir=None)
    assert _circles(graph, "circled") == [{"circled.a", "circled.b"}]


def test_no_new_import_circle_in_webapp() -> None:
    import webapp

    assert Path(webapp.__file__).resolve().parent == REPO / "webapp"
    graph = grimp.build_graph("webapp", cache_dir=None)
    new = [sorted(c) for c in _circles(graph, "webapp")
           if not any(c <= known for known in KNOWN_CIRCLES)]
    assert not new, f"import circles (counting imports inside functions): {new}"


def test_every_gateway_name_resolves_to_its_module() -> None:
    from webapp import ml_gateway

    for name in ml_gateway.__all__:
        module = import_module(f"webapp.ml_gateway.{ml_gateway._EXPORTS[name]}")
        assert getattr(ml_gateway, name) is getattr(module, name), name


def test_settings_choices_load_without_the_models() -> None:
    """Settings validates its names against the gateway's choices: that loads no torch."""
    code = ("import sys; import webapp.ml_gateway.choices; "
            "print(sorted({'torch', 'faiss', 'cv2'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
