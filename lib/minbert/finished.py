"""Finished runs, kept as each one ends.

A notebook killed part way (a GPU lease running out, a CPU session ending) keeps the runs it
finished, and a rerun with `resume: true` takes them instead of training them again: on the same
machine, and on a fresh one that was given the files (the GPU run carries them from lease to lease).
One compressed NumPy file a run, runs/finished/<notebook>.<profile>/<name>.npz: its record and
settings (JSON), the code it was trained with, and its arrays: for a multitask run the dev predictions
per task (class labels in one byte each, STS scores as float32: what a comparison resamples), about
10 KB with all of QQP's 40,429 dev pairs, and where asked its raw dev outputs (what an ensemble
averages: float32, 0.15 MB more for QQP). Its weights stay in its checkpoint folder.

A run is taken only with the settings it ran with and the code that trains it: the fingerprint of
the library's training sources (everything under lib/minbert but the report package and the
command-line front: `NOT_TRAINING_MODULES`), torch's version and the checkpoint. A commit that changes
only pages, scripts, the command line or the README keeps the runs; a change to the trainer trains
them again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minbert import paths, tasks
from minbert.config import MultitaskSettings
from minbert.epochs import Epoch
from minbert.files import atomic_path
from minbert.records import RunRecord, checkpoint_origin
from minbert.training import Trained, settings_changes

LIBRARY = Path(__file__).resolve().parent
NOT_TRAINING = frozenset({"report", "templates", "__pycache__"})  # what only draws pages
# What only starts runs from the command line, holds their locks or quotes the study: a run's knobs reach
# it as settings, which key a finished run on their own, so a change here leaves the runs as they were.
NOT_TRAINING_MODULES = frozenset({"__main__.py", "cli.py", "runner.py", "runlock.py", "published.py"})


def finished_path(notebook: str, profile: str, name: str) -> Path:
    return paths.runs_dir() / "finished" / f"{notebook}.{profile}" / f"{name}.npz"


def training_sources(root: Path = LIBRARY) -> list[Path]:
    """The library files a run's results depend on: its Python and C sources and the data checksums."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".c", ".sha256")
                  and not NOT_TRAINING.intersection(p.relative_to(root).parts)
                  and p.relative_to(root).as_posix() not in NOT_TRAINING_MODULES)


@functools.cache
def sources_fingerprint(root: Path = LIBRARY) -> str:
    digest = hashlib.sha256()
    for path in training_sources(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_fingerprint(root: Path = LIBRARY) -> str:
    """What a finished run is keyed by besides its settings: a hash of the training sources, torch's
    version and the checkpoint standing in for the embedded one (a carried copy names itself)."""
    text = f"{sources_fingerprint(root)}; torch {torch.__version__}; checkpoint {checkpoint_origin()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_run(notebook: str, profile: str, name: str, settings: dict[str, Any], record: RunRecord,
             outputs: dict[str, dict[str, np.ndarray | torch.Tensor]]) -> Path:
    """Write a finished run's file, whole or not at all. `outputs`: split -> task -> raw outputs."""
    meta = {"settings": settings, "code": code_fingerprint(), "record": record.to_dict()}
    arrays = {f"{split}/{task}": _host(values) for split, by_task in outputs.items()
              for task, values in by_task.items()}
    path = finished_path(notebook, profile, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def load_run(notebook: str, profile: str, name: str,
             settings: dict[str, Any]) -> tuple[RunRecord, dict[str, dict[str, np.ndarray]]] | None:
    """A finished run's record and outputs (split -> task -> array) if one was trained with these
    `settings` by this code; None otherwise (the run trains afresh)."""
    found = _read(finished_path(notebook, profile, name))
    if found is None or found[0]["settings"] != settings:
        return None
    return RunRecord.from_dict(found[0]["record"]), found[1]


def _read(path: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("code") != code_fingerprint():
                return None
            outputs: dict[str, dict[str, np.ndarray]] = {}
            for key in stored.files:
                if key != "meta":
                    split, task = key.split("/", 1)
                    outputs.setdefault(split, {})[task] = stored[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a finished run's file ({exc}); delete it to train the run "
                         "again") from None
    return meta, outputs


def _host(values: np.ndarray | torch.Tensor) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


# ----------------------------------------------------------------------------- multitask runs

def save_finished(notebook: str, settings: MultitaskSettings, record: RunRecord, trained: Trained,
                  keep_outputs: bool = False) -> Path:
    """A multitask run's file: its settings, record and dev predictions (labels as int8), with
    `keep_outputs` its raw dev outputs too."""
    predictions = {task: values.astype(np.int8) if tasks.get(task).kind != "regression" else values
                   for task, values in trained.dev_predictions.items()}
    arrays = {"dev": predictions, **({"outputs": trained.dev_outputs} if keep_outputs else {})}
    return save_run(notebook, settings.profile, record.name, settings.model_dump(mode="json"), record, arrays)


def load_finished(notebook: str, settings: MultitaskSettings, name: str) -> tuple[RunRecord, Trained] | None:
    """The finished multitask run `name` of this notebook and profile, if one ran with this code and
    these settings (any knob but the device and `resume` different: None, and the run trains afresh):
    its record, and its dev predictions (labels as `evaluation.dev_metrics` gives them, int64) and
    outputs (where they were kept) as the run left them."""
    found = _read(finished_path(notebook, settings.profile, name))
    if found is None or settings_changes(found[0]["settings"], settings):
        return None
    record = RunRecord.from_dict(found[0]["record"])
    outputs = {task: torch.from_numpy(values) for task, values in found[1].get("outputs", {}).items()}
    predictions = {task: values.astype(np.int64) if tasks.get(task).kind != "regression" else values
                   for task, values in found[1].get("dev", {}).items()}
    trained = Trained([Epoch.from_dict(e) for e in record.history], dev_outputs=outputs,
                      dev_predictions=predictions)
    return record, trained
