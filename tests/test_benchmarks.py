"""The benchmark harness runs and reports; it is never timed here.

These tests run ``python -m benchmarks`` on tiny workloads (``--quick`` with
small sizes, a couple of clients) and check that it finishes, that every
cell answered correctly, and that the JSON file holds the expected keys.
No assertion is about speed: timings on a shared machine mean nothing.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Optional

import pytest

from benchmarks import cli, instructions
from benchmarks.canned import CannedServer
from benchmarks.clients import CLIENTS
from benchmarks.couchdb_cluster import available as couchdb_available
from benchmarks.fixtures import CANNED_REV
from benchmarks.worker import run_cell

from .conftest import couch_request

META_KEYS = {"python_version", "libcurl", "reactor_backend", "cpu_count", "target", "packages", "started"}
RESULT_KEYS = {"client", "workload", "concurrency", "status", "rate", "unit", "units", "wall_s", "cpu_s",
               "cpu_per_1k", "latency_ms", "errors"}


def _load(out_dir) -> dict:
    files = [name for name in os.listdir(out_dir) if name.endswith(".json")]
    assert len(files) == 1, files
    with open(os.path.join(out_dir, files[0])) as f:
        return json.load(f)


def test_quick_w1_on_the_canned_server_writes_the_figures(tmp_path, capsys):
    code = cli.main(["--target", "canned", "--quick", "--workloads", "W1", "--clients", "corduroy-callback,pycurl",
                     "--requests", "60", "--concurrency", "1,4", "--out", str(tmp_path), "--no-chart"])
    assert code == 0
    data = _load(tmp_path)
    assert META_KEYS <= set(data["meta"])
    assert data["meta"]["target"]["kind"] == "canned"
    assert data["config"]["workloads"] == ["W1"]
    results = data["results"]
    assert sorted((r["client"], r["concurrency"]) for r in results) == [
        ("corduroy-callback", 1), ("corduroy-callback", 4), ("pycurl", 1), ("pycurl", 4)]
    for r in results:
        assert r["status"] == "ok", r
        assert RESULT_KEYS <= set(r), set(RESULT_KEYS) - set(r)
        assert r["units"] == 60 and r["errors"] == 0 and r["unit"] == "requests"
        assert {"p50", "p99", "p99_9"} <= set(r["latency_ms"])
        if r["client"] == "corduroy-callback":
            assert r["ratio_rate"] == 1.0  # the baseline's own ratio
    table = capsys.readouterr().out
    assert "corduroy-callback" in table and "pycurl" in table and "raw figures:" in table


def test_every_workload_runs_on_the_canned_server(tmp_path):
    code = cli.main(["--target", "canned", "--quick", "--clients", "corduroy-callback,corduroy-blocking",
                     "--requests", "30", "--concurrency", "2", "--docs", "200", "--batch", "100", "--rows", "500",
                     "--changes", "300", "--changes-batch", "100", "--mixed", "40", "--hot", "5",
                     "--rate", "100", "--rate-seconds", "0.2", "--out", str(tmp_path), "--no-chart"])
    assert code == 0
    results = _load(tmp_path)["results"]
    seen = {(r["workload"], r["client"]): r for r in results}
    for workload in ("W1", "W2", "W3", "W4", "W5", "W6"):
        r = seen[(workload, "corduroy-callback")]
        assert r["status"] == "ok", r
    assert seen[("W2", "corduroy-callback")]["units"] == 200
    assert seen[("W3", "corduroy-callback")]["units"] == 500
    assert "rss_growth_mb" in seen[("W3", "corduroy-callback")]
    assert seen[("W4", "corduroy-callback")]["units"] == 300
    assert seen[("W5", "corduroy-callback")]["units"] == 40
    assert seen[("W6", "corduroy-callback")]["target_rate"] == 100
    # a sequential client cannot keep an open-loop rate: reported, not failed
    assert seen[("W6", "corduroy-blocking")]["status"] == "n/a"


def test_instruction_counting_runs_what_the_worker_runs_and_prepares_apart(tmp_path):
    # benchmarks.instructions runs these specs under callgrind (not installed
    # by make test); here they run as they are, without it.
    with CannedServer(docs=100) as server:
        for workload, units in (("W1", 120), ("W2", 1500)):
            spec = instructions._spec("corduroy-callback", server.url, units, 3, str(tmp_path / "r.json"),
                                      workload, batch=500)
            out = run_cell(spec)
            assert out["status"] == "ok" and out["errors"] == 0, out
            assert out["units"] == units
        # The preparation alone (taken away from every count) builds W2's documents.
        spec_path = tmp_path / "spec.json"
        spec = instructions._spec("none", server.url, 1500, 3, os.devnull, "W2", batch=500)
        spec_path.write_text(json.dumps(spec))
        code = (
            instructions._PREPARE_ONLY
            + "assert sum(len(batch) for batch in workload._batches) == 1500\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run([sys.executable, "-c", code, str(spec_path)], cwd=root, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr


def test_a_client_that_is_not_installed_is_skipped(monkeypatch):
    from benchmarks import cli as cli_module

    monkeypatch.setattr(cli_module, "missing_packages", lambda name: ["no_such_pkg"] if name == "aiohttp" else [])
    args = cli_module.build_parser().parse_args(["--target", "canned", "--quick", "--workloads", "W1",
                                                 "--clients", "aiohttp,pycurl", "--concurrency", "1"])
    cells = cli_module.plan_cells(cli_module.resolve_config(args))
    by_client = {c["client"]: c for c in cells}
    assert by_client["aiohttp"]["status"] == "skipped"
    assert "no_such_pkg" in by_client["aiohttp"]["reason"]
    assert "status" not in by_client["pycurl"]
    assert set(CLIENTS) >= {"corduroy-callback", "corduroy-relax", "corduroy-await", "corduroy-blocking",
                            "pycurl", "aiohttp", "httpx", "aiocouch", "requests", "couchdb-python", "tornado"}


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        cli.main(["--target", "canned", "--workloads", "W9"])
    with pytest.raises(SystemExit):
        cli.main(["--target", "canned", "--clients", "nope"])


def test_against_a_real_server_the_run_cleans_up(couch_url, tmp_path):
    code = cli.main(["--url", couch_url, "--quick", "--workloads", "W1,W2", "--clients", "corduroy-callback,pycurl",
                     "--requests", "20", "--concurrency", "2", "--docs", "100", "--batch", "50",
                     "--out", str(tmp_path), "--no-chart"])
    assert code == 0
    data = _load(tmp_path)
    assert data["meta"]["target"]["kind"] == "url"
    assert all(r["status"] == "ok" for r in data["results"]), data["results"]
    status, names = couch_request(couch_url, "GET", "/_all_dbs")
    assert status == 200
    assert not [n for n in names if n.startswith("corduroy_bench_")]
    assert ":***@" in data["meta"]["target"]["url"] or "@" not in data["meta"]["target"]["url"]


@pytest.mark.skipif(couchdb_available() is not None, reason=couchdb_available() or "")
def test_couchdb_target_starts_seeds_runs_and_stops_a_real_couchdb(tmp_path):
    code = cli.main(["--target", "couchdb", "--quick", "--workloads", "W1,W2", "--clients", "corduroy-callback,pycurl",
                     "--requests", "40", "--concurrency", "4", "--docs", "100", "--batch", "50",
                     "--out", str(tmp_path), "--no-chart"])
    assert code == 0
    data = _load(tmp_path)
    target = data["meta"]["target"]
    assert target["kind"] == "couchdb" and target["nodes"] == 1 and target["version"] == "3.4.3"
    assert ":***@" in target["url"]
    assert sorted((r["workload"], r["client"]) for r in data["results"]) == [
        ("W1", "corduroy-callback"), ("W1", "pycurl"), ("W2", "corduroy-callback"), ("W2", "pycurl")]
    assert all(r["status"] == "ok" and r["errors"] == 0 for r in data["results"]), data["results"]
    assert all(r.get("server_cpu_s") is not None for r in data["results"])  # the node's pid was known
    port = int(target["url"].rsplit(":", 1)[1])
    with socket.socket() as sock:  # the server was stopped at the end
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_couchdb_target_without_shared_couchdb_says_so(tmp_path, monkeypatch, capsys):
    from benchmarks import couchdb_cluster

    monkeypatch.setattr(couchdb_cluster, "DIST", tmp_path / "no-couchdb-here")
    code = cli.main(["--target", "couchdb", "--quick", "--workloads", "W1", "--out", str(tmp_path)])
    assert code == 3
    assert "../shared/couchdb" in capsys.readouterr().err
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".json")]
    with pytest.raises(SystemExit):
        cli.main(["--target", "canned", "--nodes", "3"])


def test_the_coalescing_benchmark_runs_every_part(couch_url, capsys):
    from benchmarks import coalescing

    code = coalescing.main(["--url", couch_url, "--docs", "40", "--gets", "60", "--saves", "30", "--in-flight", "4",
                            "--batch-sizes", "8", "--parallel", "1,2", "--endpoint-docs", "16",
                            "--variants", "all_docs,bulk_get/2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ERRORS" not in out
    for line in ("bulk_get", "all_docs", "GET /id", "uncoalesced", "coalesced",
                 "bulk_get/2", "save/s"):
        assert line in out, line
    status, names = couch_request(couch_url, "GET", "/_all_dbs")
    assert not [n for n in names if n.startswith("corduroy_coalesce_")]  # it cleaned up


def test_canned_server_answers_couchdb_shapes():
    with CannedServer(docs=50) as server:
        def get(path: str, method: str = "GET", body: Optional[bytes] = None):
            req = urllib.request.Request(server.url + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        status, doc = get("/db/a%2Fb")
        assert status == 200 and doc["_id"] == "a/b" and doc["_rev"] == CANNED_REV
        assert len(json.dumps(doc)) > 350
        status, rows = get("/db/_all_docs?limit=7")
        assert rows["total_rows"] == 50 and len(rows["rows"]) == 7 and rows["rows"][6]["id"] == "doc000000006"
        status, rows = get("/db/_design/bench/_view/by_n")
        assert [r["key"] for r in rows["rows"]] == list(range(50))
        status, feed = get("/db/_changes?since=45&limit=10")
        assert len(feed["results"]) == 5 and feed["pending"] == 0
        status, out = get("/db/_bulk_docs", "POST", b'{"docs":[{"_id":"x"},{"a":1}]}')
        assert status == 201 and [r["ok"] for r in out] == [True, True] and out[0]["id"] == "x"
        status, out = get("/db/_all_docs?include_docs=true", "POST", b'{"keys":["k1"]}')
        assert out["rows"][0]["doc"]["_id"] == "k1"
        body = json.dumps({"_rev": CANNED_REV}).encode()
        assert get("/db/d1", "PUT", body)[0] == 201
        assert get("/db/d1", "PUT", b'{"_rev":"2-other"}') == (409, {"error": "conflict",
                                                                       "reason": "Document update conflict."})
