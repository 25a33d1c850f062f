"""Where a run's parameters come from: the profile files, `-p` overrides, a notebook's parameters cell.

A run's parameters are the notebook's defaults (`minbert.notebook_settings`), then
`params/<profile>/<notebook>.yaml` (only what the profile changes), then overrides:
`-p key value` on the command line, or papermill's injected cell in a notebook.
"""

from __future__ import annotations

import ast
import pprint
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from minbert import paths
from minbert.config import DEFAULT_PROFILE, PROFILES, ConfigError, Settings
from minbert.notebook_settings import config_class, validate


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `5e-05` as the number it is (YAML 1.2), not as a string, and refusing
    a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:\d[\d_]*\.[\d_]*(?:[eE][-+]?\d+)?|\.\d[\d_]*(?:[eE][-+]?\d+)?|\d[\d_]*[eE][-+]?\d+
                 |\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def params_file(notebook: str, profile: str) -> Path:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; known: {list(PROFILES)}")
    return paths.params_dir() / profile / f"{notebook}.yaml"


def profile_values(notebook: str, profile: str) -> dict[str, Any]:
    """What the profile's file changes from the defaults (a missing file changes nothing)."""
    config_class(notebook)
    path = params_file(notebook, profile)
    if not path.is_file():
        return {}
    try:
        values = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter names to values")
    return values


PER_TASK_SIZES = ("train_limits", "dev_limits", "heldout_sizes")  # an override changes the tasks it names


def load_config(notebook: str, profile: str = DEFAULT_PROFILE,
                overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then the profile's file, then the overrides, validated. A per-task size given as an
    override (`-p heldout_sizes '{sst: 200}'`) changes the tasks it names and keeps the others' sizes
    (the profile's, else the defaults): a run does not lose QQP's held-out rows for naming SST's."""
    overrides = dict(overrides or {})
    overrides.pop("profile", None)
    values = profile_values(notebook, profile)
    defaults = config_class(notebook).model_fields
    for key in PER_TASK_SIZES:
        if isinstance(overrides.get(key), dict) and key in defaults:
            base = values.get(key, defaults[key].get_default(call_default_factory=True))
            overrides[key] = {**base, **overrides[key]}
    return validate(notebook, {**values, **overrides, "profile": profile})


BUDGET_SUFFIXES = ("_limit", "_limits", "_sizes")  # how many rows
BUDGET_NAMES = frozenset({"seeds", "n_trials", "heldout_size", "ensemble_size"})


def is_budget(key: str) -> bool:
    """A parameter that sizes a run (rows, seeds, trials, members) rather than choosing its recipe. Epochs
    are the recipe's: schedules warm up and decay over them, and some arms need a least number."""
    return key in BUDGET_NAMES or key.endswith(BUDGET_SUFFIXES)


def dry_run_overrides(notebook: str) -> dict[str, Any]:
    """The smoke profile's budgets alone: over the full profile, they run every arm of the full recipe
    for its first steps (the GPU run's dry run on a CPU), everything else as the full profile has it."""
    return {k: v for k, v in profile_values(notebook, "smoke").items() if is_budget(k)}


def load_params(notebook: str, profile: str, overrides: dict[str, Any] | None = None) -> dict:
    """The whole validated parameter set as plain values (what a run stamp records)."""
    return load_config(notebook, profile, overrides).model_dump()


def parse_override(text: str) -> Any:
    """A `-p key value` value as the profile files read it (numbers, booleans, null, lists)."""
    try:
        return read_yaml(text)
    except yaml.YAMLError:
        return text


# A notebook's parameters cell: every knob of its config with its default, type and help, generated here
# (`python -m minbert parameters-cells` writes them; a test keeps the notebooks in step), so that
# `papermill --help-notebook` lists them and papermill knows every `-p` it is given.
CELL_HEADER = ("# Knobs and defaults of minbert.notebook_settings (`python -m minbert parameters-cells`).\n"
               "# params/<profile>/<notebook>.yaml changes some; a value set here or by papermill -p wins.\n")
INJECTED_HEADER = "# Parameters"  # how papermill's injected cell begins (ours must begin otherwise)
LINE_LENGTH = 110


def _type_name(annotation: Any) -> str:
    """The type papermill shows for a field: int, float, str, bool, list, dict, or Optional[...]."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return f"Optional[{_type_name(args[0])}]" if len(args) == 1 else "str"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(args[0]).__name__
    if origin in (list, dict):
        return origin.__name__
    return getattr(annotation, "__name__", "str")


def _help(field: Any, room: int) -> str:
    """The field's description for papermill's help, cut at a word to fit `room` characters ('=' would
    stop papermill reading the line)."""
    literal = typing.get_origin(field.annotation) is typing.Literal
    choices = typing.get_args(field.annotation) if literal else ()
    text = " ".join((field.description or (f"one of {', '.join(map(str, choices))}" if choices else ""))
                    .replace("=", "").split())
    if len(text) <= room:
        return text
    cut = text[:max(room - 1, 0)].rsplit(" ", 1)[0]
    return f"{cut}…" if cut else ""


def parameters_cell(notebook: str) -> str:
    """The source of the notebook's `parameters` cell."""
    lines = [CELL_HEADER.rstrip("\n")]
    for name, field in config_class(notebook).model_fields.items():
        kind = _type_name(field.annotation)
        # Optional[...] as a type comment: as an annotation it would need an import, and papermill reads
        # no `X | None`
        head = f"{name} = " if kind.startswith("Optional") else f"{name}: {kind} = "
        typed = f"type: {kind} " if kind.startswith("Optional") else ""
        default = field.get_default(call_default_factory=True)
        value = pprint.pformat(default, width=LINE_LENGTH - len(head) - 1, sort_dicts=False,
                               compact=True).replace("\n", "\n" + " " * len(head))
        last = value.rsplit("\n", 1)[-1]
        room = LINE_LENGTH - (len(last) if "\n" in value else len(head) + len(last)) - 2
        help_text = typed + _help(field, room - 1 - len(typed))
        lines.append(head + value + (f"  # {help_text}" if help_text.strip() else ""))
    return "\n".join(lines)


def injected_names(history: list[str]) -> set[str] | None:
    """The names papermill's injected cell set (None where no cell was injected: a run in JupyterLab),
    read from the kernel's input history (IPython's `In`)."""
    cells = [source for source in history if source.startswith(INJECTED_HEADER)]
    if not cells:
        return None
    tree = ast.parse(cells[-1])
    return {target.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)}


def notebook_parameters(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The parameters a notebook run was given: those papermill injected (a mistyped name among them
    reaches validation and is refused there); in JupyterLab, where nothing is injected, the knobs of
    the parameters cell whose value differs from the default (the ones a reader edited)."""
    names = injected_names(namespace.get("In", []))
    if names is not None:
        return {name: namespace[name] for name in names if name in namespace}
    defaults = config_class(notebook)().model_dump()
    return {name: namespace[name] for name, default in defaults.items()
            if name in namespace and namespace[name] != default}


def notebook_config(notebook: str, namespace: dict[str, Any]) -> Settings:
    """A notebook's config: its `profile` parameter's file, then the parameters it was given."""
    values = notebook_parameters(notebook, namespace)
    return load_config(notebook, values.get("profile", namespace.get("profile", DEFAULT_PROFILE)), values)
