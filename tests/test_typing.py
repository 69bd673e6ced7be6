"""The declared types: what a mypy user gets from each calling style.

tests/typecheck/check_types.py states them with ``assert_type`` (a
``Document`` from ``db.get(id)`` blocking and from ``await db.get(id)``, an
``Operation[Document]`` with ``callback=``...) and marks with ``type: ignore``
the mistakes mypy must catch; this runs mypy over it with the project's
configuration, as ``make lint`` does.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_declared_types_are_what_the_typed_example_asserts() -> None:
    pytest.importorskip("mypy")
    pytest.importorskip("typing_extensions")
    proc = subprocess.run(
        # Errors inside the packages are `make lint`'s business; this checks what a user's code sees.
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--follow-imports=silent",
         "tests/typecheck"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
