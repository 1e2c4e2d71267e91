"""Stored edits are module state: they move, cast, copy and appear in ``state_dict`` with the model."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing

from hf_liveedit import get_liveedit_model
from hf_liveedit.repository import TENSOR_NAMES
from hf_liveedit.testing.tiny_models import SUPPORTED_TINY_MODELS, tiny_image


def edited_logits(liveedit, inputs) -> torch.Tensor:
    with torch.no_grad():
        return liveedit(**inputs).logits


def test_dtype_moves_carry_the_stored_edits():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    inputs = liveedit.build_inputs(tiny_image(0), PROMPT)
    float32 = edited_logits(liveedit, inputs)
    stored = {name: liveedit.repository.tensor(name).clone() for name in TENSOR_NAMES}

    liveedit.to(torch.float64)
    for name in TENSOR_NAMES:
        assert liveedit.repository.tensor(name).dtype == torch.float64
        assert torch.equal(liveedit.repository.tensor(name), stored[name].double())
    assert liveedit.liveedit_modules.sentinel.dtype == torch.float64
    float64 = edited_logits(liveedit, inputs)  # runs: nothing was left in float32
    torch.testing.assert_close(float64.float(), float32, rtol=1e-3, atol=1e-3)

    liveedit.half()
    assert liveedit.repository.dtype == torch.float16 and len(liveedit.repository) == 1
    liveedit.add_edit(tiny_image(1), PROMPT, "Paris")  # new edits are stored in the new dtype
    assert liveedit.repository.up.dtype == torch.float16 and len(liveedit.edits) == 2


def test_meta_device_and_deepcopy():
    liveedit = make_liveedit("llava")
    liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    twin = copy.deepcopy(liveedit)
    assert twin.edits == liveedit.edits
    assert torch.equal(twin.repository.up, liveedit.repository.up)
    twin.remove_edit(twin.edits[0].id)  # the copy's storage and lock are its own
    assert len(liveedit.edits) == 1 and len(twin.edits) == 0
    liveedit.to("meta")
    assert liveedit.repository.device.type == "meta"
    assert liveedit.repository.up.shape[0] == 1


def test_state_dict_holds_the_stored_rows_and_loads_back():
    liveedit = make_liveedit("llava")
    liveedit.add_edits([tiny_image(0), tiny_image(1)], [PROMPT] * 2, [TARGET, "Paris"])
    state = liveedit.state_dict()
    for name in TENSOR_NAMES:
        assert torch.equal(state[f"repository.{name}"], liveedit.repository.tensor(name))
        assert state[f"repository.{name}"].shape[0] == 2  # the rows, not the grown storage
    assert any(key.startswith("base_model.") for key in state)
    assert any(key.startswith("liveedit_modules.") for key in state)

    other = make_liveedit("llava")
    other.add_edits([tiny_image(2), tiny_image(3)], [PROMPT] * 2, ["a", "b"])
    other.load_state_dict(state)
    for name in TENSOR_NAMES:
        assert torch.equal(other.repository.tensor(name), liveedit.repository.tensor(name))

    fewer = make_liveedit("llava")
    fewer.add_edit(tiny_image(2), PROMPT, "a")
    before = fewer.repository.up.clone()
    with pytest.raises(RuntimeError, match="keeps the number of stored edits"):
        fewer.load_state_dict(state)
    assert torch.equal(fewer.repository.up, before)


def test_adapter_modules_sit_on_the_edit_layers_device():
    """With ``device_map`` models the first parameter may live elsewhere than layer ``l_e``."""
    model, processor = SUPPORTED_TINY_MODELS["llava"]()
    model.model.vision_tower.to("meta")  # the first parameters are now on another device
    assert next(model.parameters()).device.type == "meta"
    liveedit = get_liveedit_model(model, make_liveedit("llava").liveedit_config, processor)
    layer = liveedit.backbone.decoder_layers()[liveedit.liveedit_config.edit_layer]
    device = next(layer.parameters()).device
    assert device.type == "cpu"
    assert liveedit.liveedit_modules.sentinel.device == device
    assert liveedit.repository.device == device
