"""The Pager's paging algorithm, against an in-memory view server.

The fake server below answers view requests the way CouchDB does
(``startkey`` + ``startkey_docid``, ``limit``, ``descending``, ``endkey``,
``inclusive_end``) or, with ``honours_docid=False``, the way pouchdb-server
does (it ignores ``startkey_docid``).  With it the tests can count requests
and rows per response, which a real server does not show, and cover both
behaviours whichever server the suite runs against.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl

import pytest

import loop
from corduroy.document import Document
from corduroy.views import Row, ViewsMixin


def _rank(key: Any) -> Tuple[int, Any]:
    if key is None:
        return (0, 0)
    if isinstance(key, (int, float)):
        return (2, key)
    return (3, key)


class FakeDb(ViewsMixin):
    """Just enough of a Database for a Pager: ``_request`` answers from ``rows``."""

    name = "fake"
    server = None

    def __init__(self, rows: List[Dict[str, Any]], honours_docid: bool = True) -> None:
        self.rows = sorted(rows, key=lambda r: (_rank(r["key"]), r["id"]))  # stable: emit order kept
        self.honours_docid = honours_docid
        self.requests: List[Dict[str, Any]] = []
        self.answered: List[int] = []

    def _request(self, method: str, path: str = "", json: Any = None, **kwargs: Any) -> loop.Operation:
        assert method == "GET" and json is None
        _path, _, query = path.partition("?")
        params: Dict[str, Any] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params[name] = value if name.endswith("docid") else _json_value(value)
        self.requests.append(params)
        rows = self.answer(params)
        self.answered.append(len(rows))
        data = {"total_rows": len(self.rows), "offset": 0,
                "rows": [Document(r) for r in rows]}
        return loop.completed(data, reactor=loop.get_reactor())

    def answer(self, params: Dict[str, Any]) -> List[Dict[str, Any]]:
        assert "skip" not in params, "the pager must never send skip"
        assert params.get("reduce") is False
        desc = params.get("descending", False)
        rows = self.rows[::-1] if desc else self.rows

        def before(row: Dict[str, Any], key: Any, docid: Optional[str]) -> bool:
            a, b = _rank(row["key"]), _rank(key)
            if a != b:
                return (a > b) if desc else (a < b)
            if docid is None:
                return False
            return (row["id"] > docid) if desc else (row["id"] < docid)

        out = rows
        if "startkey" in params:
            docid = params.get("startkey_docid") if self.honours_docid else None
            out = [r for r in out if not before(r, params["startkey"], docid)]
        if "endkey" in params:
            end = _rank(params["endkey"])
            inclusive = params.get("inclusive_end", True)
            out = [r for r in out
                   if ((_rank(r["key"]) < end or (inclusive and _rank(r["key"]) == end)) if not desc
                       else (_rank(r["key"]) > end or (inclusive and _rank(r["key"]) == end)))]
        return out[:params["limit"]]


def _json_value(text: str) -> Any:
    return json.loads(text)


def dataset() -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for i in range(30):  # a null group
        rows.append({"key": None, "id": "n%03d" % i, "value": i})
    rows.append({"key": 1, "id": "solo", "value": 0})
    for i in range(60):  # a big group of one key
        rows.append({"key": "same", "id": "s%03d" % i, "value": i})
    for i in range(25):  # one document emitting one key many times
        rows.append({"key": 5, "id": "many", "value": i})
    for i in range(40):  # small groups
        rows.append({"key": 10 + i // 3, "id": "g%03d" % i, "value": i})
        if i % 7 == 0:  # and a second identical (key, id) row
            rows.append({"key": 10 + i // 3, "id": "g%03d" % i, "value": -i})
    return rows


def triples(rows: List[Any]) -> List[Tuple[Any, str, Any]]:
    return [(r["key"], r["id"], r["value"]) if isinstance(r, dict) else (r.key, r.id, r.value) for r in rows]


@pytest.mark.parametrize("honours_docid", [True, False], ids=["couchdb", "docid-ignored"])
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 24, 61, 500])
def test_every_row_once_in_order(honours_docid: bool, descending: bool, page_size: int) -> None:
    db = FakeDb(dataset(), honours_docid)
    expected = db.rows[::-1] if descending else db.rows
    got = list(db.iterview("fake/v", page_size=page_size, descending=descending))
    assert all(isinstance(r, Row) for r in got)
    assert triples(got) == triples(expected)
    pages = -(-len(expected) // page_size)
    if honours_docid:
        # one request per page (plus one that finds nothing when the last page is full),
        # each asking for at most a page, the next start row and the rows of a
        # document that emitted one key many times
        assert len(db.requests) <= pages + 1
        assert max(db.answered) <= page_size + 1 + 25
    else:
        # a few more requests: one to learn the server ignores startkey_docid
        assert len(db.requests) <= pages + 2
    assert all(r.get("limit", 0) >= 1 for r in db.requests)


@pytest.mark.parametrize("honours_docid", [True, False], ids=["couchdb", "docid-ignored"])
def test_skip_limit_and_ranges(honours_docid: bool) -> None:
    db = FakeDb(dataset(), honours_docid)
    everything = db.rows
    got = list(db.iterview("fake/v", page_size=4, skip=33, limit=50))
    assert triples(got) == triples(everything[33:83])
    assert len(db.requests) <= 2 + 50 // 4  # the skipped rows come with the first page
    got = list(db.iterview("fake/v", page_size=6, startkey="same", endkey="same"))
    assert triples(got) == triples([r for r in everything if r["key"] == "same"])
    got = list(db.iterview("fake/v", page_size=6, key=None))
    assert triples(got) == triples([r for r in everything if r["key"] is None])
    got = list(db.iterview("fake/v", page_size=5, startkey=10, endkey=12, inclusive_end=False))
    assert triples(got) == triples([r for r in everything if r["key"] in (10, 11)])


def test_next_page_sizes_and_end() -> None:
    db = FakeDb(dataset())
    pager = db.iterview("fake/v", page_size=50)
    sizes = []
    while True:
        page = pager.next_page()
        if not page:
            break
        sizes.append(len(page))
    total = len(db.rows)
    assert sizes == [50] * (total // 50) + ([total % 50] if total % 50 else [])
    assert pager.done and pager.next_page() == [] and pager.total_rows == total
    before = len(db.requests)
    assert pager.next_page() == [] and len(db.requests) == before  # no I/O once done
