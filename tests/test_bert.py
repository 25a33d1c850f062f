"""Our BertModel against transformers.BertModel, and checkpoint loading errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers

from minbert.bert import BertModel, CheckpointError, default_checkpoint, load_tokenizer
from minbert.parity import compare_with_transformers

SENTENCES = [
    "The movie was a delight from start to finish.",
    "Dull.",
    "An uneven, overlong and ultimately forgettable film, saved only by its lead.",
]


def padded_batch(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with rows of different lengths and both token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate((12, 9, 4, 1)):
        mask[row, length:] = 0
        ids[row, length:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def assert_parity(folder, batch, atol=1e-5):
    ours = BertModel.from_pretrained(folder).eval()
    theirs = transformers.BertModel.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        mine = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ref = theirs(**batch)
    real = batch["attention_mask"].bool()
    hidden_diff = (mine["last_hidden_state"] - ref.last_hidden_state)[real].abs().max()
    pooled_diff = (mine["pooler_output"] - ref.pooler_output).abs().max()
    assert hidden_diff < atol, hidden_diff
    assert pooled_diff < atol, pooled_diff


def test_embedded_checkpoint_matches_transformers_on_padded_sentences():
    result = compare_with_transformers(None, SENTENCES)
    assert result["padded_positions"] > 0
    assert result["max_abs_diff_last_hidden_state"] < 1e-5
    assert result["max_abs_diff_pooler_output"] < 1e-5


def test_embedded_checkpoint_matches_with_token_types():
    assert_parity(default_checkpoint(), padded_batch(30522))


def test_other_shape_checkpoint_matches_transformers(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (3, 64)
    assert_parity(tiny_checkpoint, padded_batch(1000))


def test_keeping_the_first_layers_matches_transformers_loading_fewer_layers(tiny_checkpoint):
    """A smaller model of the same weights (the model-size curve's): transformers, told to build fewer
    layers than the checkpoint holds, loads the first ones and drops the rest; ours must agree."""
    batch = padded_batch(1000, seed=2)
    ours = BertModel.from_pretrained(tiny_checkpoint, num_hidden_layers=2).eval()
    theirs = transformers.BertModel.from_pretrained(str(tiny_checkpoint), num_hidden_layers=2,
                                                    local_files_only=True).eval()
    assert len(ours.encoder.layer) == len(theirs.encoder.layer) == 2
    with torch.no_grad():
        mine = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ref = theirs(**batch)
    real = batch["attention_mask"].bool()
    assert (mine["last_hidden_state"] - ref.last_hidden_state)[real].abs().max() < 1e-5
    assert (mine["pooler_output"] - ref.pooler_output).abs().max() < 1e-5
    full = BertModel.from_pretrained(tiny_checkpoint)  # the first layers are the checkpoint's, untouched
    torch.testing.assert_close(ours.encoder.layer[1].output.dense.weight,
                               full.encoder.layer[1].output.dense.weight)
    for layers in (0, 4):
        with pytest.raises(CheckpointError, match=f"num_hidden_layers={layers}: .* has 3 layers"):
            BertModel.from_pretrained(tiny_checkpoint, num_hidden_layers=layers)


def test_gradients_match_transformers(tiny_checkpoint):
    """The backward pass through our fused QKV equals transformers' per weight."""
    batch = padded_batch(1000, seed=1)
    ours = BertModel.from_pretrained(tiny_checkpoint).eval()
    theirs = transformers.BertModel.from_pretrained(str(tiny_checkpoint)).eval()
    out = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    out["pooler_output"].sum().backward()
    theirs(**batch).pooler_output.sum().backward()
    layer_ours = ours.encoder.layer[1].attention.self.qkv.weight.grad
    layer_theirs = theirs.encoder.layer[1].attention.self
    expected = torch.cat([layer_theirs.query.weight.grad, layer_theirs.key.weight.grad,
                          layer_theirs.value.weight.grad])
    torch.testing.assert_close(layer_ours, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.embeddings.word_embeddings.weight.grad,
                               theirs.embeddings.word_embeddings.weight.grad, atol=1e-5, rtol=1e-4)


def test_pytorch_bin_with_bert_prefix_and_old_layernorm_names(tiny_checkpoint, tmp_path):
    state = transformers.BertModel.from_pretrained(str(tiny_checkpoint)).state_dict()
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "config.json")
    loaded = BertModel.from_pretrained(tmp_path)
    reference = BertModel.from_pretrained(tiny_checkpoint)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def _checkpoint_with(tmp_path, tiny_checkpoint, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    edit(state)
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "config.json")
    return tmp_path


