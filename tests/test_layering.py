"""The package layout's import rules, read from the source with `ast` (nothing under test is imported).

The layers, lowest first; each imports only the layers listed for it:

    _kernels   private memory and compiled helpers         imports no other part of chainrule
    autograd   the engine                                  _kernels
    nn         layers, losses, recurrent kernels           autograd, _kernels
    optim      optimizers and schedules                    autograd, _kernels  (takes parameters, not modules)
    insight    graph drawings, gradient flow               autograd and nn, through their packages' public names
    charlm     the application and the command line        anything; nothing imports it

The root package's own modules (`chainrule/__init__.py`, `__main__.py` and the compatibility names `viz`,
`diagnostics`, `torch_export`) sit on top and may import any layer; no layer imports them. Further:

- no `_private` name crosses from one package into another (`_kernels` itself is private to chainrule, and
  open to the layers above it);
- no import circles, counting every import between chainrule modules, at module level or inside a function
  (those under `if TYPE_CHECKING:` aside);
- the engine has no imports inside functions and none below the first definition of a module;
- elsewhere an import inside a function is for a module that imports numba (compiled kernels), for a
  recurrent-kernel backend (`nn/kernels/*_backend.py`, the one the run chooses), or for a third-party
  package that only some features need (numba, safetensors, tqdm, matplotlib, torch), all loaded on first
  use so that `import chainrule` stays fast; and within `charlm` and the root's `__main__`, whose command
  line loads only what the command it runs needs (and catches Ctrl-C while it does).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT_PACKAGE = "chainrule"
ALLOWED = {
    "_kernels": set(),
    "autograd": {"_kernels"},
    "nn": {"autograd", "_kernels"},
    "optim": {"autograd", "_kernels"},
    "insight": {"autograd", "nn"},
    "charlm": {"_kernels", "autograd", "nn", "optim", "insight"},
}
# what insight may import: the packages themselves, whose __init__ says what is public
INSIGHT_SOURCES = {"chainrule.autograd", "chainrule.nn"}
OPTIONAL_THIRD_PARTY = {"numba", "llvmlite", "safetensors", "tqdm", "matplotlib", "torch", "cupy", "cupyx"}
# the command line loads what the command it runs needs: charlm, and the root's `__main__` that starts it
LAZY_LOADERS = {"charlm", ""}


@dataclass(frozen=True)
class Import:
    importer: str             # dotted module name of the importing file
    target: str               # the chainrule module imported (or the module a name is taken from)
    names: tuple[str, ...]    # names taken from `target` ("" for `import target` / a submodule import)
    line: int
    in_function: bool
    type_checking: bool
    after_definitions: bool   # a module-level import below the module's first def or class


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((SRC / ROOT_PACKAGE).rglob("*.py"))}


def package_of(module: str) -> str:
    """The layer a module belongs to: "autograd" for chainrule.autograd.engine, "" for the root's own modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (SRC / ROOT_PACKAGE / parts[1]).is_dir()) else ""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _third_party_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[tuple[str, str]]:
    """(target module, name) pairs for the chainrule modules an import statement reaches."""
    if isinstance(node, ast.Import):
        return [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == ROOT_PACKAGE]
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        base = importer.split(".")
        base = base if is_package else base[:-1]
        base = base[:len(base) - (node.level - 1)]
        full = ".".join(base + ([node.module] if node.module else []))
    else:
        full = node.module or ""
    if full.split(".")[0] != ROOT_PACKAGE:
        return []
    pairs = []
    for alias in node.names:
        submodule = f"{full}.{alias.name}"
        pairs.append((submodule, "") if submodule in MODULES else (full, alias.name))
    return pairs


def read_imports(module: str) -> tuple[list[Import], ast.Module]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    imports: list[Import] = []
    seen_definition = False

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target, name in _resolve(module, node):
                imports.append(Import(module, target, (name,), node.lineno, in_function, type_checking,
                                      seen_definition and not in_function))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, True)
            for child in node.orelse:
                visit(child, in_function, type_checking)
            return
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    for statement in tree.body:
        visit(statement, False, False)
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            seen_definition = True
    return imports, tree


IMPORTS: dict[str, list[Import]] = {}
TREES: dict[str, ast.Module] = {}
for _module in MODULES:
    IMPORTS[_module], TREES[_module] = read_imports(_module)
ALL_IMPORTS = [item for items in IMPORTS.values() for item in items]
COMPILED = {module for module, tree in TREES.items() if "numba" in _third_party_imports(tree)}
KERNEL_BACKENDS = {module for module in MODULES if module.startswith("chainrule.nn.kernels.")
                   and module.endswith("_backend")}


def where(item: Import) -> str:
    return f"{MODULES[item.importer].relative_to(SRC.parent)}:{item.line}"


def test_the_layout_exists():
    for package in ALLOWED:
        assert (SRC / ROOT_PACKAGE / package / "__init__.py").is_file(), package
    assert len(ALL_IMPORTS) > 50  # the reader found the imports


def test_each_layer_imports_only_the_layers_below_it():
    violations = []
    for item in ALL_IMPORTS:
        source, target = package_of(item.importer), package_of(item.target)
        if source == target or source == "":
            continue
        if target == "":
            violations.append(f"{where(item)}: {item.importer} imports the root package's {item.target}")
        elif target not in ALLOWED[source]:
            violations.append(f"{where(item)}: {source} may not import {target} ({item.target})")
    assert not violations, "\n".join(violations)


