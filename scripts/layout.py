"""The shape of the code, as numbers: modules, the longest ones, and how deep imports go.

    python scripts/layout.py            # the retrain_assets package of this checkout
    python scripts/layout.py --root DIR # another checkout

"Import levels" is the longest chain of imports between the package's own modules (a module that
imports none of them is level 1). Imports made only for type checking (``if TYPE_CHECKING:``) do
not count: nothing is loaded at run time. Nothing is imported or run: the files are parsed.
"""

from __future__ import annotations

import argparse
import ast
import functools
from pathlib import Path

PACKAGE = "retrain_assets"


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, (ast.Name, ast.Attribute)) and (
        getattr(node.test, "id", None) == "TYPE_CHECKING" or getattr(node.test, "attr", None) == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def dependencies(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    deps = {}
    for name, path in found.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        wanted = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in found]
                # `from package import submodule` depends on the submodule (the package's __init__ too,
                # but that runs for any submodule anyway); `from module import name` on the module.
                candidates = submodules if len(submodules) == len(node.names) else [base, *submodules]
            wanted |= {c for c in candidates if c in found and c != name}
        deps[name] = wanted
    return deps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    found = modules(args.root)
    deps = dependencies(found)

    @functools.lru_cache(maxsize=None)
    def level(name: str, seen: frozenset = frozenset()) -> int:
        return 1 + max((level(d, seen | {name}) for d in deps[name] if d not in seen), default=0)

    top = max(found, key=level)
    chain = [top]
    while deps[chain[-1]]:
        chain.append(max(deps[chain[-1]], key=level))
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in found.items()}
    largest = sorted(lines.items(), key=lambda item: -item[1])
    short = lambda name: name.removeprefix(PACKAGE + ".")  # noqa: E731
    print(f"modules: {len(found)}")
    print(f"longest module: {short(largest[0][0])} ({largest[0][1]} lines)")
    over = [f"{short(n)} {k}" for n, k in largest if k > 400]
    print(f"over 400 lines: {len(over)}" + (f" ({', '.join(over)})" if over else ""))
    print(f"import levels: {level(top)} ({' -> '.join(short(c) for c in chain)})")


if __name__ == "__main__":
    main()
