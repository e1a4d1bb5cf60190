"""The package's layers: model <- detect <- stream <- service <- commands.

Every import of every module (at the top, inside functions, under
TYPE_CHECKING) is read with ``ast``; a module may import its own layer and
those below it, never one above. ``plot/`` (figures) sits beside the
service layer, above the detector and the stream, and only the commands import
it; ``testing/`` may import anything, and nothing in the package imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "streamgmm"

# Rank of each room, lowest first. The package root (``__version__`` and the
# lazy exports, which name modules as strings) and ``synth`` (the synthetic
# card stream, numpy only) import nothing of streamgmm: they sit at the bottom.
LAYERS = {
    "streamgmm": 0,
    "streamgmm.synth": 0,
    "streamgmm.model": 0,
    "streamgmm.detect": 1,
    "streamgmm.stream": 2,
    "streamgmm.service": 3,
    "streamgmm.plot": 3.5,  # figures: the commands import them, the service never
    "streamgmm.commands": 4,
    "streamgmm.cli": 4,
    "streamgmm.__main__": 4,
}
# Harnesses for tests and benchmarks: above everything.
FREE = ("streamgmm.testing",)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The longest prefix of ``module`` that names a room."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS or name in FREE:
            return name
    raise AssertionError(f"{module}: in no layer; add its room to LAYERS")


def imports(path: Path, name: str) -> list[tuple[int, str]]:
    """(line, module) of every streamgmm module that ``path`` (module ``name``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
    return [(line, name) for line, name in found
            if name == "streamgmm" or name.startswith("streamgmm.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_read():
    names = {module_name(p) for p in MODULES}
    assert {"streamgmm.detect.detector", "streamgmm.stream.loop",
            "streamgmm.service.daemon", "streamgmm.cli"} <= names


def upward_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    """The imports of ``path`` that break the layering, one line each."""
    name = module_name(path, package)
    here = room(name)
    wrong = []
    for line, imported in imports(path, name):
        there = room(imported)
        if there in FREE and here not in FREE:
            wrong.append(f"line {line}: {imported} (nothing in the package imports {there})")
        elif here not in FREE and there not in FREE and LAYERS[there] > LAYERS[here]:
            wrong.append(f"line {line}: {imported} ({there} is above {here})")
    return wrong


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_import_reaches_up_a_layer(path):
    wrong = upward_imports(path)
    assert not wrong, f"{module_name(path)} imports from a higher layer: " + "; ".join(wrong)


def test_the_check_catches_an_import_from_above(tmp_path):
    fake = tmp_path / "streamgmm" / "detect" / "threshold.py"
    fake.parent.mkdir(parents=True)
    fake.write_text((PACKAGE / "detect" / "threshold.py").read_text(encoding="utf-8")
                    + "\n\ndef _f():\n    from streamgmm.service import config\n"
                    + "    from streamgmm.testing import tansu\n", encoding="utf-8")
    wrong = upward_imports(fake, tmp_path / "streamgmm")
    assert [w.split(": ", 1)[1] for w in wrong] == [
        "streamgmm.service (streamgmm.service is above streamgmm.detect)",
        "streamgmm.testing (nothing in the package imports streamgmm.testing)"]
