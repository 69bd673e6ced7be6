"""Every code block in README.rst is checked, so the README cannot rot.

- ``.. code-block:: python`` blocks run: each top-level section's blocks are
  joined in order and run in a fresh interpreter with ``COUCHDB_URL`` set to
  the test server (``Couch()`` and ``Database("name")`` use it), after which
  the databases the section created are deleted.
- A python block whose first line is ``# examples/NAME.py`` is an excerpt of
  that example file (which tests/test_frameworks.py and friends run): it must
  appear in the file verbatim.
- ``.. code-block:: console`` lines starting with ``$ corduroy`` run as CLI
  commands; ``$ make X`` must name a Makefile target; ``$ pip install`` lines
  must name extras that setup.py declares.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.conftest import couch_request

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"


def parse_blocks() -> List[Tuple[str, str, str]]:
    """(section title, language, code) for every code block, in order."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = []
    section = "(top)"
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"=+", nxt.strip() or "x") and len(nxt.strip()) >= len(line.strip()):
            section = line.strip()
        match = re.match(r"\.\. code-block:: (\w+)", line)
        if match:
            lang = match.group(1)
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                body.append(lines[i])
                i += 1
            blocks.append((section, lang, textwrap.dedent("\n".join(body)).strip("\n")))
            continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            # A bare literal block is not allowed: every block says what it is.
            raise AssertionError("README.rst line %d: use '.. code-block:: LANG' instead of '::'" % (i + 1))
        i += 1
    return blocks


BLOCKS = parse_blocks()


def python_sections() -> Dict[str, str]:
    sections: Dict[str, List[str]] = {}
    for section, lang, code in BLOCKS:
        if lang == "python" and not code.startswith("# examples/"):
            sections.setdefault(section, []).append(code)
    return {name: "\n\n".join(codes) for name, codes in sections.items()}


SECTIONS = python_sections()


def test_readme_has_runnable_examples():
    assert len(SECTIONS) >= 8
    assert any("make demo" in code for _, lang, code in BLOCKS if lang == "console")
    assert any("make test" in code for _, lang, code in BLOCKS if lang == "console")


def all_dbs(url):
    status, names = couch_request(url, "GET", "/_all_dbs")
    assert status == 200
    return set(names)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_python_blocks_run(section, couch_url):
    """Each section runs, and deletes the databases it created: a reader who runs it leaves nothing behind."""
    code = SECTIONS[section]
    before = all_dbs(couch_url)
    env = dict(os.environ, COUCHDB_URL=couch_url, PYTHONPATH=str(ROOT))
    left = set()
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=180, cwd=str(ROOT))
    finally:
        left = {name for name in all_dbs(couch_url) - before if not name.startswith("_")}
        for name in left:
            couch_request(couch_url, "DELETE", "/" + name.replace("/", "%2F"))
    assert proc.returncode == 0, "section %r failed:\n%s\n%s" % (section, proc.stdout[-3000:], proc.stderr[-3000:])
    assert not left, "section %r left databases behind: %s" % (section, sorted(left))


@pytest.mark.parametrize("code", [c for _, lang, c in BLOCKS if lang == "python" and c.startswith("# examples/")])
def test_example_excerpts_match_their_files(code):
    first, _, rest = code.partition("\n")
    path = ROOT / first[2:].strip()
    assert path.exists(), path
    text = path.read_text(encoding="utf-8")
    for chunk in rest.split("\n...\n"):
        assert chunk.strip() in text, "README excerpt not found verbatim in %s:\n%s" % (path, chunk)


CONSOLE = [c for _, lang, c in BLOCKS if lang == "console"]


def test_console_make_and_pip_lines_name_real_targets_and_extras():
    makefile = (ROOT / "Makefile").read_text()
    setup = (ROOT / "setup.py").read_text()
    for code in CONSOLE:
        for line in code.splitlines():
            line = line.strip()
            if line.startswith("$ make "):
                target = line.split()[2]
                assert re.search(r"^%s:" % re.escape(target), makefile, re.M), "no Makefile target %r" % target
            if line.startswith("$ pip install"):
                for extra in re.findall(r"\[(\w+)\]", line):
                    assert '"%s"' % extra in setup, "setup.py declares no extra %r" % extra


def test_console_corduroy_commands_run(couch_url):
    lines = [line.strip()[2:] for code in CONSOLE for line in code.splitlines()
             if line.strip().startswith("$ corduroy ")]
    if not lines:
        pytest.skip("the README shows no corduroy command")
    env = dict(os.environ, COUCHDB_URL=couch_url, PYTHONPATH=str(ROOT))
    before = all_dbs(couch_url)
    try:
        for line in lines:
            argv = shlex.split(line)
            if "|" in argv or ">" in argv or "<" in argv:
                proc = subprocess.run(["bash", "-c", line.replace("corduroy", "%s -m corduroy" % sys.executable, 1)],
                                      env=env, capture_output=True, text=True, timeout=120, cwd=str(ROOT))
            else:
                proc = subprocess.run([sys.executable, "-m", "corduroy"] + argv[1:], env=env, capture_output=True,
                                      text=True, timeout=120, cwd=str(ROOT))
            assert proc.returncode == 0, "%s\n%s" % (line, proc.stderr[-2000:])
    finally:
        for name in all_dbs(couch_url) - before:
            couch_request(couch_url, "DELETE", "/" + name)
