"""Finished runs, kept as each one ends.

A notebook killed part way (a GPU lease running out, a CPU session ending) keeps the runs it
finished, and a rerun with `resume: true` takes them instead of training them again: on the same
machine, and on a fresh one that was given the files (the GPU run carries them from lease to lease).
One JSON file a run, under runs/finished/<notebook>.<profile>/<name>.json: its record, its settings,
the commit it ran at and its dev outputs and predictions (what a comparison resamples), a few hundred
KB; its weights stay in its checkpoint folder. A run is taken only at the commit and with the settings
it ran with: after a change of code it trains again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from minbert import paths
from minbert.config import MultitaskSettings
from minbert.epochs import Epoch
from minbert.files import atomic_write_text
from minbert.records import RunRecord, git_state
from minbert.training import Trained, settings_changes


def finished_path(notebook: str, profile: str, name: str) -> Path:
    return paths.runs_dir() / "finished" / f"{notebook}.{profile}" / f"{name}.json"


def _array(values: np.ndarray | torch.Tensor) -> dict:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return {"dtype": str(array.dtype), "values": array.tolist()}  # exact: floats print as they are


def save_finished(notebook: str, settings: MultitaskSettings, record: RunRecord, trained: Trained) -> Path:
    """Write a finished run's file, whole or not at all."""
    payload = {"settings": settings.model_dump(mode="json"), "commit": git_state()[0],
               "record": record.to_dict(),
               "dev_outputs": {t: _array(v) for t, v in trained.dev_outputs.items()},
               "dev_predictions": {t: _array(v) for t, v in trained.dev_predictions.items()}}
    return atomic_write_text(finished_path(notebook, settings.profile, record.name), json.dumps(payload))


def load_finished(notebook: str, settings: MultitaskSettings, name: str) -> tuple[RunRecord, Trained] | None:
    """The finished run `name` of this notebook and profile, if one ran at this commit with these
    settings (another commit, or any knob but the device and `resume` different: None, and the run
    trains afresh)."""
    path = finished_path(notebook, settings.profile, name)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("commit") != git_state()[0] or settings_changes(payload["settings"], settings):
            return None
        record = RunRecord.from_dict(payload["record"])
        outputs = {t: torch.tensor(np.asarray(v["values"], dtype=v["dtype"]))
                   for t, v in payload["dev_outputs"].items()}
        predictions = {t: np.asarray(v["values"], dtype=v["dtype"])
                       for t, v in payload["dev_predictions"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a finished run's file ({exc}); delete it to train the run "
                         "again") from None
    trained = Trained([Epoch.from_dict(e) for e in record.history], dev_outputs=outputs,
                      dev_predictions=predictions)
    return record, trained
