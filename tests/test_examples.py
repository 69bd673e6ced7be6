"""Every runnable example in examples/ runs end to end against the test server."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.consistency import eventually

ROOT = Path(__file__).resolve().parent.parent


def run_example(name, couch_url, timeout=120):
    env = dict(os.environ, COUCHDB_URL=couch_url, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_round_trips_in_all_four_styles(couch_url):
    def run_once():
        out = run_example("demo.py", couch_url)
        for line in [
            "blocking: save -> <Success: 1 doc updated>",
            'blocking: after an update -> '
            '<Document lackey-129[2] {first:"Oliver", last:"Reeder", education:"Oxbridge"}>',
            "callback: save -> <Success: 1 doc updated> (HTTP 201)",
            "callback: get of a missing doc -> ok=False error=NotFound",
            "relax:    batch get -> ['Oliver', 'Angela', None]",
            # A cluster may accept the stale save, or show a write late to the
            # batch get and the count (tests.consistency): then the demo runs again.
            "await:    save again with a stale doc -> <Conflict: second>",
            "await:    after overwrite() -> <Success: 2 docs updated>",
            "await:    the database now holds 5 documents",
        ]:
            assert line in out, out
        assert "deleted corduroy_demo_" in out

    eventually(run_once, timeout=30)
