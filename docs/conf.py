"""Sphinx configuration: the corduroy API reference (``make docs``)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # reference_ext

from corduroy import __version__  # noqa: E402

project = "corduroy"
author = "the corduroy authors"
copyright = "corduroy authors"
release = version = __version__

# reference_ext: each I/O method's calling styles, and a check that every public name is documented.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "reference_ext"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Imported optional backends (gevent, pyuv, tornado) need not be installed to build the docs.
autodoc_mock_imports = ["pyuv", "gevent", "tornado"]

exclude_patterns = ["_build", "README.rst", "guide/*.jsonl"]
html_theme = "alabaster"
html_static_path: list = []


def _readme_paths(app, relative_path, parent_docname, content):  # type: ignore[no-untyped-def]
    """README.rst names its images from the repository's top (``docs/x.png``); here they are next door."""
    if relative_path.name == "README.rst":
        content[0] = content[0].replace(".. image:: docs/", ".. image:: ")


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("include-read", _readme_paths)
