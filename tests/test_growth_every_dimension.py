"""``grow_every_dimension``: the tiny model grown in every dimension keeps its loss and trains."""

from __future__ import annotations

from growth_helpers import tiny

from sn29_growth.growth.every_dimension import default_targets, grow_every_dimension


def test_grow_every_dimension_reports_loss_before_and_after(save_tiny, tmp_path):
    src = save_tiny(tiny("phi3"))
    result = grow_every_dimension(src, tmp_path / "grown")
    assert abs(result.loss_delta) <= 1e-5 and result.loss_before > 0
    assert result.parameters_after > 3 * result.parameters_before
    assert result.stuck_slices == 0
    assert (tmp_path / "grown" / "growth_recipe.json").is_file()
    assert set(result.to_dict()) >= {"loss_before", "loss_after", "parameters_after"}
    assert default_targets(
        {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 160, "num_hidden_layers": 2}
    ) == {
        "hidden_size": 128,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "intermediate_size": 320,
        "num_hidden_layers": 3,
    }
