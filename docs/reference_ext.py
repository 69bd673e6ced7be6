"""Sphinx extension for the corduroy reference (``make docs``).

Two jobs:

- Each I/O method's entry gets a "Calling styles" section, written from the
  method itself: that it takes ``callback=``, and what it returns with a
  callback, inside a running reactor, and blocking, naming the data's type
  from the method's ``typing.overload`` declarations.
- The reference is checked for completeness: every public name (each API
  module's ``__all__``, ``corduroy.__all__``, ``loop.__all__``, and the
  public methods and properties of the classes among them) must be
  documented somewhere in it; a missing one is a warning, so ``make docs``
  (warnings are errors) fails and names it.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from sphinx.util import logging

log = logging.getLogger(__name__)

#: Packages whose modules make up the API (their private modules, named ``_x``, are not).
PACKAGES = ("corduroy", "loop")
#: Modules that are not API: the command line (documented in the guide) and its entry point.
NOT_API = ("corduroy.__main__", "corduroy.cli", "loop.backends")


def api_modules() -> List[str]:
    """The names of the public API modules: every module of :data:`PACKAGES` but the private and NOT_API ones."""
    names = []
    for package in PACKAGES:
        names.append(package)
        mod = importlib.import_module(package)
        for info in pkgutil.walk_packages(mod.__path__, package + "."):
            if any(part.startswith("_") for part in info.name.split(".")[1:]):
                continue
            if any(info.name == skip or info.name.startswith(skip + ".") for skip in NOT_API):
                continue
            names.append(info.name)
    return sorted(names)


def _places(module: str, name: str, obj: Any) -> List[str]:
    """Where ``obj`` (public as ``module.name``) may be documented; the first is where it belongs.

    A class or function of ours belongs where it is defined.  A value (a
    constant, a type alias, an alias of a builtin) belongs in ``module`` and
    may instead be documented in any other API module holding it under that
    name (its defining module documents it with a ``#:`` comment).
    """
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.split(".")[0] in PACKAGES:
        return ["%s.%s" % (obj.__module__, obj.__qualname__)]
    places = ["%s.%s" % (module, name)]
    for other in api_modules():
        if other != module and getattr(importlib.import_module(other), name, _ABSENT) is obj:
            places.append("%s.%s" % (other, name))
    return places


_ABSENT = object()


def public_names() -> Iterator[Tuple[str, List[str]]]:
    """``(public name, the places it may be documented)`` for every public name of the API."""
    for module_name in api_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if name == "__version__":
                continue
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                yield "%s.%s" % (module_name, name), [obj.__name__]
                continue
            places = _places(module_name, name, obj)
            yield "%s.%s" % (module_name, name), places
            if inspect.isclass(obj) and obj.__module__.split(".")[0] in PACKAGES:
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod)):
                        where = "%s.%s" % (places[0], attr)
                        yield where, [where]


def missing_names(documented: Set[str]) -> List[str]:
    """The public names documented in none of their places (``documented``: the documented object names)."""
    missing = []
    seen: Set[str] = set()
    for public, places in public_names():
        if places[0] in seen:
            continue
        seen.add(places[0])
        if not documented.intersection(places):
            missing.append(public if public == places[0] else "%s (defined as %s)" % (public, places[0]))
    return missing


# -- the calling styles of an I/O method ------------------------------------

def _types(obj: Any) -> Tuple[List[str], List[str]]:
    """The data types (from the ``callback=`` overloads) and blocking types (``callback: None``) of ``obj``."""
    data: List[str] = []
    blocking: List[str] = []
    try:
        overloads = typing.get_overloads(obj)  # type: ignore[attr-defined]  # Python 3.11+
    except AttributeError:  # pragma: no cover - older Python: the generic wording
        overloads = []
    for over in overloads:
        notes: Dict[str, Any] = over.__annotations__
        ret = str(notes.get("return", ""))
        if str(notes.get("callback")) == "None":
            blocking.append(ret)
        elif ret.startswith("Operation[") and ret.endswith("]"):
            data.append(ret[len("Operation["):-1])
    # A catch-all overload (``-> Any``, for arguments only known at run time) says nothing more.
    data = [t for t in dict.fromkeys(data) if t != "Any" or len(data) == 1]
    blocking = [t for t in dict.fromkeys(blocking) if t != "Any" or len(blocking) == 1]
    return data, blocking


def _or(types: List[str]) -> str:
    return " or ".join("``%s``" % t for t in types)


def calling_styles(obj: Any) -> Optional[List[str]]:
    """The reST lines describing ``obj``'s calling styles, or None if it is not an I/O method."""
    if not getattr(obj, "__io_method__", False):
        return None
    try:
        if "callback" not in inspect.signature(obj).parameters:
            return None
    except (TypeError, ValueError):  # pragma: no cover
        return None
    data, blocking = _types(obj)
    what = _or(data) if data else "the data"
    op = "``Operation[%s]``" % data[0] if len(data) == 1 else "an :class:`~loop.operation.Operation` of %s" % what
    returned = _or(blocking) if blocking else what
    return [
        "",
        ".. rubric:: Calling styles",
        "",
        "Takes ``callback=None``; see :ref:`calling-styles`.",
        "",
        "- ``callback=fn``: returns %s at once; ``fn(data, status)`` runs later on the reactor, exactly once"
        " (``data`` is None when ``status.ok`` is false)." % op,
        "- No callback, a reactor running in this thread: returns that Operation; ``yield`` it in a"
        " ``@relax`` generator or ``await`` it for %s." % what,
        "- No callback, no reactor running: blocks, then returns %s or raises." % what,
        "- Declared type with no callback (for mypy): %s, which is also awaitable to the data"
        " (see :mod:`corduroy.results`)." % returned,
        "",
    ]


def _add_calling_styles(app: Any, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    if what != "method":
        return
    extra = calling_styles(obj)
    if extra:
        lines.extend(extra)


def _check_complete(app: Any, env: Any) -> None:
    documented = set(env.get_domain("py").objects)
    documented.update(env.get_domain("py").modules)
    for name in missing_names(documented):
        log.warning("public name not in the API reference: %s (add it to docs/api/*.rst, or document it)", name)


def setup(app: Any) -> Dict[str, Any]:
    app.connect("autodoc-process-docstring", _add_calling_styles)
    app.connect("env-check-consistency", _check_complete)
    return {"parallel_read_safe": True}
