"""The GPU run's first step (scripts/gpu/run.sh): everything the notebooks need imports, papermill finds a
kernel, and our BERT matches transformers' on this machine's device with the carried checkpoint.
Exits non-zero, saying which, when one of them does not hold: then nothing is run."""

from __future__ import annotations

import importlib
import sys

import torch

MODULES = ("papermill", "nbclient", "ipykernel", "IPython", "ipywidgets", "optuna", "sqlalchemy", "alembic",
           "pydantic", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "scipy", "sklearn",
           "matplotlib", "seaborn", "tabulate", "yaml", "tqdm", "torch.utils.tensorboard",
           "minbert.experiments", "minbert.final", "minbert.report.index", "minbert.runner", "minbert.peer")
SENTENCES = ["a gripping, beautifully acted film .", "the plot makes no sense at all .",
             "How do I learn Python quickly?", "What is the fastest way to learn Python?"]
TOLERANCE = 1e-4  # float32 on both sides; the CPU test holds 1e-5


def main() -> int:
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if missing:
        print("cannot import: " + "; ".join(missing))
        return 1
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        kernel = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        print("papermill finds no python3 kernel")
        return 1
    from minbert.parity import compare_with_transformers
    from minbert.records import library_versions

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device {device} ({name}); kernel {kernel.argv[0]}; "
          + ", ".join(f"{k} {v}" for k, v in library_versions().items()))
    parity = compare_with_transformers(None, SENTENCES, device)
    print(f"parity with transformers on {device}: {parity}")
    worst = max(parity["max_abs_diff_last_hidden_state"], parity["max_abs_diff_pooler_output"])
    if worst > TOLERANCE:
        print(f"our BERT differs from transformers' by {worst:.2e} > {TOLERANCE:g} on {device}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
