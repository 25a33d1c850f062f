"""The pretrained view (frozen sentence embeddings and linear models on them) and its blend into the final
model, against transformers, scikit-learn and numpy as references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from minbert.bert import BertModel, load_tokenizer
from minbert.data import TaskTensors, encode, load_split, tensors_for
from minbert.ensemble import scores, task_outputs
from minbert.pretrained_view import Blended, PretrainedView, blend_outputs, choose_weights, sentence_inputs
from minbert.runtime import CPU
from tests.test_multitask import make_model, toy_tasks


def joint(split: TaskTensors) -> TaskTensors:
    """A bi-encoder pair split as a cross-encoder reads it: `[CLS] a [SEP] b [SEP]` (b without its [CLS])."""
    together = [a + b[1:] for a, b in zip(split.a, split.b, strict=True)]
    return TaskTensors(split.task, split.ids, together, None, split.labels,
                       second_starts=[len(a) for a in split.a])


def reference_embeddings(checkpoint, sequences: list[list[int]]) -> torch.Tensor:
    """Mean of transformers' BertModel token states over the real tokens, normalised: sentence-transformers'
    pooling, computed one sentence at a time (no padding at all)."""
    import transformers

    model = transformers.BertModel.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        return torch.stack([F.normalize(model(torch.tensor([s])).last_hidden_state[0].mean(0), dim=0)
                            for s in sequences])


def test_a_joint_pair_splits_back_into_its_two_sentences():
    pairs = toy_tasks(12, 0)["sts"]
    batch = joint(pairs).batch(list(range(12)), torch.device("cpu"))
    first, second = sentence_inputs("sts", batch)
    for row in range(12):
        assert first["input_ids"][row][first["attention_mask"][row].bool()].tolist() == pairs.a[row]
        assert second["input_ids"][row][second["attention_mask"][row].bool()].tolist() == pairs.b[row]
    single = toy_tasks(4, 1)["sst"].batch([0, 1, 2, 3], torch.device("cpu"))
    assert sentence_inputs("sst", single) == [single["a"]]


def test_split_pairs_are_what_the_tokenizer_gives_each_sentence(data_dir):
    """Real STS pairs read as one sequence, cut back apart: each sentence's own tokenisation."""
    tokenizer = load_tokenizer()
    split = load_split("sts", "dev").subset(40)
    rows = tensors_for(split, tokenizer, 128, cross_encoder=True)
    first, second = sentence_inputs("sts", rows.batch(list(range(40)), torch.device("cpu")))
    for k, (a, b) in enumerate(zip(encode(tokenizer, split, 128), encode(tokenizer, split, 128, text=1),
                                   strict=True)):
        assert first["input_ids"][k][first["attention_mask"][k].bool()].tolist() == a
        assert second["input_ids"][k][second["attention_mask"][k].bool()].tolist() == b


def test_the_view_embeds_as_sentence_transformers_pools_and_fits_linear_models_on_train(tiny_checkpoint):
    train = toy_tasks(40, 0)
    view = PretrainedView.fit(BertModel.from_pretrained(tiny_checkpoint), train, batch_size=16)
    sst = reference_embeddings(tiny_checkpoint, train["sst"].a)
    assert torch.allclose(view.all_features("sst", train["sst"], 16), sst, atol=1e-5)
    u = reference_embeddings(tiny_checkpoint, train["sts"].a)
    v = reference_embeddings(tiny_checkpoint, train["sts"].b)
    cosine = (u * v).sum(-1).numpy()
    assert np.allclose(view.all_features("sts", train["sts"], 16).squeeze(-1).numpy(), cosine, atol=1e-5)
    # STS: the least-squares line from the cosine to the score (numpy's polyfit as the reference)
    slope, intercept = np.polyfit(cosine, np.asarray(train["sts"].labels), 1)
    assert view.heads["sts"].weight.item() == pytest.approx(slope, rel=1e-4)
    assert view.heads["sts"].bias.item() == pytest.approx(intercept, rel=1e-4)
    outputs = task_outputs(view, {"sst": train["sst"], "sts": train["sts"]}, 16, CPU)
    assert np.allclose(outputs["sts"].numpy(), np.clip(slope * cosine + intercept, 0, 5), atol=1e-4)
    # SST: scikit-learn's own logistic regression on the reference embeddings predicts the same
    probe = LogisticRegression(max_iter=2000).fit(sst.numpy(), train["sst"].labels)
    assert np.allclose(outputs["sst"].numpy(), probe.predict_log_proba(sst.numpy()), atol=1e-4)


