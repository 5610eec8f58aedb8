"""The file formats documented in docs/formats.md: each example loads, and an invalid file's error shows
the expected shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sn29_growth.growth.spec import load_recipe
from sn29_growth.validator.entries import load_entries

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def _example(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, f"one {language} example in {DOC}"
    return blocks[0]


def test_the_documented_recipe_loads(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(_example("yaml"))
    spec = load_recipe(recipe)
    assert len(spec.steps) == 2 and spec.dtype == "bfloat16"
    assert spec.steps[0].num_hidden_layers == 4 and spec.steps[1].hidden_size == 128
    assert spec.steps[1].layer_placement == "append"


def test_the_documented_models_file_loads(tmp_path):
    for name in ("base", "grown-trained"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    models = tmp_path / "models.json"
    models.write_text(_example("json"))
    entries = load_entries(models, injected=True)
    assert [(e.label, e.block, e.competition) for e in entries] == [
        ("base", 100, None),
        ("grown", 200, "c00"),
    ]
    assert entries[0].model == str((tmp_path / "base").resolve())


def test_an_invalid_recipe_shows_the_expected_shape(tmp_path):
    recipe = tmp_path / "flat.yaml"
    recipe.write_text("num_layers: 4\nintermediate_size: 320\n")
    with pytest.raises(ValueError, match="unknown growth recipe key") as info:
        load_recipe(recipe)
    assert "'steps' list" in str(info.value) and "docs/formats.md" in str(info.value)


def test_an_invalid_models_file_shows_the_expected_shape(tmp_path):
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"model": "base"}))
    with pytest.raises(ValueError, match="non-empty JSON list") as info:
        load_entries(models, injected=True)
    assert '"block": 100' in str(info.value) and "docs/formats.md" in str(info.value)
