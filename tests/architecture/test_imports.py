"""The package's import graph: the layer holds only what runs in Lambda, and the domain owns its interfaces.

Walks every module's ``import`` statements (top level and inside functions, since adapters are imported
lazily) without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_ROOT

LAYER = PROJECT_ROOT / "layers/billing"
DEV_ONLY = {"billing_local", "billing_cli", "typer", "rich", "moto", "chdb", "pytest", "hypothesis"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against ``name``)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def layer_graph() -> dict[str, set[str]]:
    modules = {module_name(p, LAYER): p for p in LAYER.rglob("*.py")}
    return {name: imports_of(path, name) for name, path in modules.items()}


def test_the_layer_imports_no_dev_package_or_dev_library() -> None:
    # Given every module under the layer's folder
    offenders = {
        name: sorted(i for i in imported if i.split(".")[0] in DEV_ONLY)
        for name, imported in layer_graph().items()
    }
    # Then none imports the dev packages or a dev-only library
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_layer_folder_holds_no_dev_package() -> None:
    assert not (LAYER / "billing/local").exists()
    assert not (LAYER / "billing/cli").exists()


# The composition root and the adapters may import adapters; nothing else in the package may.
MAY_IMPORT_ADAPTERS = {"billing.runtime.container"}


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph restricted to the package's own modules (``from billing import x`` names module x)."""
    modules = set(graph)
    return {name: {i for i in imported if i in modules and i != name} for name, imported in graph.items()}


def test_no_domain_module_imports_an_adapter() -> None:
    # Given the domain modules (everything but billing.adapters.* and the composition root)
    graph = layer_graph()
    offenders = {
        name: sorted(i for i in imported if i == "billing.adapters" or i.startswith("billing.adapters."))
        for name, imported in graph.items()
        if not name.startswith("billing.adapters") and name not in MAY_IMPORT_ADAPTERS
    }
    # Then none of them imports an adapter: the domain declares protocols, adapters implement them
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_package_has_no_import_cycle() -> None:
    graph = _internal(layer_graph())
    # A package's __init__ importing its own submodules is not a cycle of the design.
    for name in graph:
        graph[name] = {i for i in graph[name] if not i.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_only_the_stripe_adapter_imports_the_stripe_sdk() -> None:
    # Given every module of the layer and every Lambda handler
    modules = layer_graph()
    for path in (PROJECT_ROOT / "functions").rglob("*.py"):
        name = "functions." + module_name(path, PROJECT_ROOT / "functions")
        modules[name] = imports_of(path, name)
    adapter = "billing.adapters.stripe"
    offenders = {
        name: sorted(i for i in imported if i == "stripe" or i.startswith("stripe."))
        for name, imported in modules.items()
        if name != adapter and not name.startswith(adapter + ".")
    }
    # Then only the Stripe adapter's modules import the SDK; the rest goes through StripeGateway
    assert {k: v for k, v in offenders.items() if v} == {}
