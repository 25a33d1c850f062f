"""Where the project keeps things: one place, so notebooks, CLI and tests agree.

Every location can be moved with an environment variable, which is how the tests
keep their runs out of the committed `reports/` folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for a while (a notebook's kernel, a run into a scratch folder), restored
    afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """The git-ignored folder the minBERT CSV files are fetched into."""
    return _env_path("MINBERT_DATA_DIR", PROJECT_ROOT / "data")


def data_mirror() -> Path | None:
    """A local folder holding copies of the CSV files, if there is one."""
    value = os.environ.get("MINBERT_DATA_MIRROR")
    if value:
        return Path(value).expanduser().resolve()
    default = PROJECT_ROOT.parent / "shared" / "data" / "minbert"
    return default if default.is_dir() else None


def reports_dir(profile: str | None = None) -> Path:
    """Rendered HTML reports; results JSON files live in its `results/` folder. The smoke profile's (the
    tests') go to runs/smoke-reports/, out of the committed reports and of `git status`."""
    default = runs_dir() / "smoke-reports" if profile == "smoke" else PROJECT_ROOT / "reports"
    return _env_path("MINBERT_REPORTS_DIR", default)


def runs_dir() -> Path:
    """Checkpoints, TensorBoard logs, Optuna studies and prediction files."""
    return _env_path("MINBERT_RUNS_DIR", PROJECT_ROOT / "runs")


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"


def params_dir() -> Path:
    return PROJECT_ROOT / "params"
