"""The pins in pyproject.toml agree with requirements.lock (the set that is installed)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(spec: str) -> str:
    return re.split(r"[\[=<>!~ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_every_pyproject_pin_is_the_locked_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    locked = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            locked[_name(name)] = version.split(";")[0].strip()
    pins = {_name(s): s.split("==", 1)[1].split(";")[0].strip() for s in specs if "==" in s}
    assert pins, "pyproject.toml pins nothing"
    missing = sorted(n for n in pins if n not in locked)
    assert not missing, f"pinned in pyproject.toml but not in requirements.lock: {missing}"
    differ = {n: (v, locked[n]) for n, v in pins.items() if locked[n] != v}
    assert not differ, f"pyproject.toml vs requirements.lock: {differ}"
    # what the pipeline imports directly is declared, not only pulled in by another package
    for needed in ("prefect", "polars", "matplotlib", "psycopg2-binary", "pika", "s3fs"):
        assert needed in pins, needed
