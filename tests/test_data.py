"""Fetching with checksums, row-by-row parsing of the task files, and batching."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

from minbert.data import (
    DataError,
    batch_indices,
    fetch_data,
    fetch_file,
    known_checksums,
    load_split,
    pad_batch,
    parse_task_file,
)
from minbert.tasks import TASKS

HEADER = "\tid\tsentence1\tsentence2\tis_duplicate\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def independent_row_count(path: Path) -> int:
    """Non-blank byte lines after the header, counted without any CSV parsing."""
    return sum(1 for line in path.read_bytes().split(b"\n")[1:] if line.strip())


# ----------------------------------------------------------------------------- fetching

def test_fetch_from_mirror_checks_every_file(data_dir, tmp_path):
    fetched = fetch_data(tmp_path, mirror=data_dir, url_base=None)
    assert set(fetched) == set(known_checksums())
    for name, path in fetched.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == known_checksums()[name]
    assert not list(tmp_path.glob(".*")), "no temporary files left behind"


def test_checksum_mismatch_leaves_nothing(data_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    good = (data_dir / "sts-dev.csv").read_bytes()
    (mirror / "sts-dev.csv").write_bytes(good[:-10])  # a truncated copy
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_file("sts-dev.csv", dest, mirror, None, known_checksums()["sts-dev.csv"])
    assert list(dest.iterdir()) == []


def test_failed_download_leaves_nothing_and_names_the_source(tmp_path):
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"sts-dev.csv: could not be fetched:\n  url file://"):
        fetch_file("sts-dev.csv", dest, None, (tmp_path / "nowhere").as_uri(), "0" * 64)
    assert list(dest.iterdir()) == []


def test_a_corrupt_existing_file_is_replaced(data_dir, tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "sts-dev.csv").write_text("garbage")
    path = fetch_file("sts-dev.csv", dest, data_dir, None, known_checksums()["sts-dev.csv"])
    assert path.read_bytes() == (data_dir / "sts-dev.csv").read_bytes()


# ----------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("row, reason", [
    ("1\ta\tq1?\tq2?\n", "expected 5 columns, found 4"),
    ("1\ta\t\tq2?\t1.0\n", "empty sentence1"),
    ("1\ta\tq1?\tq2?\t\n", "missing label (is_duplicate)"),
    ("1\ta\tq1?\tq2?\tyes\n", "non-numeric is_duplicate 'yes'"),
    ("1\ta\tq1?\tq2?\t2.0\n", "is_duplicate '2.0' out of range"),
    ("1\ta\t\"q1?\tq2?\t1.0\n", "stray quote"),
    ("1\t\tq1?\tq2?\t1.0\n", "empty id"),
])
def test_malformed_rows_are_named_with_line_and_reason(tmp_path, row, reason):
    path = write(tmp_path / "pairs.csv", HEADER + "0\tz\tfine?\tfine too?\t0.0\n" + row
                 + "2\tb\tafter?\tafter too?\t1.0\n")
    examples, problems = parse_task_file(path, TASKS["qqp"])
    assert [str(p).split(":")[0] for p in problems] == ["pairs.csv, line 3"]
    assert reason in problems[0].reason
    assert [e.id for e in examples] == ["z", "b"], "the rows around a bad one are kept intact"
    with pytest.raises(DataError, match=r"pairs.csv, line 3: .*" + reason.split()[0]):
        parse_task_file(path, TASKS["qqp"], strict=True)


def test_stray_quote_does_not_swallow_the_following_rows(tmp_path):
    lines = [HEADER.rstrip("\n"), '0\ta\t"Where is the\tq2\t0.0'] + [
        f"{i}\tid{i}\tquestion {i}?\tother {i}?\t1.0" for i in range(1, 6)]
    examples, problems = parse_task_file(write(tmp_path / "q.csv", "\n".join(lines) + "\n"), TASKS["qqp"])
    assert [p.line for p in problems] == [2]
    assert [e.texts[0] for e in examples] == [f"question {i}?" for i in range(1, 6)]


def test_quoted_fields_with_escaped_quotes_are_valid(tmp_path):
    row = '7\tq\t"""Which is correct: ""the"" or not?"""\tplain?\t0.0\n'
    examples, problems = parse_task_file(write(tmp_path / "q.csv", HEADER + row), TASKS["qqp"])
    assert problems == []
    assert examples[0].texts[0] == '"Which is correct: "the" or not?"'


def test_sts_scores_stay_real_numbers_and_are_range_checked(tmp_path):
    header = "\tid\tsentence1\tsentence2\tsimilarity\n"
    path = write(tmp_path / "sts.csv", header + "0\ta\tx\ty\t3.6\n1\tb\tx\ty\t5.2\n2\tc\tx\ty\tnan\n")
    examples, problems = parse_task_file(path, TASKS["sts"])
    assert [e.label for e in examples] == [3.6]
    assert ["out of range" in problems[0].reason, "non-finite" in problems[1].reason] == [True, True]


def test_missing_header_column_is_an_error(tmp_path):
    path = write(tmp_path / "bad.csv", "\tid\tsentence\n0\ta\tgood\n")
    with pytest.raises(DataError, match=r"bad.csv, line 1: .*lacks column\(s\) \['sentiment'\]"):
        parse_task_file(path, TASKS["sst"])


@pytest.mark.parametrize("task, split", [(t, s) for t in TASKS for s in TASKS[t].files
                                         if (t, s) != ("qqp", "test")])
def test_every_real_row_is_kept_or_reported(data_dir, task, split):
    """Parsed plus skipped rows equal an independent count of the file's lines, and each
    parsed id is the one on its own line: no row lost, none merged into another."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = load_split(task, split)
    path = data_dir / parsed.source
    assert len(parsed) + len(parsed.skipped) == independent_row_count(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    id_column = lines[0].split("\t").index("id")
    bad = {p.line for p in parsed.skipped}
    expected_ids = [lines[n - 1].split("\t")[id_column] for n in range(2, len(lines) + 1)
                    if lines[n - 1].strip() and n not in bad]
    assert [e.id for e in parsed.examples] == expected_ids


def test_quora_dev_known_bad_rows(data_dir):
    with pytest.warns(UserWarning) as caught:
        dev = load_split("qqp", "dev")
    assert [(p.line, p.reason) for p in dev.skipped] == [
        (2577, "missing label (is_duplicate)"), (14222, "empty sentence2")]
    assert len(caught) == 2 and "quora-dev.csv, line 2577" in str(caught[0].message)
    with pytest.raises(DataError, match="quora-dev.csv, line 2577: missing label"):
        load_split("qqp", "dev", strict=True)


def test_qqp_falls_back_to_the_train_subset(data_dir):
    train = load_split("qqp", "train")
    expected = "quora-train.csv" if (data_dir / "quora-train.csv").exists() else "quora-train-subset.csv"
    assert train.source == expected
    assert all(e.label in (0, 1) for e in train.examples)


def test_subset_is_seeded_and_sized(data_dir):
    dev = load_split("sst", "dev")
    a, b = dev.subset(50, seed=3), dev.subset(50, seed=3)
    assert len(a) == 50 and [e.id for e in a.examples] == [e.id for e in b.examples]
    assert [e.id for e in dev.subset(50, seed=4).examples] != [e.id for e in a.examples]
    assert dev.subset(None) is dev


# ----------------------------------------------------------------------------- batching

def test_batches_are_padded_to_their_longest_sequence():
    batch = pad_batch([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]])
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 2, 5]
    assert batch["input_ids"][1].tolist() == [101, 102, 0, 0, 0]


