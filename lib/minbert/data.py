"""The minBERT data: fetching the files, parsing every row, token ids, and batching.

The CSV files are tab-separated with a header. Each physical line is parsed on
its own, so a stray quote can break only its own row and never swallows the rows
after it; a malformed row is named with file, line number and reason, and is
skipped with a warning (or stops the load when `strict`).
"""

from __future__ import annotations

import csv
import hashlib
import random
import shutil
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from minbert import paths, tasks
from minbert.attention import Packing
from minbert.files import atomic_path, remove_partials
from minbert.runtime import to_device
from minbert.tasks import Task

DEFAULT_URL_BASE = "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data/"


class DataError(ValueError):
    """A data file is missing, fails its checksum, or holds a malformed row."""


# ----------------------------------------------------------------------------- fetching

def known_checksums() -> dict[str, str]:
    """SHA-256 of every data file the project knows, kept in the package."""
    text = resources.files("minbert").joinpath("checksums.sha256").read_text()
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_verified: dict[Path, tuple[int, int, bool]] = {}


def check_known_checksum(path: Path) -> None:
    """A data file the project knows must be the file it knows: a changed, truncated or half-copied
    file is one clear error, not a quietly smaller task (checked once per size and mtime)."""
    expected = known_checksums().get(path.name)
    if expected is None or not path.is_file():
        return
    stat = path.stat()
    cached = _verified.get(path)
    if cached is None or cached[:2] != (stat.st_size, stat.st_mtime_ns):
        cached = (stat.st_size, stat.st_mtime_ns, sha256_of(path) == expected)
        _verified[path] = cached
    if not cached[2]:
        raise DataError(f"{path}: differs from the known {path.name} (SHA-256 mismatch: changed, truncated "
                        "or half-copied); run `python -m minbert fetch-data` to restore it")


