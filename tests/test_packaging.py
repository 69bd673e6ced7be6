"""Packaging: the sdist and the wheel build, install into a fresh virtualenv, and run.

How this stays offline and deterministic.  ``pip install`` of the package
itself is real: a fresh venv (``python -m venv --without-pip``; pip runs from
this environment with ``pip --python``), ``--no-index`` so nothing is
downloaded.  Its *dependencies* are not downloaded either: the fresh venv
gets a ``.pth`` line pointing at a directory of symlinks to exactly the
distributions the wheel declares (``Requires-Dist`` without extras, markers
evaluated, and what those require in turn), taken from the environment
running the tests.  So the wheel's own files come from the fresh venv and
its dependencies from nothing but what it declares: an import of an
undeclared package fails there.  What this does not check is that PyPI can
resolve the declared versions, which every ``pip install -e .[dev]`` of the
development environment does anyway.  (Installing the dependencies from PyPI
here instead would make the suite depend on the network and take minutes.)

The artifacts are built from a copy of the checkout (the build writes
``build/`` and ``*.egg-info`` into its source tree) with ``python -m build
--no-isolation``, which builds the sdist and then the wheel *from the
sdist*, so a file missing from the sdist breaks the wheel build.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Set

import pytest

from corduroy import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".*", "node_modules", "build", "dist", "*.egg-info", "__pycache__")


def _run(*cmd: object, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(map(str, cmd)), done.stdout, done.stderr)
    return done


def _requirements(names: Iterable[str]) -> Set[str]:
    """The distributions ``names`` require, transitively (markers evaluated, no extras), as lower-case names."""
    from packaging.requirements import Requirement

    seen: Set[str] = set()
    todo = list(names)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(req.name)
        assert dist.version in req.specifier or not req.specifier, \
            "%s %s does not satisfy %s" % (req.name, dist.version, req)
        todo.extend(dist.requires or ())
    return seen


def _link_distributions(names: Iterable[str], into: Path) -> None:
    """Symlink every top-level file and directory of the distributions ``names`` into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for name in names:
        dist = importlib.metadata.distribution(name)
        base = Path(str(dist.locate_file("")))
        for entry in {f.parts[0] for f in dist.files or () if f.parts and f.parts[0] != ".."}:
            target = into / entry
            if not target.exists() and (base / entry).exists():
                target.symlink_to(base / entry)


def _fresh_venv(path: Path, deps: Path) -> Path:
    """A new venv at ``path`` (no pip) that finds its dependencies in ``deps``; returns its python."""
    _run(sys.executable, "-m", "venv", "--without-pip", path)
    python = path / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # A .pth line is appended to sys.path after site-packages: the venv's own install wins.
    (Path(purelib) / "_corduroy_test_deps.pth").write_text(str(deps) + "\n")
    return python


def _pip_install(python: Path, *args: object, cwd: Path = ROOT) -> None:
    _run(sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check", "install",
         "--no-index", "--no-deps", *args, cwd=cwd)