@pytest.mark.parametrize("shuffle", [True, False])
def test_batch_indices_cover_everything_once_and_bucketing_cuts_padding(shuffle):
    import random

    lengths = [random.Random(i).randint(3, 120) for i in range(1000)]
    bucketed = list(batch_indices(lengths, 32, shuffle=shuffle, seed=1, bucket=True))
    plain = list(batch_indices(lengths, 32, shuffle=shuffle, seed=1, bucket=False))
    for batches in (bucketed, plain):
        assert sorted(i for b in batches for i in b) == list(range(1000))

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded(bucketed) < 0.75 * padded(plain)
    if shuffle:
        other = list(batch_indices(lengths, 32, shuffle=True, seed=2, bucket=True))
        assert other != bucketed, "a new seed gives a new order"


def test_pairs_encode_each_sentence_on_its_own(data_dir):
    from minbert.bert import load_tokenizer
    from minbert.data import encode

    split = load_split("sts", "dev").subset(5)
    tokenizer = load_tokenizer()
    first, second = encode(tokenizer, split, 64, text=0), encode(tokenizer, split, 64, text=1)
    for example, a, b in zip(split.examples, first, second, strict=True):
        assert a == tokenizer(example.texts[0], truncation=True, max_length=64)["input_ids"]
        assert b == tokenizer(example.texts[1], truncation=True, max_length=64)["input_ids"]
        assert a[0] == 101 and a[-1] == 102 and b.count(102) == 1


def test_heldout_rows_are_carved_from_train_seeded_and_never_trained_on(data_dir):
    from minbert.data import load_tasks

    def tokens(texts, **_):
        return {"input_ids": [[2, 3]] * len(texts)}

    small = load_tasks(tokens, 16, names=("sts",), train_limits={"sts": 100}, heldout_sizes={"sts": 50},
                       seed=3)
    whole = load_tasks(tokens, 16, names=("sts",), heldout_sizes={"sts": 50}, seed=3)
    held = {e.id for e in small.splits["heldout"]["sts"].examples}
    assert len(held) == 50 and held == {e.id for e in whole.splits["heldout"]["sts"].examples}  # same rows
    for data in (small, whole):
        assert held.isdisjoint(e.id for e in data.splits["train"]["sts"].examples)
    assert len(whole.splits["train"]["sts"]) + 50 == len(load_split("sts", "train"))
    assert small.summary["sts"]["heldout"] == {"source": "sts-train.csv", "size": 50, "skipped": 0,
                                               "note": "seeded, carved from sts-train.csv"}
    assert list(small.summary["sts"]) == ["train", "heldout", "dev", "test"]
    assert set(small.heldout) == {"sts"} and small.heldout["sts"].labels is not None
    other = load_tasks(tokens, 16, names=("sts",), heldout_sizes={"sts": 50}, seed=4)
    assert {e.id for e in other.splits["heldout"]["sts"].examples} != held  # the seed picks them
    with pytest.raises(DataError, match="cannot hold out 6040"):
        load_tasks(tokens, 16, names=("sts",), heldout_sizes={"sts": 6040})


def test_dev_limits_cut_only_the_tasks_they_name(data_dir):
    from minbert.data import load_tasks

    def tokens(texts, **_):
        return {"input_ids": [[2, 3]] * len(texts)}

    data = load_tasks(tokens, 16, names=("sst", "sts"), train_limits={"sst": 10, "sts": 10},
                      dev_limits={"sst": 100}, seed=3)
    assert data.dev_sizes == {"sst": 100, "sts": len(load_split("sts", "dev"))}