def fetch_file(name: str, dest_dir: Path, mirror: Path | None, url_base: str | None,
               expected_sha256: str | None) -> Path:
    """Copy or download one file into dest_dir, checked, via a temporary file.

    The file appears under its final name only once it is complete and its
    checksum matches, so an interrupted or corrupt transfer leaves nothing behind.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    if dest.exists() and (expected_sha256 is None or sha256_of(dest) == expected_sha256):
        return dest
    corrupt = dest.exists()  # a local copy that fails its checksum: replaced, or removed below
    sources = []
    if mirror is not None and (mirror / name).is_file():
        sources.append(("mirror", str(mirror / name)))
    if url_base:
        sources.append(("url", url_base.rstrip("/") + "/" + name))
    errors = [] if sources else [f"not in the mirror ({mirror}) and no URL base is set"]
    for kind, source in sources:
        try:
            with atomic_path(dest) as tmp:
                with open(tmp, "wb") as out:
                    if kind == "mirror":
                        with open(source, "rb") as src:
                            shutil.copyfileobj(src, out)
                    else:
                        with urllib.request.urlopen(source, timeout=60) as response:
                            shutil.copyfileobj(response, out)
                digest = sha256_of(tmp)
                if expected_sha256 is not None and digest != expected_sha256:
                    raise DataError(f"checksum mismatch: got {digest}, expected {expected_sha256}")
            return dest
        except (OSError, DataError) as exc:
            errors.append(f"{kind} {source}: {exc}")
    if corrupt:
        dest.unlink()
        errors.append(f"the local copy {dest} failed its checksum and was removed")
    raise DataError(f"{name}: could not be fetched:\n  " + "\n  ".join(errors))


def fetch_data(dest_dir: Path | None = None, mirror: Path | None = None,
               url_base: str | None = DEFAULT_URL_BASE) -> dict[str, Path]:
    """Fetch every data file with a known checksum; report what was fetched.

    `quora-train.csv` has no copy in the mirror; it is fetched only if it can be
    had (mirror or URL) and a checksum for it is recorded, else QQP trains on
    `quora-train-subset.csv`.
    """
    dest_dir = dest_dir or paths.data_dir()
    mirror = mirror if mirror is not None else paths.data_mirror()
    remove_partials(dest_dir)  # what an interrupted fetch left
    fetched = {}
    for name, digest in sorted(known_checksums().items()):
        fetched[name] = fetch_file(name, dest_dir, mirror, url_base, digest)
    return fetched


# ----------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class Example:
    """One row: a sentence or a sentence pair, with its label (None on test files)."""

    id: str
    texts: tuple[str, ...]
    label: float | int | None


@dataclass(frozen=True)
class RowProblem:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.reason}"


@dataclass
class TaskSplit:
    """The parsed rows of one task split, where they came from, and what was skipped."""

    task: str
    split: str
    source: str
    examples: list[Example]
    skipped: list[RowProblem]

    def __len__(self) -> int:
        return len(self.examples)

    def summary(self) -> dict:
        """Source, rows and skipped rows; the skipped ones named (file line and reason), a few at most."""
        info = {"source": self.source, "size": len(self.examples), "skipped": len(self.skipped)}
        if self.skipped:
            shown = "; ".join(f"line {p.line}: {p.reason}" for p in self.skipped[:3])
            info["skipped rows"] = shown + ("; ..." if len(self.skipped) > 3 else "")
        return info

    def subset(self, limit: int | None, seed: int = 0) -> TaskSplit:
        """A fixed, seeded subsample (a profile's budget); all rows if limit is None."""
        if limit is None or limit >= len(self.examples):
            return self
        rng = random.Random(seed)
        keep = sorted(rng.sample(range(len(self.examples)), limit))
        return TaskSplit(self.task, self.split, self.source,
                         [self.examples[i] for i in keep], self.skipped)

    def carve(self, size: int, seed: int = 0) -> tuple[TaskSplit, TaskSplit]:
        """Split off `size` seeded rows as a held-out split (for every selection: epoch, tuning,
        headline run); returns (the rest, the held-out rows), disjoint."""
        if not 0 < size < len(self.examples):
            raise DataError(f"{self.source}: cannot hold out {size} of its {len(self.examples)} {self.task} "
                            f"rows; the held-out split needs at least one row and leaves at least one")
        chosen = set(random.Random(seed).sample(range(len(self.examples)), size))
        rest = [e for i, e in enumerate(self.examples) if i not in chosen]
        held = [e for i, e in enumerate(self.examples) if i in chosen]
        return (TaskSplit(self.task, self.split, self.source, rest, self.skipped),
                TaskSplit(self.task, "heldout", self.source, held, []))


def parse_task_file(path: Path, spec: Task, labelled: bool = True,
                    strict: bool = False) -> tuple[list[Example], list[RowProblem]]:
    """Parse and check every row of one task file.

    Returns the valid examples and the problems of the rows that were skipped;
    with `strict`, the first problem raises DataError instead.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found (run `python -m minbert fetch-data`)")
    raw_lines = path.read_bytes().split(b"\n")
    lines, undecodable = [], {}
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            lines.append("\ufffd")  # a placeholder row, reported below
            undecodable[number] = f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
    if 1 in undecodable:
        raise DataError(f"{path.name}, line 1: header {undecodable[1]}")
    header = next(csv.reader([lines[0]], delimiter="\t"))
    needed = ("id", *spec.text_columns) + ((spec.label_column,) if labelled else ())
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path.name}, line 1: header {header} lacks column(s) {missing}")
    column = {name: header.index(name) for name in needed}
    examples: list[Example] = []
    problems: list[RowProblem] = []
    seen_ids: dict[str, int] = {}

    def problem(line_no: int, reason: str) -> None:
        p = RowProblem(path.name, line_no, reason)
        if strict:
            raise DataError(str(p))
        problems.append(p)

    last = len(lines)
    while last > 1 and lines[last - 1].strip() == "":
        last -= 1  # trailing newline(s) at the end of the file are not rows
    for line_no, line in enumerate(lines[1:last], start=2):
        if line_no in undecodable:
            problem(line_no, undecodable[line_no])
            continue
        if line.strip() == "":
            problem(line_no, "empty line")
            continue
        try:
            row = next(csv.reader([line.rstrip("\r")], delimiter="\t", strict=True))
        except csv.Error as exc:
            if "end of data" in str(exc):
                problem(line_no, "stray quote: a quoted field is not closed on its line "
                                 "and would swallow the text that follows")
            else:
                problem(line_no, f"bad quoting ({exc})")
            continue
        if len(row) != len(header):
            problem(line_no, f"expected {len(header)} columns, found {len(row)}")
            continue
        row_id = row[column["id"]].strip()
        if not row_id:
            problem(line_no, "empty id")
            continue
        texts = tuple(row[column[c]].strip() for c in spec.text_columns)
        empty = [c for c, t in zip(spec.text_columns, texts, strict=True) if not t]
        if empty:
            problem(line_no, f"empty {', '.join(empty)}")
            continue
        label = None
        if labelled:
            label, reason = spec.parse_label(row[column[spec.label_column]])
            if reason:
                problem(line_no, reason)
                continue
        if row_id in seen_ids:
            problem(line_no, f"duplicate id {row_id} (first on line {seen_ids[row_id]})")
            continue
        seen_ids[row_id] = line_no
        examples.append(Example(row_id, texts, label))
    return examples, problems


def resolve_file(task: str, split: str, data_dir: Path | None = None) -> Path:
    """The file a split reads, using the task's fallback when the main file is absent."""
    spec = tasks.get(task)
    data_dir = data_dir or paths.data_dir()
    main = data_dir / spec.files[split]
    if main.is_file() or split not in spec.fallback_files:
        return main
    return data_dir / spec.fallback_files[split]


def load_split(task: str, split: str, data_dir: Path | None = None,
               strict: bool = False, warn: bool = True) -> TaskSplit:
    """Parse one split of one task; warns once per skipped row (unless `warn` is off: a caller that
    reports the skipped rows itself, as `load_tasks` does in its summary)."""
    try:
        spec = tasks.get(task)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if split not in spec.files:
        raise DataError(f"unknown split {split!r} for {task}; known: {sorted(spec.files)}")
    path = resolve_file(task, split, data_dir)
    check_known_checksum(path)
    examples, problems = parse_task_file(path, spec, labelled=split != "test", strict=strict)
    for p in problems if warn else ():
        warnings.warn(f"skipped malformed row: {p}", stacklevel=2)
    return TaskSplit(task, split, path.name, examples, problems)


# ----------------------------------------------------------------------------- batching

def encode(tokenizer, split: TaskSplit, max_length: int, text: int = 0) -> list[list[int]]:
    """Token ids of one text column of each example, unpadded ([CLS] sentence [SEP]);
    `text=1` gives the second sentence of a pair, encoded on its own (bi-encoder)."""
    texts = [ex.texts[text] for ex in split.examples]
    return tokenizer(texts, truncation=True, max_length=max_length,
                     add_special_tokens=True)["input_ids"]


def encode_pairs(tokenizer, split: TaskSplit, max_length: int) -> tuple[list[list[int]], list[int]]:
    """Both sentences of each pair as one sequence, [CLS] a [SEP] b [SEP] (cross-encoder), cut to
    `max_length` by trimming the longer sentence first; and where the second segment starts."""
    encoded = tokenizer([ex.texts[0] for ex in split.examples], [ex.texts[1] for ex in split.examples],
                        truncation="longest_first", max_length=max_length, add_special_tokens=True,
                        return_token_type_ids=True)
    return encoded["input_ids"], [types.count(0) for types in encoded["token_type_ids"]]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0,
              second_starts: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch, not to a fixed length. With `second_starts`
    (pairs as one sequence), token type 1 from there to the end of each sequence."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if second_starts is not None:
        types = torch.zeros_like(ids)
        for i, (seq, start) in enumerate(zip(sequences, second_starts, strict=True)):
            types[i, start: len(seq)] = 1
        batch["token_type_ids"] = types
    return batch


def batch_indices(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0,
                  bucket: bool = True, bucket_batches: int = 50) -> Iterator[list[int]]:
    """Index lists of batches; with `bucket`, examples of similar length share a batch.

    Training order stays random: examples are shuffled, cut into buckets of
    `bucket_batches` batches, sorted by length inside each bucket, and the
    resulting batches are shuffled again. Evaluation (no shuffle) sorts globally.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    if bucket:
        if shuffle:
            size = batch_size * bucket_batches
            chunks = [order[i: i + size] for i in range(0, len(order), size)]
            order = [i for c in chunks for i in sorted(c, key=lambda j: lengths[j])]
        else:
            order.sort(key=lambda j: lengths[j])
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and bucket:
        rng.shuffle(batches)
    yield from batches


# ----------------------------------------------------------------------------- token ids

@dataclass
class TaskTensors:
    """One task split as token ids: sentence a, sentence b for pairs, and the labels. In
    cross-encoder form a pair is one sequence in `a`, its second sentence from `second_starts`."""

    task: str
    ids: list[str]
    a: list[list[int]]
    b: list[list[int]] | None
    labels: list | None
    second_starts: list[int] | None = None

    def __len__(self) -> int:
        return len(self.a)

    def lengths(self) -> list[int]:
        if self.b is None:
            return [len(t) for t in self.a]
        return [max(len(x), len(y)) for x, y in zip(self.a, self.b, strict=True)]

    def batch(self, idx: list[int], device: torch.device) -> dict:
        """The rows `idx` padded to their longest, on `device`, each sentence with its token packing
        (`Packing`, found here on the host: on a GPU, finding it there would wait for the device)."""
        starts = None if self.second_starts is None else [self.second_starts[i] for i in idx]
        out = {"a": on_device(pad_batch([self.a[i] for i in idx], second_starts=starts), device)}
        if self.b is not None:
            out["b"] = on_device(pad_batch([self.b[i] for i in idx]), device)
        if self.labels is not None:
            dtype = tasks.get(self.task).label_dtype
            out["labels"] = to_device(torch.tensor([self.labels[i] for i in idx], dtype=dtype), device)
        return out


def on_device(padded: dict[str, torch.Tensor], device: torch.device) -> dict:
    """A padded batch (`pad_batch`) on `device` with its token packing, found on the host first: found
    on a GPU, it would read the device."""
    moved: dict = {k: to_device(v, device) for k, v in padded.items()}
    moved["packing"] = Packing.from_mask(padded["attention_mask"]).to(device)
    return moved


def tensors_for(split: TaskSplit, tokenizer, max_length: int, cross_encoder: bool = False) -> TaskTensors:
    """Token ids of a task split: each sentence of a pair on its own (bi-encoder), or the two
    together as one sequence with token types (cross-encoder)."""
    pair = tasks.get(split.task).is_pair
    labels = None if split.split == "test" else [e.label for e in split.examples]
    ids = [e.id for e in split.examples]
    if pair and cross_encoder:
        joint, starts = encode_pairs(tokenizer, split, max_length)
        return TaskTensors(split.task, ids, joint, None, labels, starts)
    return TaskTensors(split.task, ids, encode(tokenizer, split, max_length),
                       encode(tokenizer, split, max_length, text=1) if pair else None, labels)


@dataclass
class TaskData:
    """The rows and token ids of the tasks a run uses, per split, and what was loaded."""

    splits: dict[str, dict[str, TaskSplit]]  # split -> task -> parsed rows
    tensors: dict[str, dict[str, TaskTensors]]  # split -> task -> token ids
    summary: dict  # task -> split -> {source, size, skipped[, note]}

    @property
    def train(self) -> dict[str, TaskTensors]:
        return self.tensors["train"]

    @property
    def dev(self) -> dict[str, TaskTensors]:
        return self.tensors["dev"]

    @property
    def test(self) -> dict[str, TaskTensors]:
        return self.tensors["test"]

    @property
    def heldout(self) -> dict[str, TaskTensors]:
        """The held-out rows carved from train (empty without `heldout_sizes`): what selections use."""
        return self.tensors.get("heldout", {})

    @property
    def dev_splits(self) -> dict[str, TaskSplit]:
        """The dev rows, for error analysis."""
        return self.splits["dev"]

    @property
    def dev_sizes(self) -> dict[str, int]:
        """Dev rows per task: what a score's margin of error depends on."""
        return {task: len(split) for task, split in self.splits["dev"].items()}


def load_tasks(tokenizer, max_length: int, *, names: tuple[str, ...] | None = None,
               train_limits: dict[str, int | None] | None = None,
               dev_limits: dict[str, int | None] | None = None,
               seed: int = 0, strict: bool = False, cross_encoder: bool = False,
               test_limit: int | None = None, heldout_sizes: dict[str, int] | None = None) -> TaskData:
    """Parse, subsample (seeded; a task missing from `train_limits` or `dev_limits` keeps all its rows) and
    tokenise the tasks' train, dev and test-student splits; pairs as one sequence each with
    `cross_encoder`. A test file that is not there is noted in the summary, not an error.

    `heldout_sizes` carves a seeded held-out split from each task's whole train file before the
    train subsample is drawn from the rest: the rows every selection is made on, never trained on,
    and the same rows whatever the train limits (so tuning trials and runs select on one split)."""
    names = tasks.MULTITASK if names is None else names
    limits = {"train": train_limits or {}, "dev": dev_limits or {},
              "test": dict.fromkeys(names, test_limit)}
    splits: dict[str, dict[str, TaskSplit]] = {"train": {}, "heldout": {}, "dev": {}, "test": {}}
    summary: dict = {}
    for task in names:
        summary[task] = {}
        for split_name in ("train", "dev", "test"):
            if split_name == "test" and not resolve_file(task, "test").is_file():
                summary[task]["test"] = {"source": tasks.get(task).files["test"], "size": 0, "skipped": 0,
                                         "note": "file not available"}
                continue
            split = load_split(task, split_name, strict=strict, warn=False)  # the summary names them
            if split_name != "test" and not split.examples:
                raise DataError(f"{split.source}: no valid {split_name} rows for {task} "
                                f"({len(split.skipped)} skipped); a run needs at least one")
            held = None
            if split_name == "train" and (heldout_sizes or {}).get(task):
                split, held = split.carve(heldout_sizes[task], seed)
            split = split.subset(limits[split_name].get(task), seed)
            splits[split_name][task] = split
            summary[task][split_name] = split.summary()
            if held is not None:
                splits["heldout"][task] = held
                summary[task]["heldout"] = {**held.summary(), "note": f"seeded, carved from {held.source}"}
    tensors = {name: {task: tensors_for(split, tokenizer, max_length, cross_encoder)
                      for task, split in by_task.items()} for name, by_task in splits.items()}
    return TaskData(splits, tensors, summary)
