"""Document: a dict with attribute access, as CouchDB documents come back."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

import simplejson

__all__ = ["Document"]

_REPR_FIELDS_MAX = 300


class Document(dict):
    """A CouchDB document: a dict whose keys are also attributes.

    >>> doc = Document(_id="lackey-129", _rev="2-abc", first="Oliver")
    >>> doc.first
    'Oliver'
    >>> doc.office = "Richmond Terrace"
    >>> doc
    <Document lackey-129[2] {first:"Oliver", office:"Richmond Terrace"}>
    """

    __slots__ = ()

    if TYPE_CHECKING:  # pragma: no cover
        def __await__(self) -> Generator[Any, None, Document]:
            """For type checkers only (nothing at run time): see :mod:`corduroy.results`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError("document has no field %r" % name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError("document has no field %r" % name) from None

    def __dir__(self) -> list:
        return sorted(set(dir(type(self))) | {k for k in self if isinstance(k, str) and k.isidentifier()})

    def __repr__(self) -> str:
        head = "<Document"
        doc_id = self.get("_id")
        if doc_id is not None:
            head += " " + str(doc_id)
            rev = self.get("_rev")
            if isinstance(rev, str) and "-" in rev:
                head += "[%s]" % rev.split("-", 1)[0]
        fields = []
        for key, value in self.items():
            if key in ("_id", "_rev"):
                continue
            try:
                shown = simplejson.dumps(value, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError):
                shown = repr(value)
            fields.append("%s:%s" % (key, shown))
        body = ", ".join(fields)
        if len(body) > _REPR_FIELDS_MAX:
            body = body[: _REPR_FIELDS_MAX - 3] + "..."
        return "%s {%s}>" % (head, body)

    def copy(self) -> "Document":
        """A shallow copy, still a Document."""
        return type(self)(self)