def test_nothing_imports_charlm_and_kernels_import_nothing():
    outside = [f"{where(i)}: {i.target}" for i in ALL_IMPORTS
               if package_of(i.target) == "charlm" and package_of(i.importer) not in ("charlm", "")]
    assert not outside
    kernels = [f"{where(i)}: {i.target}" for i in ALL_IMPORTS
               if package_of(i.importer) == "_kernels" and package_of(i.target) != "_kernels"]
    assert not kernels


def test_insight_uses_the_public_names_of_autograd_and_nn():
    violations = [f"{where(i)}: from {i.target}" for i in ALL_IMPORTS
                  if package_of(i.importer) == "insight" and package_of(i.target) != "insight"
                  and i.target not in INSIGHT_SOURCES]
    assert not violations, "\n".join(violations)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_crosses_a_package_boundary():
    violations = []
    for item in ALL_IMPORTS:
        if package_of(item.importer) == package_of(item.target):
            continue
        hidden = [part for part in item.target.split(".")[1:] if _private(part) and part != "_kernels"]
        hidden += [name for name in item.names if _private(name)]
        if hidden:
            violations.append(f"{where(item)}: {item.target} {hidden}")
    # `module._name` through a module imported from another package
    for module, tree in TREES.items():
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for (target, name), alias in zip(_resolve(module, node), node.names):
                    if not name and package_of(target) != package_of(module):
                        aliases[alias.asname or alias.name] = target
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _private(node.attr)):
                violations.append(f"{module}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    assert not violations, "\n".join(violations)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself): Tarjan's
    algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    cycles.append(sorted(component))
    return cycles


def test_find_cycles_finds_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for item in ALL_IMPORTS:
        if not item.type_checking and item.target != item.importer:
            edges[item.importer].add(item.target)
    assert find_cycles(edges) == []


def test_the_engine_imports_at_the_top_of_its_modules():
    violations = [f"{where(i)}: {i.target}" for i in ALL_IMPORTS
                  if package_of(i.importer) == "autograd" and (i.in_function or i.after_definitions)]
    for module, tree in TREES.items():
        if package_of(module) != "autograd":
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        violations.append(f"{module}:{inner.lineno}: an import inside {node.name}()")
    assert not violations, "\n".join(violations)


def test_imports_inside_functions_are_for_optional_dependencies():
    violations = []
    for item in ALL_IMPORTS:
        if (item.in_function and item.target not in COMPILED | KERNEL_BACKENDS
                and package_of(item.importer) not in LAZY_LOADERS):
            violations.append(f"{where(item)}: {item.target} (neither imports numba nor is a kernel backend)")
    for module, tree in TREES.items():
        if package_of(module) in LAZY_LOADERS:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                names = ([alias.name for alias in inner.names] if isinstance(inner, ast.Import) else
                         [inner.module] if isinstance(inner, ast.ImportFrom) and inner.level == 0 else [])
                for name in names:
                    top = (name or "").split(".")[0]
                    if top != ROOT_PACKAGE and top not in OPTIONAL_THIRD_PARTY and top not in sys.stdlib_module_names:
                        violations.append(f"{module}:{inner.lineno}: {name} imported inside {node.name}()")
    assert not violations, "\n".join(violations)


def test_no_module_level_import_below_a_definition():
    violations = [f"{where(i)}: {i.target}" for i in ALL_IMPORTS if i.after_definitions and not i.type_checking]
    assert not violations, "\n".join(violations)


def _modules_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                            capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_import_chainrule_loads_neither_the_application_nor_the_pictures():
    loaded = _modules_after("import chainrule")
    assert "chainrule.autograd.engine" in loaded and "chainrule.nn" in loaded and "chainrule.optim" in loaded
    unwanted = sorted(m for m in loaded if m.split(".")[:2] in (["chainrule", "charlm"], ["chainrule", "insight"])
                      or m in ("chainrule.viz", "chainrule.diagnostics", "chainrule.torch_export"))
    assert unwanted == []
    assert not {"numba", "matplotlib", "safetensors", "tqdm", "torch", "pydantic"} & loaded


def test_insight_and_the_old_names_are_attributes_loaded_on_first_use():
    loaded = _modules_after("import chainrule as cr\nassert cr.insight.draw_graph is cr.viz.draw_graph\n"
                            "assert cr.diagnostics.gradient_flow is cr.insight.gradient_flow")
    assert "chainrule.insight.graph" in loaded and "chainrule.charlm" not in loaded
    import chainrule as cr
    with pytest.raises(AttributeError, match="no attribute 'vizz'"):
        cr.vizz  # noqa: B018


def test_old_import_paths_keep_working():
    from chainrule.charlm import load_model
    from chainrule.charlm.export import to_torch as new_to_torch
    from chainrule.charlm.model import load_model as new_load_model
    from chainrule.diagnostics import gradient_flow
    from chainrule.insight import draw_graph as new_draw_graph
    from chainrule.insight import gradient_flow as new_gradient_flow
    from chainrule.torch_export import to_torch
    from chainrule.viz import draw_graph
    assert (draw_graph, gradient_flow, to_torch, load_model) == (new_draw_graph, new_gradient_flow, new_to_torch,
                                                                   new_load_model)


def test_insight_reads_no_private_attribute_of_the_engine_objects():
    # tensors and nodes are read through their public names (grad_fn, inputs, scope, name), so the engine
    # may change its internals without breaking the drawings and the measurements
    violations = []
    for module, tree in TREES.items():
        if package_of(module) != "insight":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                violations.append(f"{module}:{node.lineno}: .{node.attr}")
    assert not violations, "\n".join(violations)
