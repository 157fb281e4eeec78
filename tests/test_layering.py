"""The package's layers, read from its import statements (`ast`, nothing imported): the model layer holds only the
model, its remote-code files need nothing but transformers' own dependencies, no module imports itself however
indirectly, and no two subpackages' library modules import each other. Commands (`cli.py`, `__main__.py` and the
`python -m` entries `autosam_hf.train` / `autosam_hf.predict`) are the top layer: each sits in the subpackage that
owns its work, may import any library module, and no library module imports a command."""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "autosam_hf"
MODEL = PACKAGE / "model"
# What the model layer must never reach: the code that exports, trains, publishes or evaluates a model.
NOT_FOR_THE_MODEL = ("autosam_hf.export", "autosam_hf.training", "autosam_hf.hub", "autosam_hf.evaluation")
# Where a machine's CPU is sniffed for a speed policy (`autosam_hf.runtime`), never in the model.
CPU_SNIFFING = ("get_cpu_capability", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "platform.machine")
# The classes transformers' remote code names in `auto_map`; save_pretrained copies their files and every file
# those import relatively.
REMOTE_CODE_ROOTS = ("configuration_autosam", "modeling_autosam", "image_processing_autosam")
# transformers, torch and what transformers itself needs (huggingface_hub; numpy and PIL for image processors);
# timm only for timm backbones, imported where one is built.
REMOTE_CODE_PACKAGES = {"transformers", "torch", "huggingface_hub", "numpy", "PIL", "timm"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
# `python -m autosam_hf.train` (what `accelerate launch -m` runs) and `python -m autosam_hf.predict`.
COMMAND_ENTRIES = ("autosam_hf.train", "autosam_hf.predict")


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in `path`, relative ones resolved: `from . import x` names the
    module `x` when it is one, `from .m import name` names `m`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imports = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            imports += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                imports.append((submodule if submodule in MODULES else module, node.lineno))
    return imports


def node_of(module: str) -> str | None:
    """The layer `module` belongs to: `autosam_hf.<subpackage or top-level module>`, the package itself, or None
    outside the package."""
    parts = module.split(".")
    if parts[0] != "autosam_hf":
        return None
    return ".".join(parts[:2])


def is_command(module: str) -> bool:
    """A subpackage's `cli` or `__main__`, or a `python -m` entry (`autosam_hf.cli` is the commands' shared
    conventions, a library module)."""
    parts = module.split(".")
    return (len(parts) == 3 and parts[2] in ("cli", "__main__")) or module in COMMAND_ENTRIES


def test_the_model_layer_imports_only_itself_and_sniffs_no_cpu():
    for path in sorted(MODEL.glob("*.py")):
        source = path.read_text()
        for module, line in imported_modules(path):
            assert not module.startswith(NOT_FOR_THE_MODEL), f"{path.name}:{line} imports {module}"
            assert node_of(module) in (None, "autosam_hf.model"), f"{path.name}:{line} imports {module}"
            assert module != "importlib", f"{path.name}:{line}: no import by name (remote code must not need one)"
        assert "__import__" not in source, f"{path.name}: no import by name"
        for word in CPU_SNIFFING:
            assert word not in source, f"{path.name} reads {word}: CPU policy belongs in autosam_hf.runtime"


def test_remote_code_files_need_only_transformers_and_each_other():
    pending, seen = [f"autosam_hf.model.{name}" for name in REMOTE_CODE_ROOTS], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = MODULES[name]
        for module, line in imported_modules(path):
            top = module.split(".")[0]
            if top == "autosam_hf":
                # A sibling file, copied along; not the package (`autosam_hf.model` itself is no remote-code file).
                assert module.rpartition(".")[0] == "autosam_hf.model", f"{path.name}:{line} imports {module}"
                pending.append(module)
            else:
                assert top in REMOTE_CODE_PACKAGES or top in sys.stdlib_module_names or top == "__future__", (
                    f"{path.name}:{line} imports {module}, which a remote-code user may not have"
                )
    assert {"autosam_hf.model.backbones", "autosam_hf.model.hardnet", "autosam_hf.model.sam_loading"} <= seen


def import_graph(node=node_of, commands: bool = False) -> dict[str, dict[str, str]]:
    """`node(module)` → {`node` of what it imports: where (file:line), the first such import}, between different
    nodes of the package; command modules left out unless `commands`."""
    graph: dict[str, dict[str, str]] = {}
    for name, path in sorted(MODULES.items()):
        if is_command(name) and not commands:
            continue
        source = node(name)
        for module, line in imported_modules(path):
            target = node(module) if module.split(".")[0] == "autosam_hf" else None
            if target is not None and target != source:
                graph.setdefault(source, {}).setdefault(target, f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def cycle_message(graph: dict[str, dict[str, str]], cycle: list[str]) -> str:
    return "import cycle: " + "; ".join(f"{a} → {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" on the current path, "done" once explored

    def visit(node: str, path: list[str]) -> list[str] | None:  # `path`: from where the search began to `node`
        state[node] = "open"
        for target in graph.get(node, {}):
            if state.get(target) == "open":  # on `path`: back to it closes a cycle
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [node])):
            return cycle
    return None


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, cycle_message(graph, cycle)
    # The cycle the model layer once had: the model's export method imported autosam_hf.export by name.
    assert "autosam_hf.export" not in graph.get("autosam_hf.model", {})


def test_no_module_imports_itself_commands_included():
    graph = import_graph(node=lambda module: module if module in MODULES else module.rpartition(".")[0], commands=True)
    cycle = find_cycle(graph)
    assert cycle is None, cycle_message(graph, cycle)


def test_no_library_module_imports_a_command():
    for name, path in sorted(MODULES.items()):
        if is_command(name):
            continue
        for module, line in imported_modules(path):
            assert not is_command(module), f"{path.relative_to(PACKAGE.parent)}:{line} imports the command {module}"


def test_cycles_are_found_and_named():
    """The detector itself, on a graph with a three-layer cycle behind an acyclic entry."""
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2"}, "c": {"d": "c.py:3", "b": "c.py:4"}}
    assert find_cycle(graph) == ["b", "c", "b"]
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}}) is None
