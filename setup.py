"""Packaging for corduroy: an asynchronous CouchDB client on libcurl."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    text = (HERE / "corduroy" / "_version.py").read_text()
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M)
    if not match:
        raise RuntimeError("no __version__ in corduroy/_version.py")
    return match.group(1)


def read_long_description() -> str:
    readme = HERE / "README.rst"
    return readme.read_text() if readme.exists() else ""


setup(
    name="corduroy",
    version=read_version(),
    description="An asynchronous CouchDB client on libcurl, with callbacks, generators and await",
    long_description=read_long_description(),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    packages=find_packages(include=["corduroy*", "loop*"]),
    package_data={"corduroy": ["py.typed"], "loop": ["py.typed"]},
    include_package_data=True,
    zip_safe=False,
    python_requires=">=3.9",
    install_requires=[
        "pycurl>=7.45",
        "simplejson>=3.17",
        # Reactor backends (DESIGN.md 2): uvloop wherever it installs,
        # pyuv on CPython 3.9 (pyuv 1.4.0 builds only on CPython <= 3.9).
        'uvloop>=0.17; sys_platform != "win32" and python_version >= "3.10"',
        'pyuv>=1.4; python_version < "3.10"',
        # The `corduroy` command's progress bar (corduroy/cli).
        "tqdm>=4.60",
    ],
    extras_require={
        "dev": [
            "pytest",
            "hypothesis",
            "tornado>=6",
            "aiohttp",
            "trustme",
            "mypy",
            # tests/typecheck: assert_type (in typing itself only from Python 3.11).
            "typing_extensions",
            "ruff",
            "gevent",
            # tests/test_packaging.py builds the sdist and the wheel without build isolation.
            "build",
            "wheel",
            # tests/test_http2.py: a tiny h2c test server (pure Python, small).
            "h2",
        ],
        # `make docs`: the API reference (docs/conf.py; Sphinx's include-read event needs 7.3).
        "docs": ["sphinx>=7.3"],
        "tornado": ["tornado>=6"],
        "gevent": ["gevent"],
        "bench": [
            "aiohttp",
            "httpx",
            "requests",
            "tornado",
            "aiocouch",
            "couchdb",
            "matplotlib",
            "tqdm",
            "psutil",
            # httpcore probes for sniffio on every request; without it each one pays a failed import.
            "sniffio",
            # `python -m benchmarks --py-spy` samples each client process.
            "py-spy",
        ],
    },
    entry_points={"console_scripts": ["corduroy = corduroy.__main__:main"]},
    classifiers=[
        "Development Status :: 4 - Beta",
        "Framework :: AsyncIO",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Database :: Front-Ends",
    ],
)