def test_damaged_values_are_refused_at_load_naming_the_file_and_tensor(tiny_checkpoint, tmp_path):
    """Bytes damaged in the middle of a file can decode as NaN or infinity: refused when the checkpoint
    is read, not later as a NaN loss blamed on the learning rate."""
    def damage(state):
        inf = float("inf")
        state["encoder.layer.0.attention.self.value.weight"][3, :3] = torch.tensor([float("nan"), inf, -inf])

    folder = _checkpoint_with(tmp_path, tiny_checkpoint, damage)
    with pytest.raises(CheckpointError, match=r"model.safetensors: the tensor encoder.layer.0.attention."
                                              r"self.value.weight holds 3 non-finite"):
        BertModel.from_pretrained(folder)


def test_missing_weight_is_named(tiny_checkpoint, tmp_path):
    folder = _checkpoint_with(tmp_path, tiny_checkpoint,
                              lambda s: s.pop("encoder.layer.2.output.dense.weight"))
    with pytest.raises(CheckpointError, match=r"missing weights: \['encoder.layer.2.output.dense.weight'\]"):
        BertModel.from_pretrained(folder)


def test_unexpected_weight_is_named_and_heads_can_be_skipped(tiny_checkpoint, tmp_path):
    folder = _checkpoint_with(tmp_path, tiny_checkpoint, lambda s: s.update(
        {"cls.predictions.bias": torch.zeros(1000)}))
    with pytest.raises(CheckpointError, match=r"unexpected weights: \['cls.predictions.bias'\]"):
        BertModel.from_pretrained(folder)
    BertModel.from_pretrained(folder, ignore_prefixes=("cls.",))


def test_wrong_shape_is_named(tiny_checkpoint, tmp_path):
    folder = _checkpoint_with(tmp_path, tiny_checkpoint, lambda s: s.update(
        {"pooler.dense.bias": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"pooler.dense.bias: checkpoint \(3,\) vs model \(64,\)"):
        BertModel.from_pretrained(folder)


def test_missing_folder_and_unreachable_hub_id_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        BertModel.from_pretrained(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="the hub could not provide it"):
        BertModel.from_pretrained("some-user/no-such-bert")


def test_folder_without_weights_lists_its_files(tiny_checkpoint, tmp_path):
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path)


def test_config_overrides_and_refusals(tiny_checkpoint, tmp_path):
    model = BertModel.from_pretrained(tiny_checkpoint, hidden_dropout_prob=0.3)
    assert model.embeddings.dropout.p == 0.3
    with pytest.raises(CheckpointError, match="unknown BertConfig field"):
        BertModel.from_pretrained(tiny_checkpoint, hiden_dropout_prob=0.3)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["position_embedding_type"] = "relative_key"
    shutil.copy(tiny_checkpoint / "model.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="only absolute position embeddings"):
        BertModel.from_pretrained(tmp_path)


def test_tokenizer_comes_from_the_checkpoint_vocabulary(tiny_checkpoint):
    tokenizer = load_tokenizer(tiny_checkpoint)
    assert tokenizer.is_fast
    assert tokenizer.vocab_size == 1000
    assert tokenizer("w5 w7")["input_ids"] == [2, 10, 12, 3]
    assert load_tokenizer()("Hello")["input_ids"][0] == 101  # uncased MiniLM: [CLS] = 101


def test_dropout_is_active_only_in_training(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint)
    batch = padded_batch(1000)
    args = (batch["input_ids"], batch["attention_mask"])
    model.train()
    assert not torch.equal(model(*args)["pooler_output"], model(*args)["pooler_output"])
    model.eval()
    assert torch.equal(model(*args)["pooler_output"], model(*args)["pooler_output"])


def test_packing_round_trip_and_zero_padding(tiny_checkpoint):
    from minbert.attention import Packing

    batch = padded_batch(1000)
    packing = Packing.from_mask(batch["attention_mask"])
    packed = packing.pack(batch["input_ids"])
    assert packed.shape == (int(batch["attention_mask"].sum()),)
    assert torch.equal(packing.unpack(packed), batch["input_ids"])  # padding ids are 0
    full = Packing.from_mask(torch.ones(2, 3, dtype=torch.long))
    assert full.index is None and full.key_mask is None
    model = BertModel.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        hidden = model(batch["input_ids"], batch["attention_mask"])["last_hidden_state"]
    assert hidden[~batch["attention_mask"].bool()].abs().max() == 0
