"""Every test that needs CUDA carries the `gpu` marker, so that it skips with the reason on a
machine without one (tests/conftest.py) instead of failing.

Read from the test sources (no import, no device): a test needs CUDA when its body moves
tensors or indexes to the device (`.cuda()`, `.to("cuda")`, `torch.device("cuda")`,
`use_device("gpu")`), uses Faiss' GPU classes, calls into `torch.cuda` beyond asking whether
it is there, or asserts that something lives on the GPU.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DEVICE_NAMES = {"cuda", "gpu"}
FAISS_GPU = {"StandardGpuResources", "index_cpu_to_gpu", "index_cpu_to_all_gpus", "GpuIndexFlatIP"}
CUDA_QUERIES = {"is_available", "device_count"}  # asking is fine anywhere


def _is_device_name(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.split(":")[0] in DEVICE_NAMES)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _needs_cuda(body: ast.AST) -> str | None:
    """What in `body` needs a CUDA device, or None."""
    for node in ast.walk(body):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if last == "cuda" and not node.args:
                return f"{name}()"
            if last in ("to", "use_device") and node.args and _is_device_name(node.args[0]):
                return f"{name}({node.args[0].value!r})"
            if name == "torch.device" and node.args and _is_device_name(node.args[0]):
                return f"torch.device({node.args[0].value!r})"
            if name.startswith("torch.cuda.") and last not in CUDA_QUERIES:
                return name
        if isinstance(node, ast.Attribute) and node.attr in FAISS_GPU:
            return node.attr
        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                and node.left.attr == "device"
                and any(_is_device_name(c) for c in node.comparators)):
            return f"{_dotted(node.left)} == device"
    return None


def _marks(decorators: list[ast.expr]) -> set[str]:
    names = set()
    for decorator in decorators:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = _dotted(target)
        if name.startswith("pytest.mark."):
            names.add(name.split(".")[2])
    return names


def _module_marks(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [
                node.value]
            return _marks(values)
    return set()


def unmarked_cuda_tests(source: str, filename: str = "<test>") -> list[str]:
    """`file::test: what needs CUDA` for each test in `source` that needs it unmarked."""
    tree = ast.parse(source, filename)
    module_marks = _module_marks(tree)
    found = []

    def visit(nodes: list[ast.stmt], inherited: set[str], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                visit(node.body, inherited | _marks(node.decorator_list), f"{prefix}{node.name}::")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    node.name.startswith("test"):
                if "gpu" in inherited | _marks(node.decorator_list):
                    continue
                use = _needs_cuda(node)
                if use:
                    found.append(f"{filename}::{prefix}{node.name}: {use}")

    visit(tree.body, module_marks, "")
    return found


def test_every_test_that_needs_cuda_is_marked_gpu() -> None:
    problems = []
    for path in sorted(TESTS.rglob("test_*.py")):
        problems += unmarked_cuda_tests(path.read_text(encoding="utf-8"),
                                        str(path.relative_to(TESTS.parent)))
    assert problems == [], "mark these @pytest.mark.gpu:\n" + "\n".join(problems)


def test_the_check_finds_cuda_use_and_honours_the_marker() -> None:
    unmarked = '''
import pytest, torch

def test_moves(model):
    model.cuda()

def test_index(index):
    index.use_device("gpu")

def test_lives_there(index):
    assert index.device == "gpu"

def test_resources(faiss):
    faiss.StandardGpuResources()

def test_asks_only():
    if torch.cuda.is_available():
        pass

def test_names_a_device_to_a_pure_function():
    assert resolve("auto", "cuda") == "torch"

@pytest.mark.gpu
def test_marked(x):
    x.to("cuda:0")

class TestGroup:
    def test_tensor(self):
        torch.zeros(1, device=torch.device("cuda"))
'''
    assert [p.split("::", 1)[1] for p in unmarked_cuda_tests(unmarked)] == [
        "test_moves: model.cuda()",
        "test_index: index.use_device('gpu')",
        "test_lives_there: index.device == device",
        "test_resources: StandardGpuResources",
        "TestGroup::test_tensor: torch.device('cuda')",
    ]
    module_marked = "import pytest\npytestmark = [pytest.mark.gpu]\ndef test_a(m):\n    m.cuda()\n"
    assert unmarked_cuda_tests(module_marked) == []