def _build_requires() -> List[str]:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r"^requires\s*=\s*(\[[^\]]*\])", text, re.M)
    assert match, "pyproject.toml has no [build-system] requires"
    return ast.literal_eval(match.group(1))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    """A copy of the checkout, without the virtualenvs, caches and build output."""
    copy = work / "src"
    shutil.copytree(ROOT, copy, ignore=SKIP, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def artifacts(work: Path, source: Path) -> Dict[str, Path]:
    """The sdist and the wheel, built as a release would build them."""
    try:
        import build  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        pytest.fail("building needs the `build` and `wheel` packages: pip install -e '.[dev]'")
    out = work / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source, timeout=300)
    wheels = list(out.glob("corduroy-*.whl"))
    sdists = list(out.glob("corduroy-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def runtime_deps(work: Path, artifacts: Dict[str, Path]) -> Path:
    """A directory holding exactly the distributions the wheel requires at run time."""
    with zipfile.ZipFile(artifacts["wheel"]) as zf:
        meta = zf.read("corduroy-%s.dist-info/METADATA" % __version__).decode()
    declared = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    deps = work / "runtime-deps"
    _link_distributions(_requirements(declared), deps)
    return deps


def _check_installed(python: Path, venv: Path, couch_url: str, tmp: Path) -> None:
    """The package in ``venv`` imports from there, and its command works against the server."""
    where = _run(python, "-c", "import corduroy, loop, corduroy.cli; print(corduroy.__file__); print(loop.__file__)",
                 cwd=tmp).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), where
    script = venv / "bin" / "corduroy"
    assert _run(script, "--version", cwd=tmp).stdout.strip() == "corduroy " + __version__
    welcome = json.loads(_run(python, "-m", "corduroy", "--url", couch_url, "info", cwd=tmp).stdout)
    assert "version" in welcome
    # The progress bar's library (tqdm) is a declared dependency too.
    (tmp / "docs.jsonl").write_text('{"_id": "a"}\n{"_id": "b"}\n')
    name = "test_packaging_%s" % venv.name.replace("-", "_")
    try:
        done = _run(script, "--url", couch_url, "--progress", "load", "--create", name, tmp / "docs.jsonl", cwd=tmp)
        assert json.loads(done.stdout)["loaded"] == 2 and "2/2" in done.stderr
    finally:
        from tests.conftest import couch_request

        couch_request(couch_url, "DELETE", "/" + name)
    typed = _run(python, "-c", "import corduroy, loop, os; print(all(os.path.exists(os.path.join("
                               "os.path.dirname(m.__file__), 'py.typed')) for m in (corduroy, loop)))", cwd=tmp)
    assert typed.stdout.strip() == "True"


def test_wheel_contents_and_metadata(artifacts: Dict[str, Path]) -> None:
    wheel_path = artifacts["wheel"]
    assert wheel_path.name == "corduroy-%s-py3-none-any.whl" % __version__
    with zipfile.ZipFile(wheel_path) as zf:
        names = set(zf.namelist())
        info = "corduroy-%s.dist-info/" % __version__
        meta = zf.read(info + "METADATA").decode()
        entry_points = zf.read(info + "entry_points.txt").decode()
    for needed in ("corduroy/__init__.py", "corduroy/__main__.py", "corduroy/_version.py", "corduroy/py.typed",
                   "corduroy/cli/__init__.py", "corduroy/cli/app.py", "loop/__init__.py", "loop/py.typed",
                   "loop/backends/__init__.py"):
        assert needed in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
    assert re.search(r"^Version: %s$" % re.escape(__version__), meta, re.M)
    requires = re.findall(r"^Requires-Dist: (\S+)", meta, re.M)
    for dep in ("pycurl", "simplejson", "tqdm", "uvloop"):
        assert any(r.lower().startswith(dep) for r in requires), requires
    extras = set(re.findall(r"^Provides-Extra: (\S+)", meta, re.M))
    assert {"tornado", "bench", "dev"} <= extras
    assert re.search(r"^\[console_scripts\]\s*\ncorduroy = corduroy\.__main__:main$", entry_points, re.M)


def test_sdist_contents(artifacts: Dict[str, Path]) -> None:
    with tarfile.open(artifacts["sdist"]) as tf:
        names = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
    for needed in ("setup.py", "pyproject.toml", "README.rst", "corduroy/_version.py", "corduroy/py.typed",
                   "corduroy/cli/load.py", "loop/py.typed", "loop/curl.py"):
        assert needed in names


def test_the_wheel_installs_into_a_fresh_venv(work: Path, artifacts: Dict[str, Path], runtime_deps: Path,
                                              couch_url: str, tmp_path: Path) -> None:
    venv = work / "venv-wheel"
    python = _fresh_venv(venv, runtime_deps)
    _pip_install(python, artifacts["wheel"])
    _check_installed(python, venv, couch_url, tmp_path)


def test_pip_install_dot_into_a_fresh_venv(work: Path, source: Path, runtime_deps: Path, couch_url: str,
                                           tmp_path: Path) -> None:
    # The build backend (setuptools, wheel) comes from here too: --no-build-isolation, nothing downloaded.
    deps = work / "build-deps"
    shutil.copytree(runtime_deps, deps, symlinks=True)
    _link_distributions(_requirements(_build_requires()), deps)
    venv = work / "venv-source"
    python = _fresh_venv(venv, deps)
    _pip_install(python, "--no-build-isolation", ".", cwd=source)
    _check_installed(python, venv, couch_url, tmp_path)


def test_the_version_is_in_one_place() -> None:
    assert importlib.metadata.version("corduroy") == __version__
    literal = re.compile(r"""["']%s["']""" % re.escape(__version__))
    holders = [str(p.relative_to(ROOT)) for pattern in ("*.py", "*.toml", "*.cfg", "corduroy/**/*.py", "loop/**/*.py")
               for p in ROOT.glob(pattern) if literal.search(p.read_text(encoding="utf-8"))]
    assert holders == ["corduroy/_version.py"]
    changes = (ROOT / "CHANGES.rst").read_text(encoding="utf-8")
    release = re.match(r"\d+(\.\d+)*", __version__).group(0)  # type: ignore[union-attr]
    first = re.search(r"^(\d+(?:\.\d+)*)\S* \(", changes, re.M)
    assert first and first.group(1) == release, "CHANGES.rst should start with the section for %s" % release