def test_a_blend_averages_probabilities_and_weight_zero_leaves_ours_untouched():
    ours, view = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0]]), torch.tensor([[0.0, 1.0, 0.0, 0.0, -2.0]])
    assert blend_outputs("sst", ours, view, 0.0) is ours
    by_hand = 0.75 * ours.softmax(-1) + 0.25 * view.softmax(-1)
    assert torch.allclose(blend_outputs("sst", ours, view, 0.25).softmax(-1), by_hand, atol=1e-6)
    duplicate = blend_outputs("qqp", torch.tensor([0.0]), torch.tensor([2.0]), 0.5)
    assert torch.sigmoid(duplicate).item() == pytest.approx(0.25 + 0.5 / (1 + np.exp(-2.0)))
    score = blend_outputs("sts", torch.tensor([1.0, 4.0]), torch.tensor([3.0, 2.0]), 0.5)
    assert score.tolist() == [2.0, 3.0]


def test_weights_are_chosen_on_the_rows_given_and_stay_at_zero_for_a_view_that_adds_nothing():
    g = torch.Generator().manual_seed(0)
    gold = torch.rand(2000, generator=g) * 5
    noisy = [gold + torch.randn(2000, generator=g) for _ in range(2)]
    # two estimates with independent noise of equal size: the best blend is near their mean
    weight = choose_weights({"sts": noisy[0]}, {"sts": noisy[1]}, {"sts": gold.tolist()})["sts"]
    assert 0.35 <= weight <= 0.65
    # a view that is pure noise adds nothing; one that is the truth takes over
    noise = torch.rand(2000, generator=g)
    assert choose_weights({"sts": noisy[0]}, {"sts": noise}, {"sts": gold.tolist()}) == {"sts": 0.0}
    assert choose_weights({"sts": noisy[0]}, {"sts": gold}, {"sts": gold.tolist()}) == {"sts": 1.0}
    labels = torch.randint(0, 5, (300,), generator=g)
    perfect = F.one_hot(labels, 5).float() * 10  # already right everywhere: any view only ties or hurts
    assert choose_weights({"sst": perfect}, {"sst": torch.randn(300, 5, generator=g)},
                          {"sst": labels.tolist()}) == {"sst": 0.0}


def test_the_blended_model_predicts_the_blend_of_its_parts(tiny_checkpoint):
    train, dev = toy_tasks(32, 0), toy_tasks(16, 1)
    model = make_model(tiny_checkpoint)
    view = PretrainedView.fit(BertModel.from_pretrained(tiny_checkpoint), train, batch_size=8)
    weights = {"sst": 0.3, "qqp": 0.0, "sts": 0.6}
    blended = task_outputs(Blended(model, view, weights), dev, 8, CPU)
    ours, theirs = task_outputs(model, dev, 8, CPU), task_outputs(view, dev, 8, CPU)
    for task, weight in weights.items():
        assert torch.allclose(blended[task], blend_outputs(task, ours[task], theirs[task], weight), atol=1e-5)
    assert torch.equal(blended["qqp"], ours["qqp"])
    gold = {task: split.labels for task, split in dev.items()}
    assert set(scores(blended, gold)) == {"sst_acc", "qqp_acc", "sts_pearson"}


def test_the_zero_shot_floor_is_the_checkpoints_cosine_on_real_sts_pairs(data_dir):
    """The untrained checkpoint's STS score (the bi-encoder comparisons' floor): the cosine of the
    embedded MiniLM's sentence embeddings, as transformers' own model gives them, row by row."""
    from minbert.bert import default_checkpoint
    from minbert.pretrained_view import zero_shot

    tokenizer = load_tokenizer()
    split = load_split("sts", "dev").subset(30)
    rows = tensors_for(split, tokenizer, 128)
    cosine = zero_shot(BertModel.from_pretrained(), {"sts": rows, "sst": toy_tasks(4, 0)["sst"]}, 16)
    assert set(cosine) == {"sts"}  # a classification task has no zero-shot score: its floor is the majority
    u = reference_embeddings(default_checkpoint(), rows.a)
    v = reference_embeddings(default_checkpoint(), rows.b)
    assert np.allclose(cosine["sts"], (u * v).sum(-1).numpy(), atol=1e-5)
    assert np.corrcoef(cosine["sts"], rows.labels)[0, 1] > 0.7  # a sentence encoder already tracks meaning
