"""Shared fixtures: every test runs offline on tiny random models."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_liveedit import LiveEditConfig, LiveEditModel, get_liveedit_model  # noqa: E402
from hf_liveedit.testing.tiny_models import SUPPORTED_TINY_MODELS, tiny_image  # noqa: E402

PROMPT = "What is the capital of the country whose flag is shown?"
TARGET = "Lyon"

#: Small LiveEdit modules for tiny backbones; a large scale makes any kept expert dominate.
TINY_CONFIG = dict(module_dim=32, num_heads=4, rank=2, num_queries=2)


def make_liveedit(family: str = "llava", **config: object) -> LiveEditModel:
    """A tiny VLLM of ``family`` wrapped with LiveEdit (seeded, deterministic)."""
    model, processor = SUPPORTED_TINY_MODELS[family]()
    torch.manual_seed(0)
    return get_liveedit_model(
        model, LiveEditConfig(**{**TINY_CONFIG, **config}), processor=processor
    )


def rig_routing(liveedit: LiveEditModel, keep: bool) -> None:
    """Make routing deterministic: an edit's own (image, prompt) is kept (or filtered) by a margin.

    The sentinel is zero and value biases are zero, so ``phi_sentinel = 0`` and the threshold is 0.
    The edit-side extractor copies the input-side one, so ``phi_e = phi_in`` for the edit's own
    input (``sim > 0``: kept); negating its visual value projection gives ``phi_e = -phi_in``
    (``sim < 0``: filtered).
    """
    modules = liveedit.liveedit_modules
    with torch.no_grad():
        modules.sentinel.zero_()
        modules.input_extractor.look_in.v_proj.bias.zero_()
        modules.edit_extractor.load_state_dict(modules.input_extractor.state_dict())
        if not keep:
            modules.edit_extractor.look_in.v_proj.weight.neg_()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and far faster when other jobs share the cores).

    Use it per module: ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=list(SUPPORTED_TINY_MODELS))
def family(request: pytest.FixtureRequest) -> str:
    """Every supported tiny backbone family."""
    return request.param


@pytest.fixture
def image():
    return tiny_image(0)


@pytest.fixture
def other_image():
    return tiny_image(1)
