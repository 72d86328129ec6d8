"""The pages reach the core only through the project facade and the view models.

``app.py`` and every ``pages/*.py`` may import from :mod:`activekd_core` only the facade
(:mod:`activekd_core.project`), the Streamlit-free view models and pure presentation helpers;
they never import the store, jobs, selection, teachers, images, devices, ... and never reach
the database through ``project.store``. Read from the source with :mod:`ast` (nothing is
imported), so a new import or attribute is caught before any page runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE_FILES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]

# Everything a page may import from activekd_core: the facade (itself, not its inner modules),
# the view models, and helpers that only present (text escaping, image fitting, the display
# recipe's choices, figure builders, the app's request check).
ALLOWED_EXACT = {
    "activekd_core.project",
    "activekd_core.explore_state",
    "activekd_core.review_state",
    "activekd_core.display_text",
    "activekd_core.image_view",
    "activekd_core.display_recipe",
    "activekd_core.web_access",
}
ALLOWED_PACKAGES = ("activekd_core.view_models", "activekd_core.figures")

# Named so that a failure says which rule it breaks (all of these are outside the allowlist too).
FORBIDDEN = ("store", "jobs", "selection", "teachers", "images", "devices", "student", "audit", "coverage",
             "projection", "bias", "recent", "paths")



def _allowed(module: str) -> bool:
    if module in ALLOWED_EXACT:
        return True
    return any(module == pkg or module.startswith(pkg + ".") for pkg in ALLOWED_PACKAGES)


def _imported_modules(node: ast.AST) -> list[str]:
    """The activekd_core modules an import statement names (``from activekd_core import x`` names ``x``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "activekd_core"]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module == "activekd_core":
            return [f"activekd_core.{a.name}" for a in node.names]
        if node.module.split(".")[0] == "activekd_core":
            return [node.module]
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            target = str(node.args[0].value)
            if target.split(".")[0] == "activekd_core":
                return [target]
    return []


def page_problems(source: str, filename: str) -> list[str]:
    """Every way ``source`` (a page) reaches past the facade and the view models, one line each."""
    tree = ast.parse(source, filename=filename)
    problems = []
    for node in ast.walk(tree):
        for module in _imported_modules(node):
            if not _allowed(module):
                part = module.split(".")[1] if "." in module else module
                rule = "a service or ground-floor module" if part in FORBIDDEN else "outside the allowlist"
                problems.append(f"{filename}:{node.lineno}: imports {module} ({rule})")
        if isinstance(node, ast.Attribute) and node.attr == "store":
            problems.append(f"{filename}:{node.lineno}: reaches the database through .store")
        if isinstance(node, ast.Attribute) and node.attr == "jobs":
            problems.append(f"{filename}:{node.lineno}: reaches the job runner through .jobs()")
    return problems


def test_every_page_reaches_the_core_only_through_the_facade_and_view_models() -> None:
    assert len(PAGE_FILES) >= 8  # app.py and the pages folder were found
    problems = [p for path in PAGE_FILES for p in page_problems(path.read_text(encoding="utf-8"), path.name)]
    assert problems == []


@pytest.mark.parametrize("line", [
    "from activekd_core.jobs import JobBusy",
    "from activekd_core import coverage as cov",
    "import activekd_core.store",
    "from activekd_core.teachers.clip_zero_shot import resolve_weights",
    "from activekd_core.collapse import EVERYTHING_SHARE",
    "from activekd_core.project.batches import next_batch",  # past the facade into its modules
    "importlib.import_module('activekd_core.selection')",
    "def f(project):\n    return project.store.current()",
    "def _live(project):\n    return project.jobs().running('train')",
])
def test_the_check_catches_what_the_pages_used_to_do(line: str) -> None:
    assert len(page_problems(line, "label.py")) == 1


def test_the_check_lets_the_facade_and_view_models_through() -> None:
    source = ("from activekd_core.project import Project\n"
              "from activekd_core.view_models.train import JobBusy\n"
              "from activekd_core.figures import explore as figs\n"
              "from activekd_core.display_text import md\n"
              "def _start_selection(project):\n    return project.start_next_batch()\n")
    assert page_problems(source, "label.py") == []
