#!/usr/bin/env python3
"""Report import cycles and upward imports inside ``src/setr``.

    python scripts/check_layers.py          # exit 1 if a module-level import cycle or an upward import exists

Every module belongs to a component (``setr.models.vit`` -> ``models``, ``setr.cli`` -> ``cli``); ``LAYERS``
orders the components from the bottom (imports nothing of ours) to the top (the command line). An import of a
component from a higher layer is "upward", whether it runs when the module loads or inside a function (a
deferred import still couples the lower layer to the upper one). Components in the same layer may import each
other, but modules may not import each other in a cycle at load time.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# bottom first; components on one line share a layer
LAYERS = [
    ["_version", "errors", "outputs", "extras", "argtypes"],
    ["io", "dist"],
    ["models"],
    ["overrides"],
    ["config"],
    ["data"],
    ["model_files"],
    ["presets"],
    ["precision", "complexity"],
    ["inference", "batch_predict"],
    ["evaluation"],
    ["reports"],  # report pages and training curves; the loop writes curves.png at the end of training
    ["engine"],
    ["detection"],
    ["hub"],
    ["export", "benchmark", "demo", "app"],
    # the top: the command line, the public API (the package's __init__, "setr") and the golden-case checkers
    # (parity), which drive the whole pipeline, the training command included
    ["cli", "__main__", "setr", "parity"],
]
# deliberate upward imports, each with its reason; printed as "allowed", not counted
ALLOWED: dict[tuple[str, str], str] = {}
RANK = {c: i for i, names in enumerate(LAYERS) for c in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "setr"


def imports(path: Path):
    """(target module, line, deferred) for every import of ``setr`` code in ``path``."""
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    deferred_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                      for n in ast.walk(f)}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import x`` may name a submodule
            targets = [f"{target}.{a.name}" if not node.module or (SRC / (target.replace(".", "/") + "/" + a.name + ".py")).exists()
                       else target for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            if t == "setr" or t.startswith("setr."):
                yield t, node.lineno, id(node) in deferred_nodes


def existing(module: str, known: set[str]) -> str:
    while module not in known and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def main() -> int:
    files = sorted(SRC.joinpath("setr").rglob("*.py"))
    known = {module_name(p) for p in files}
    problems = 0
    load_graph: dict[str, set[str]] = defaultdict(set)
    for path in files:
        src = module_name(path)
        for target, line, deferred in imports(path):
            target = existing(target, known)
            a, b = component(src), component(target)
            if a not in RANK or b not in RANK:
                print(f"{path.relative_to(SRC.parent)}:{line}: component {a if a not in RANK else b!r} has no layer")
                problems += 1
                continue
            if RANK[b] > RANK[a] and (src, target) in ALLOWED:
                print(f"{path.relative_to(SRC.parent)}:{line}: allowed upward import {src} -> {target}: "
                      f"{ALLOWED[src, target]}")
            elif RANK[b] > RANK[a]:
                kind = "deferred " if deferred else ""
                print(f"{path.relative_to(SRC.parent)}:{line}: upward {kind}import {src} -> {target} ({a} below {b})")
                problems += 1
            if not deferred and target != src:
                load_graph[src].add(target)
                # importing a.b.c runs a/__init__ and a/b/__init__ first
                parent = target.rsplit(".", 1)[0]
                while parent in known and parent != "setr" and not src.startswith(parent + "."):
                    load_graph[src].add(parent)
                    parent = parent.rsplit(".", 1)[0]
    # module-level cycles (Tarjan's strongly connected components)
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(load_graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(known):
        if v not in index:
            visit(v)
    for comp in sccs:
        print(f"import cycle at load time: {' <-> '.join(comp)}")
        problems += 1
    print(f"{len(files)} modules, {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
