"""The package's layout rules: the folders follow the data flow, each study stands alone,
functions stay short and every module has a name of its own."""

import ast
import importlib
import re
from collections import Counter
from pathlib import Path

import pytest

import headcoop

PACKAGE = Path(headcoop.__file__).parent

LAYERS = (
    ("tasks",),
    ("loading",),
    ("engine",),
    ("metrics",),
    ("training",),
    ("heads",),
    ("explore",),
    ("paper", "trace", "successor", "cooperation"),
    ("cli",),
)
"""The folders in the order of the data flow; a folder imports only from folders before it
(and from the top-level modules). Folders on one line are studies, which import none of each
other."""

LONGEST = 60
"""Lines a function may have, compiled kernels excepted."""


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(folder: str) -> int:
    """The position of a folder in `LAYERS`; top-level modules come before every folder."""
    for k, names in enumerate(LAYERS):
        if folder in names:
            return k + 1
    return 0


def _imports(path: Path) -> set[str]:
    """The headcoop folders or top-level modules ``path`` imports from, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("headcoop"):
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else "")
    return found


def _folder(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_folder_is_placed_in_the_data_flow():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == {name for names in LAYERS for name in names}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_from_earlier_folders_and_never_another_study(path):
    if path == PACKAGE / "__init__.py":
        return  # the lazy public names, imported by string
    here = _folder(path)
    for target in (_imports(path) - {here}) & _folders():
        assert _layer(target) < _layer(here), f"{here} imports {target}"


def _folders() -> set[str]:
    return {name for names in LAYERS for name in names}


def test_top_level_modules_import_no_folder():
    for path in PACKAGE.glob("*.py"):
        if path.name != "__init__.py":
            assert not _imports(path) & _folders(), path.name


def test_no_function_is_longer_than_sixty_lines_except_compiled_kernels():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                decorators = " ".join(ast.unparse(d) for d in node.decorator_list)
                if size > LONGEST and not re.search(r"jit|numba", decorators):
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({size} lines)")
    assert not long


def test_no_two_modules_share_a_file_name():
    names = Counter(p.name for p in _modules() if p.name not in ("__init__.py", "__main__.py"))
    assert [name for name, n in names.items() if n > 1] == []


def test_every_package_says_what_is_in_it():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) > 8, init


ROOT = PACKAGE.parent.parent
DOCUMENTS = ("CONTRIBUTING.md", "docs/glossary.md")


def _named_paths(text: str) -> list[str]:
    """The code spans of ``text`` that name a path (a folder, a .py or .md file, or a module
    and a name in it: ``engine/bags.bag_exact``)."""
    spans = re.findall(r"`([^`\s]+)`", text)
    return [
        s for s in spans if ("/" in s or s.endswith((".py", ".md"))) and "*" not in s and s != "/"
    ]


def _exists(span: str) -> bool:
    """Whether ``span`` names something real: a path from the repository or the package, a
    module file anywhere in the package, or a module and a name defined in it."""
    if span.endswith((".py", ".md", "/")):
        found = [ROOT / span, PACKAGE / span]
        return any(p.exists() for p in found) or any(PACKAGE.rglob(span))
    module, _, names = span.partition(".")
    if not (PACKAGE / f"{module}.py").is_file():
        return False
    value = importlib.import_module("headcoop." + module.replace("/", "."))
    for name in names.split(".") if names else []:
        if not hasattr(value, name):
            return False
        value = getattr(value, name)
    return True


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_path_the_contributor_documents_name_exists(document):
    spans = _named_paths((ROOT / document).read_text())
    assert len(spans) > 10
    assert [s for s in spans if not _exists(s)] == []


def test_the_path_check_sees_a_stale_name():
    assert not _exists("paper/plots_heads.py") and not _exists("metrics/attribution.NoSuchName")
    assert _exists("metrics/attribution.SetLogits.of") and _exists("subsets.py")


def _example_sources() -> dict[str, str]:
    """Each example's code: the scripts, and the notebook's code cells joined."""
    import json

    found = {p.name: p.read_text() for p in sorted((ROOT / "examples").glob("*.py"))}
    for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        found[notebook.name] = "\n".join(
            line
            for c in code
            for line in c.splitlines()
            if not line.lstrip().startswith(("!", "%"))
        )
    return found


def _deep_imports(source: str) -> list[str]:
    """The headcoop submodules ``source`` imports from (an example uses the package's exports)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found += [n for n in names if n.startswith("headcoop.")]
    return found


def test_examples_import_from_headcoop_only():
    sources = _example_sources()
    assert {"analyze_heads.py", "custom_task.py", "walkthrough.ipynb"} <= set(sources)
    assert {name: _deep_imports(s) for name, s in sources.items() if _deep_imports(s)} == {}
    assert _deep_imports("from headcoop.tasks.base import split_generator") == [
        "headcoop.tasks.base"
    ]
