"""Which parameter elements are new after growth, read from ``growth_recipe.json`` in the model directory.

The format read here (other keys of the file are ignored)::

    {"new_slices": [{"name": "model.layers.0.mlp.gate_proj.weight", "index": [[160, 192], [0, 64]]}, ...]}

``index`` holds one ``[start, stop)`` pair per dimension of the parameter; it may be omitted (or null)
for a parameter that is new as a whole (an inserted layer). Several slices of one parameter are
united. A name may be any alias of a tied parameter (``lm_head.weight`` of a tied model means the
embedding). A directory without the file, or a file without ``new_slices``, has no new elements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sn29_growth.checkpoint import RECIPE_FILE, read_recipe


@dataclass(frozen=True)
class NewSlice:
    name: str
    index: tuple[tuple[int, int], ...] | None = None  # None: the whole parameter

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: must be a non-empty string, got {self.name!r}")
        if self.index is not None:
            for pair in self.index:
                if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
                    raise ValueError(f"index: {self.name}: each entry must be [start, stop], got {pair!r}")
                if not 0 <= pair[0] <= pair[1]:
                    raise ValueError(f"index: {self.name}: need 0 <= start <= stop, got {list(pair)}")


def parse_new_slices(recipe: dict) -> tuple[NewSlice, ...]:
    """The ``new_slices`` of a recipe document (an empty tuple when the key is absent)."""
    if not isinstance(recipe, dict):
        raise ValueError("growth recipe: must be a JSON object")
    raw = recipe.get("new_slices")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("new_slices: must be a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"new_slices[{i}]: must be an object with a 'name'")
        index = item.get("index")
        if index is not None:
            if not isinstance(index, list) or not all(isinstance(p, list) for p in index):
                raise ValueError(f"new_slices[{i}].index: must be a list of [start, stop] pairs")
            index = tuple(tuple(p) for p in index)
        out.append(NewSlice(item["name"], index))
    return tuple(out)


def read_new_slices(model_dir: str | os.PathLike) -> tuple[NewSlice, ...]:
    """The new slices declared by ``MODEL_DIR/growth_recipe.json`` (empty when there is no recipe)."""
    path = Path(model_dir) / RECIPE_FILE
    recipe = read_recipe(model_dir)  # a CheckpointFileError (a ValueError) names the file
    if recipe is None:
        return ()
    try:
        return parse_new_slices(recipe)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def canonical_names(model: torch.nn.Module) -> dict[str, str]:
    """Every parameter name (tied aliases included) → the name ``named_parameters()`` reports for it."""
    first = {id(p): name for name, p in model.named_parameters()}
    return {name: first[id(p)] for name, p in model.named_parameters(remove_duplicate=False)}


def build_masks(model: torch.nn.Module, slices: tuple[NewSlice, ...]) -> dict[str, torch.Tensor]:
    """Boolean masks (True = new element) on the CPU, keyed by canonical parameter name."""
    aliases = canonical_names(model)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    masks: dict[str, torch.Tensor] = {}
    for s in slices:
        if s.name not in aliases:
            raise ValueError(f"new_slices: {s.name!r} is not a parameter of the model")
        name = aliases[s.name]
        shape = shapes[name]
        mask = masks.setdefault(name, torch.zeros(shape, dtype=torch.bool))
        if s.index is None:
            mask.fill_(True)
            continue
        if len(s.index) != len(shape):
            raise ValueError(
                f"new_slices: {s.name}: index has {len(s.index)} dims, parameter has {len(shape)}"
            )
        for (start, stop), size in zip(s.index, shape, strict=True):
            if stop > size:
                raise ValueError(f"new_slices: {s.name}: [{start}, {stop}) exceeds dimension size {size}")
        mask[tuple(slice(a, b) for a, b in s.index)] = True
    return {name: m for name, m in masks.items() if bool(m.any())}
