"""Imports point one way: core <- quant <- exporters; core (+ quant) <- runtimes <- validate/bench/chat/... <- cli.

Every import of every module under edgeport/, quant/ and runtimes/ (module level and inside functions) is read
with `ast` and checked against the table below. A new module must be placed in a layer here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeport", "quant", "runtimes")

# layer: (its modules, the layers it may import besides itself). "pkg.*" is pkg's submodules at any depth;
# the most specific entry places a module.
LAYERS: dict[str, tuple[list[str], list[str]]] = {
    "core": (
        [
            "edgeport",
            "edgeport.errors",
            "edgeport.io",
            "edgeport.inputs",
            "edgeport.sampling",
            "edgeport.logs",
            "edgeport.model",
            "edgeport.reference",
            "edgeport.checkpoint",
            "edgeport.manifest",
            "edgeport.tokenizer",
            "edgeport.chat",
            "edgeport.constrain",
            "edgeport.tensorfile",
            "edgeport.tools",
            "edgeport.data",
            "edgeport.data.*",
            "edgeport.default_model",
        ],
        [],
    ),
    "quant": (["quant", "quant.*"], ["core"]),
    "exporters": (["edgeport.export", "edgeport.export.*", "edgeport.quantize"], ["core", "quant"]),
    "runtimes": (["runtimes", "runtimes.*"], ["core", "quant"]),
    "apps": (
        [
            "edgeport.agent",
            "edgeport.trainer",
            "edgeport.validate",
            "edgeport.validate.*",
            "edgeport.bench",
            "edgeport.chat_cli",
            "edgeport.serve",
            "edgeport.default_model.__main__",
        ],
        ["core", "quant", "runtimes"],
    ),
    "cli": (["edgeport.cli"], ["core", "quant", "exporters", "runtimes", "apps"]),
}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module in the three packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer_of(module: str) -> str | None:
    """The layer of the most specific table entry that names `module` (exactly, or as pkg.*)."""
    best, best_len = None, -1
    for layer, (names, _) in LAYERS.items():
        for name in names:
            if name == module:
                return layer
            if name.endswith(".*") and module.startswith(name[:-1]) and len(name) > best_len:
                best, best_len = layer, len(name)
    return best


def imported(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every project module `path` imports, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from pkg import sub` imports the submodule pkg.sub
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            while name not in known and "." in name:  # `import a.b.attr` -> the module a.b
                name = name.rpartition(".")[0]
            out.append((node.lineno, name))
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in modules() if layer_of(m) is None]
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py LAYERS: {unplaced}"


def test_imports_point_down() -> None:
    mods = modules()
    known = set(mods)
    crossings = []
    for module, path in mods.items():
        mine = layer_of(module)
        if mine is None:
            continue  # test_every_module_has_a_layer names it
        allowed = {mine, *LAYERS[mine][1]}
        for line, target in sorted(set(imported(module, path, known))):
            theirs = layer_of(target)
            if theirs not in allowed:
                where = path.relative_to(ROOT)
                crossings.append(f"{where}:{line} {module} ({mine}) imports {target} ({theirs})")
    assert not crossings, "imports that cross the layer lines:\n" + "\n".join(crossings)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function and a relative import are both found."""
    path = tmp_path / "gguf.py"
    path.write_text(
        "def f():\n    from runtimes.llamacpp import captured_log\n\nfrom ..validate import run\n"
    )
    known = {"runtimes.llamacpp", "edgeport.validate", "edgeport.validate.run"}
    found = imported("edgeport.export.gguf", path, known)
    assert sorted(found) == [(2, "runtimes.llamacpp"), (4, "edgeport.validate.run")]
    assert layer_of("edgeport.export.gguf") == "exporters" and layer_of("runtimes.llamacpp") == "runtimes"
    assert layer_of("edgeport.validate.run") == "apps" and layer_of("edgeport.nonexistent") is None
