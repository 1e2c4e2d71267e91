"""LiveEditConfig refuses bad values at construction, naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_liveedit import LiveEditConfig


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"num_sentinel_tokens": 0}, ValueError, "num_sentinel_tokens"),
        ({"num_sentinel_tokens": -3}, ValueError, "num_sentinel_tokens"),
        ({"num_sentinel_tokens": 2.0}, TypeError, "num_sentinel_tokens"),
        ({"rank": 8.0}, TypeError, "rank"),
        ({"rank": True}, TypeError, "rank"),
        ({"rank": 0}, ValueError, "rank"),
        ({"module_dim": 64.0}, TypeError, "module_dim"),
        ({"module_dim": "64"}, TypeError, "module_dim"),
        ({"module_dim": -8}, ValueError, "module_dim"),
        ({"num_queries": 0}, ValueError, "num_queries"),
        ({"num_queries": 4.5}, TypeError, "num_queries"),
        ({"num_heads": False}, TypeError, "num_heads"),
        ({"num_heads": 0}, ValueError, "num_heads"),
        ({"module_dim": 30, "num_heads": 4}, ValueError, "num_heads"),
        ({"edit_layer": -1}, ValueError, "edit_layer"),
        ({"edit_layer": 2.0}, TypeError, "edit_layer"),
        ({"expert_scale": math.nan}, ValueError, "expert_scale"),
        ({"expert_scale": math.inf}, ValueError, "expert_scale"),
        ({"expert_scale": -math.inf}, ValueError, "expert_scale"),
        ({"expert_scale": 0.0}, ValueError, "expert_scale"),
        ({"expert_scale": "1"}, TypeError, "expert_scale"),
        ({"soft_routing_visual_weight": math.inf}, ValueError, "soft_routing_visual_weight"),
        ({"soft_routing_visual_weight": -1.0}, ValueError, "soft_routing_visual_weight"),
        ({"refine_min_probability": 1.0}, ValueError, "refine_min_probability"),
        ({"refine_min_probability": -0.1}, ValueError, "refine_min_probability"),
        ({"refine_min_probability": math.nan}, ValueError, "refine_min_probability"),
        ({"edit_text_only_inputs": "yes"}, TypeError, "edit_text_only_inputs"),
        ({"expert_dtype": "int8"}, ValueError, "expert_dtype"),
        ({"expert_dtype": "fp16"}, ValueError, "expert_dtype"),
        ({"module_dtype": "float64"}, ValueError, "module_dtype"),
        ({"backend": "cuda"}, ValueError, "backend"),
    ],
)
def test_bad_values_are_refused_naming_the_field(kwargs, error, field):
    with pytest.raises(error, match=field):
        LiveEditConfig(**kwargs)


def test_good_values_are_kept():
    config = LiveEditConfig(
        module_dim=np.int64(64),  # numpy ints are ints, stored as Python ints (for JSON)
        num_heads=4,
        num_sentinel_tokens=1,
        edit_layer=0,
        expert_scale=50,
        backend="torch",
        expert_dtype="bfloat16",
    )
    assert type(config.module_dim) is int and config.module_dim == 64
    assert config.scale == 50 and config.num_sentinel_tokens == 1
    defaults = LiveEditConfig()
    assert defaults.num_sentinel_tokens is None and defaults.edit_layer is None
    assert LiveEditConfig.from_dict(defaults.to_dict()) == defaults
