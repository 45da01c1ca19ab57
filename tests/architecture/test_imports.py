"""The import graphs: the layer holds only what runs in Lambda and the domain owns its interfaces; the
dev packages (``src/billing_local``, ``src/billing_cli``) and the client (``usage_tracker``) have no
import cycles and no private imports across modules; the local runtime never imports the CLI; the
client needs only the standard library.

Walks every module's ``import`` statements (top level and inside functions, since adapters are imported
lazily) without importing anything; the last two tests import in a fresh interpreter, to see what a cold
start loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

LAYER = PROJECT_ROOT / "layers/billing"
SRC = PROJECT_ROOT / "src"
CLIENT = PROJECT_ROOT / "clients/python"
DEV_ONLY = {"billing_local", "billing_cli", "typer", "rich", "moto", "chdb", "pytest", "hypothesis"}
# Each checked package and the folder its import path starts from.
PACKAGES = {"billing": LAYER, "billing_local": SRC, "billing_cli": SRC, "usage_tracker": CLIENT}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _from_base(node: ast.ImportFrom, name: str, path: Path) -> str:
    """The absolute module of ``from BASE import ...`` in module ``name`` (relative imports resolved)."""
    base = node.module or ""
    if node.level:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    return base


def imports_of(path: Path, name: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against ``name``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, path)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules_of(package: str) -> dict[str, Path]:
    root = PACKAGES[package]
    return {module_name(p, root): p for p in (root / package).rglob("*.py")}


def graph_of(package: str) -> dict[str, set[str]]:
    return {name: imports_of(path, name) for name, path in modules_of(package).items()}


def layer_graph() -> dict[str, set[str]]:
    return graph_of("billing")


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


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of the package's own import graph meets, as module paths."""
    internal = _internal(graph)
    # A package's __init__ importing its own submodules is not a cycle of the design.
    for name in internal:
        internal[name] = {i for i in internal[name] if not i.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(internal[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(internal):
        if node not in state:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    assert import_cycles(layer_graph()) == []


# ------------------------------------------------------------------------- dev packages and the client
CHECKED = ["billing_local", "billing_cli", "usage_tracker"]


@pytest.mark.parametrize("package", CHECKED)
def test_a_dev_package_or_the_client_has_no_import_cycle(package: str) -> None:
    # Given the package's import graph (imports inside functions included)
    graph = graph_of(package)
    # When its cycles are searched
    cycles = import_cycles(graph)
    # Then there are none: two modules that need each other are one module, or share a third
    assert cycles == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def first_party_modules() -> set[str]:
    return {m for package in PACKAGES for m in modules_of(package)}


def private_uses(path: Path, name: str, first_party: set[str]) -> set[str]:
    """What module ``name`` (at ``path``) takes that is private elsewhere (the rule: the test below)."""
    found: set[str] = set()

    def module(target: str) -> None:
        top, *rest = target.split(".")
        if top in PACKAGES and top != name.split(".")[0] and any(map(_private, rest)):
            found.add(target)

    def attribute(owner: str, attr: str) -> None:
        if owner not in first_party or not _private(attr):
            return
        if f"{owner}.{attr}" in first_party:
            module(f"{owner}.{attr}")
        elif owner != name:
            found.add(f"{owner}.{attr}")

    tree = ast.parse(path.read_text(), str(path))
    bound: dict[str, str] = {}  # local name -> the module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module(alias.name)
                top = alias.name.split(".")[0]
                bound[alias.asname or top] = alias.name if alias.asname else top  # import a.b binds a
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, path)
            module(base)
            for alias in node.names:
                attribute(base, alias.name)
                if f"{base}.{alias.name}" in first_party:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            value: ast.expr = node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                attribute(".".join([bound[value.id], *chain]), node.attr)
    return found


@pytest.mark.parametrize("package", CHECKED)
def test_no_module_takes_what_another_module_keeps_private(package: str) -> None:
    """The rule, for every module of the package (tests/ are not checked):

    - a name with one leading underscore (dunders are public) is private to the module defining it:
      ``from m import _name``, and ``m._name`` on a module ``m`` bound by an import, are forbidden in
      any other module of the project (the layer's ``billing``, ``billing_local``, ``billing_cli``,
      ``usage_tracker``); when ``m._name`` is itself a module, the next rule decides;
    - a module whose dotted path has a component with one leading underscore is private to its
      top-level package: ``import p._m``, ``from p._m import Name``, ``from p import _m`` (and their
      relative forms) are allowed within package ``p`` only, so ``usage_tracker.tracker`` imports
      ``usage_tracker._spool`` and ``billing_cli`` may not;
    - third-party libraries' private names are theirs to keep stable and are not checked.
    """
    # Given the package's modules and every module of the project
    first_party = first_party_modules()
    # When each one's imports, and attributes of the modules it imported, are read
    offenders = {
        name: sorted(uses)
        for name, path in modules_of(package).items()
        if (uses := private_uses(path, name, first_party))
    }
    # Then none takes another module's private name or another package's private module: what two
    # modules share is public in one of them
    assert offenders == {}


def test_the_local_runtime_never_imports_the_cli() -> None:
    # Given every module of billing_local
    graph = graph_of("billing_local")
    # When its imports are read
    offenders = {
        name: sorted(i for i in imported if i.split(".")[0] == "billing_cli")
        for name, imported in graph.items()
    }
    # Then none is the CLI's: the CLI imports the local runtime, what the runtime needs of it is passed in
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_client_imports_only_the_standard_library_and_itself() -> None:
    # Given every module of the usage_tracker client (what customers install)
    graph = graph_of("usage_tracker")
    # When its imports are read
    allowed = set(sys.stdlib_module_names) | {"usage_tracker"}
    offenders = {
        name: sorted(i for i in imported if i.split(".")[0] not in allowed)
        for name, imported in graph.items()
    }
    # Then each is the standard library's or its own: the client installs with no dependency
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_package_root_holds_only_its_map() -> None:
    # Given the layer package's root folder
    root = LAYER / "billing"
    # Then its only module is __init__.py (every other module lives in the package of its context)
    assert sorted(p.name for p in root.glob("*.py")) == ["__init__.py"]


def _fresh(code: str) -> str:
    """What ``code`` prints, run in a fresh interpreter (nothing imported by the test session)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_reading_settings_does_not_import_the_dunning_service() -> None:
    # Given a fresh interpreter, as on a cold start
    # When it imports the settings (their retry default comes from billing.dunning.schedule)
    loaded = _fresh(
        "import sys, billing.runtime.settings; "
        "print(sorted(m for m in sys.modules if m.startswith('billing.') and m not in "
        "('billing.runtime', 'billing.runtime.settings', 'billing.dunning', 'billing.dunning.schedule')))"
    )
    # Then nothing else of the package is loaded (the dunning package imports none of its modules)
    assert loaded == "[]"


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


MAX_MODULE_LINES = 400


def test_no_layer_module_is_long_without_saying_why() -> None:
    # Given every module of the layer package
    long_unexplained = {}
    for path in sorted(LAYER.rglob("*.py")):
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        # Then one longer than MAX_MODULE_LINES states why in a "Length:" paragraph of its docstring
        if lines > MAX_MODULE_LINES and "\nLength: " not in f"\n{docstring}":
            long_unexplained[str(path.relative_to(LAYER))] = lines
    assert long_unexplained == {}
