"""The page's ES modules import each other one way only, and the page preloads every one.

The Python side's layers are import-linter contracts (pyproject.toml, `[tool.importlinter]`),
checked by `lint-imports` in `make lint`. The page has no build step and no bundler to warn
about a cycle, so this reads its `import` statements: a cycle makes a module's exports
depend on evaluation order (a binding used before its module has run), and it hides which
module is the lower one. A module found by import but missing from the page's
`<link rel="modulepreload">` list is fetched only once its importer has arrived.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import brook

PACKAGE = Path(brook.__file__).parent
STATIC = PACKAGE / "static"
JS = STATIC / "js"

# `import x from "./a.js"`, `import { a,\n b } from "./a.js"`, `export { a } from "./a.js"`,
# `import "./a.js"`, each at the start of a line (so never inside a `//` comment), and
# dynamic `import("./a.js")`.
STATIC_IMPORT = re.compile(
    r"""^\s*(?:import|export)\b(?:[^;"']*?\bfrom)?\s*["']([^"']+)["']""", re.MULTILINE)
DYNAMIC_IMPORT = re.compile(r"""\bimport\(\s*["']([^"']+)["']\s*\)""")
PRELOAD = re.compile(
    r"""<link rel="modulepreload" href="\{\{ url_for\('static', filename='([^']+)'\) \}\}">""")


def imports_of(module: Path) -> set[Path]:
    """The modules `module` imports, as resolved paths (bare specifiers are not used)."""
    text = module.read_text(encoding="utf-8")
    specifiers = STATIC_IMPORT.findall(text) + DYNAMIC_IMPORT.findall(text)
    assert all(s.startswith(".") for s in specifiers), (module.name, specifiers)
    return {(module.parent / s).resolve() for s in specifiers}


def module_graph(entry: Path) -> dict[Path, set[Path]]:
    graph: dict[Path, set[Path]] = {}
    pending = [entry.resolve()]
    while pending:
        module = pending.pop()
        if module in graph:
            continue
        assert module.is_file(), f"imported but missing: {module}"
        graph[module] = imports_of(module)
        pending.extend(graph[module])
    return graph


def cycles(graph: dict[Path, set[Path]]) -> Iterator[list[Path]]:
    """Each import cycle found by a depth-first walk, as the modules along it."""
    done: set[Path] = set()
    path: list[Path] = []

    def walk(module: Path) -> Iterator[list[Path]]:
        if module in path:
            yield [*path[path.index(module):], module]
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            yield from walk(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        yield from walk(module)


def names(modules: list[Path]) -> str:
    return " -> ".join(m.relative_to(STATIC).as_posix() for m in modules)


@pytest.mark.parametrize("entry", ["main.js", "highlight-worker.js"])
def test_the_page_modules_import_each_other_one_way_only(entry: str) -> None:
    found = [names(cycle) for cycle in cycles(module_graph(JS / entry))]
    assert found == [], "import cycles (move what both need into a module below them): " + (
        "; ".join(found))


def test_every_module_the_page_imports_is_preloaded() -> None:
    template = (PACKAGE / "templates" / "index.html").read_text(encoding="utf-8")
    preloaded = {(STATIC / name).resolve() for name in PRELOAD.findall(template)}
    imported = set(module_graph(JS / "main.js")) - {(JS / "main.js").resolve()}  # <script src>
    missing = sorted(m.relative_to(STATIC).as_posix() for m in imported - preloaded)
    assert missing == [], f"add to index.html's <link rel=modulepreload> list: {missing}"
    unused = sorted(m.relative_to(STATIC).as_posix() for m in preloaded - imported)
    assert unused == [], f"preloaded but not imported by the page: {unused}"


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text('import { b } from "./b.js";\nexport const a = 1;\n')
    (tmp_path / "b.js").write_text(
        '// import { x } from "./d.js";\nimport {\n  a,\n} from "./a.js";\n'
        "export const b = () => import('./c.js');\n")
    (tmp_path / "c.js").write_text("export const c = 1;\n")
    graph = module_graph(tmp_path / "a.js")
    assert graph[(tmp_path / "b.js").resolve()] == {(tmp_path / "a.js").resolve(),
                                                    (tmp_path / "c.js").resolve()}
    assert [[m.name for m in cycle] for cycle in cycles(graph)] == [["a.js", "b.js", "a.js"]]
