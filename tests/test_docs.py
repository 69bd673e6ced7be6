"""The API reference is complete: every public name is in it, every I/O method says how to call it.

``make docs`` builds it with warnings as errors; docs/reference_ext.py warns
about any public name the reference leaves out and writes each I/O method's
"Calling styles".  These tests check that machinery without a full build,
and (slow) that a reference missing a module fails the build, naming it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

sphinx = pytest.importorskip("sphinx", reason="the docs extra (pip install -e '.[docs]') builds the reference")
sys.path.insert(0, str(DOCS))
import reference_ext  # noqa: E402

from corduroy import Database  # noqa: E402
from corduroy.changes import ChangesFeed  # noqa: E402


def listed_modules() -> set:
    found = set()
    for page in (DOCS / "api").glob("*.rst"):
        found.update(re.findall(r"^\.\. automodule:: (\S+)", page.read_text(), re.M))
    return found


def test_every_api_module_is_in_the_reference() -> None:
    missing = set(reference_ext.api_modules()) - listed_modules()
    assert not missing, "add these modules to docs/api/*.rst: %s" % sorted(missing)


def test_the_public_names_include_the_io_methods_and_the_package_exports() -> None:
    names = {public for public, _ in reference_ext.public_names()}
    assert {"corduroy.Couch", "corduroy.Database", "corduroy.relax", "loop.gather",
            "corduroy.database.Database.get", "corduroy.views.ViewsMixin.view",
            "corduroy.changes.ChangesFeed.next"} <= names
    # A name documented nowhere is reported; one documented in any of its places is not.
    assert "corduroy.database.Database.get" in reference_ext.missing_names(set())
    everything = {place for _, places in reference_ext.public_names() for place in places}
    assert reference_ext.missing_names(everything) == []


def test_an_io_method_states_its_calling_styles_with_its_types() -> None:
    lines = "\n".join(reference_ext.calling_styles(Database.get) or [])
    assert "Takes ``callback=None``" in lines
    assert "``Document`` or ``List[Optional[Document]]``" in lines  # the data, from the overloads
    assert "blocks, then returns" in lines and "``await`` it" in lines
    feed = "\n".join(reference_ext.calling_styles(ChangesFeed.next) or [])
    assert "``Operation[Optional[Document]]``" in feed
    assert reference_ext.calling_styles(Database.iterview) is None  # no I/O of its own: no callback


@pytest.mark.slow
def test_a_reference_missing_a_module_fails_the_build_and_names_it(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_build"))
    page = docs / "api" / "clients-servers-and-databases.rst"
    text = page.read_text()
    assert ".. automodule:: corduroy.session\n" in text
    page.write_text(text.replace(".. automodule:: corduroy.session\n", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(docs), str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    assert "public name not in the API reference: corduroy.session.SessionMixin" in proc.stderr
    assert "corduroy.session.SessionMixin.login" in proc.stderr
