"""The image-key hard filter (``hard_routing="image_key"``, beyond the paper)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import PROMPT, TARGET, make_liveedit
from hf_liveedit.trainers.routing_stage import (
    RoutingStates,
    choose_image_key_threshold,
    collect_routing_states,
    image_key_false_keep_rates,
    use_image_key,
)

from hf_liveedit import LiveEditConfig, LiveEditModel
from hf_liveedit.modules import ImageKey
from hf_liveedit.modules.image_key import pool_image_tokens
from hf_liveedit.routing import compute_routing, similarity
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

pytestmark = pytest.mark.usefixtures("one_thread")
REPHRASE = "Name the capital of the nation this flag stands for."


def test_pooling_matches_adaptive_average_pooling_of_each_rows_image_tokens():
    torch.manual_seed(0)
    hidden = torch.randn(3, 20, 8)
    image = torch.zeros(3, 20, dtype=torch.bool)
    image[0, 2:15] = True  # 13 tokens into 8 segments: overlapping segments
    image[1, [0, 3, 7, 8, 19]] = True  # 5 scattered tokens: fewer than segments
    pooled = pool_image_tokens(hidden, image, 8)
    for row in range(2):
        tokens = hidden[row, image[row]]
        expected = F.adaptive_avg_pool1d(tokens.T[None], 8)[0].T
        torch.testing.assert_close(pooled[row], expected)
    assert torch.equal(pooled[2], torch.zeros(8, 8))  # no image tokens


def test_liveedit_similarity_of_two_image_keys_is_their_cosine():
    torch.manual_seed(0)
    key = ImageKey(hidden_size=8, positions=4, num_queries=2, module_dim=8)
    key.center.normal_()
    hidden, image = torch.randn(5, 6, 8), torch.ones(5, 6, dtype=torch.bool)
    image[4] = False  # a text-only row
    keys = key(hidden, image)
    assert keys.shape == (5, 2, 8)
    # the key by hand: pool to 4 segments, centre, normalise, project, flatten, scale
    segments = F.adaptive_avg_pool1d(hidden[:4].transpose(1, 2), 4).transpose(1, 2)
    by_hand = (F.normalize(segments - key.center, dim=-1) @ key.projection).flatten(1)
    by_hand = F.normalize(by_hand, dim=-1) * (2 * 8**0.5) ** 0.5
    torch.testing.assert_close(keys[:4].flatten(1), by_hand)
    flat = keys.flatten(1)
    cosine = F.normalize(flat[:4], dim=-1) @ F.normalize(flat[:4], dim=-1).T
    torch.testing.assert_close(similarity(keys[:4], keys[:4]), cosine)
    torch.testing.assert_close(similarity(keys[:4], keys[:4]).diagonal(), torch.ones(4))
    assert torch.equal(keys[4], torch.zeros(2, 8))
    # the hard filter in the sentinel's form: phi_sentinel = threshold * phi_in keeps cos > t
    threshold = float(cosine[0, 1:].max()) - 1e-3
    weights = compute_routing(
        keys[:1], keys[:1], threshold * keys[:1], keys[:4], keys[:4], torch.tensor([True])
    )
    kept = (weights[0] > 0).tolist()
    assert kept == [True, *[c > threshold for c in cosine[0, 1:].tolist()]]
    assert kept.count(True) == 2


def test_fit_centres_on_training_pictures_and_projects_on_their_principal_directions():
    torch.manual_seed(0)
    key = ImageKey(hidden_size=8, positions=2, num_queries=2, module_dim=4)
    untrained = key.projection.clone()
    torch.testing.assert_close(untrained.T @ untrained, torch.eye(4))  # orthonormal already
    hidden = torch.randn(30, 6, 8) * torch.linspace(0.1, 3, 8) + 5.0
    image = torch.zeros(30, 6, dtype=torch.bool)
    image[:, :4] = True
    image[29] = False  # ignored: no picture
    key.fit(hidden, image)
    pooled = pool_image_tokens(hidden[:29], image[:29], 2)
    torch.testing.assert_close(key.center, pooled.mean(0))
    segments = F.normalize(pooled - key.center, dim=-1).flatten(0, 1)
    top = torch.linalg.svd(segments, full_matrices=False).Vh[:4].T
    # same principal subspace (signs of singular vectors are arbitrary)
    torch.testing.assert_close(key.projection @ key.projection.T, top @ top.T)
    assert int(key.num_fitted) == 29
    with pytest.raises(ValueError, match="image tokens"):
        key.fit(hidden, torch.zeros_like(image))


def test_config_checks_the_image_key_settings():
    with pytest.raises(ValueError, match="hard_routing"):
        LiveEditConfig(hard_routing="nearest")
    with pytest.raises(ValueError, match="divisible by image_key_positions"):
        LiveEditConfig(
            hard_routing="image_key",
            module_dim=32,
            num_queries=2,
            num_heads=4,
            image_key_positions=6,
        )
    with pytest.raises(ValueError, match="image_key_threshold"):
        LiveEditConfig(image_key_threshold=1.0)
    with pytest.raises(TypeError, match="image_key_positions"):
        LiveEditConfig(image_key_positions=2.5)


@pytest.fixture(scope="module")
def keyed():
    """A tiny LLaVA with the image-key filter fitted on 12 pictures, two edits stored."""
    liveedit = make_liveedit("llava", hard_routing="image_key", image_key_positions=4)
    states = collect_routing_states(
        liveedit, [tiny_image(i) for i in range(12)], [PROMPT] * 12, batch_size=6
    )
    use_image_key(liveedit, states, positions=4)
    liveedit.add_edit(tiny_image(0), PROMPT, TARGET)
    liveedit.add_edit(tiny_image(1), PROMPT, "Paris")
    return liveedit


def _kept(liveedit: LiveEditModel, images, prompts) -> list[list[bool]]:
    inputs = liveedit.build_inputs(images, prompts)
    with liveedit.record_routing() as routing, torch.no_grad():
        liveedit(**inputs)
    return (routing[-1] > 0).tolist()


def test_an_edit_is_kept_for_its_own_picture_in_any_phrasing_and_nowhere_else(keyed):
    assert int(keyed.liveedit_modules.image_key.num_fitted) == 12
    kept = _kept(
        keyed,
        [tiny_image(0), tiny_image(0), tiny_image(1), tiny_image(7), tiny_image(300)],
        [PROMPT, REPHRASE, REPHRASE, PROMPT, PROMPT],
    )
    assert kept == [[True, False], [True, False], [False, True], [False, False], [False, False]]
    text = keyed.build_inputs(None, [PROMPT])
    with keyed.record_routing() as routing, torch.no_grad():
        keyed(**text)
    assert not (routing[-1] > 0).any()


def test_the_fitted_key_and_threshold_are_saved_with_the_adapter(keyed, tmp_path):
    keyed.save_pretrained(tmp_path / "adapter")
    model, processor = tiny_llava()
    loaded = LiveEditModel.from_pretrained(model, tmp_path / "adapter", processor=processor)
    assert loaded.liveedit_config.hard_routing == "image_key"
    for name in ("center", "projection", "num_fitted"):
        assert torch.equal(
            getattr(loaded.liveedit_modules.image_key, name),
            getattr(keyed.liveedit_modules.image_key, name),
        )
    torch.testing.assert_close(loaded.repository.phi, keyed.repository.phi)
    assert _kept(loaded, [tiny_image(1)], [REPHRASE]) == [[False, True]]


def test_the_threshold_is_the_smallest_that_keeps_false_keeps_under_the_rate(keyed):
    liveedit = keyed
    modules = liveedit.liveedit_modules
    size = modules.image_key.center.shape[1]
    generator = torch.Generator().manual_seed(0)

    def states(hidden: torch.Tensor) -> RoutingStates:
        image = torch.zeros(hidden.shape[:2], dtype=torch.bool)
        image[:, :4] = True
        prompt = ~image
        return RoutingStates(hidden.half(), image, prompt)

    pictures = torch.randn(16, 6, size, generator=generator) * 3
    # neighbours: noisy copies of the stored pictures, from barely to very noisy, so that their
    # best cosines spread over the grid
    noise = torch.linspace(0.3, 6.0, 16)[:, None, None]
    nearby = pictures + noise * torch.randn(16, 6, size, generator=generator)
    bank, probes = (
        states(pictures),
        {
            "neighbour": states(nearby),
            "locality": states(torch.randn(16, 6, size, generator=generator) * 3),
        },
    )
    try:
        chosen, sweep = choose_image_key_threshold(liveedit, bank, probes, max_rate=0.25)
        grid = sweep["threshold"]
        index = grid.index(chosen)
        assert 0 < index < len(grid) - 1  # the sweep has something to decide
        assert all(sweep[name][index] <= 0.25 for name in probes)
        assert any(sweep[name][index - 1] > 0.25 for name in probes)  # one step lower: too many
        assert modules.image_key_threshold == liveedit.liveedit_config.image_key_threshold == chosen
        rates = image_key_false_keep_rates(liveedit, bank, {"own": bank}, [0.99])
        assert rates["own"] == [1.0]  # every picture passes against its own key
    finally:
        modules.image_key_threshold = liveedit.liveedit_config.image_key_threshold = 0.95
