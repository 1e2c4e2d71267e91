"""The routing stage (beyond the paper) and the visual soft score, on a tiny LLaVA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_liveedit
from hf_liveedit.trainers.routing_stage import (
    ROUTING_INPUTS,
    RoutingStageArguments,
    collect_routing_states,
    routing_diagnostics,
    train_routing,
)
from PIL import Image

from hf_liveedit import LiveEditConfig
from hf_liveedit.testing.tiny_models import tiny_image

QUESTION = "Which country does this flag belong to?"
REPHRASE = "Name the nation of this flag."
RECORDS = 24


def _blend(seed: int) -> Image.Image:
    """Another rendering of ``tiny_image(seed)``: the same picture with 20% other noise."""
    same = np.asarray(tiny_image(seed), dtype=np.float32)
    noise = np.asarray(tiny_image(10_000 + seed), dtype=np.float32)
    return Image.fromarray((0.8 * same + 0.2 * noise).astype(np.uint8))


@pytest.fixture(scope="module")
def bank():
    """A tiny LLaVA with an untrained router and the states of 24 one-relation records."""
    torch.set_num_threads(1)
    liveedit = make_liveedit("llava")
    sources = {
        "edit": ([tiny_image(i) for i in range(RECORDS)], QUESTION),
        "rephrase": ([tiny_image(i) for i in range(RECORDS)], REPHRASE),
        "other_image": ([_blend(i) for i in range(RECORDS)], QUESTION),
        "locality": ([tiny_image(500 + i) for i in range(RECORDS)], "What colour is it?"),
    }
    assert set(sources) == set(ROUTING_INPUTS)
    inputs = {
        name: collect_routing_states(liveedit, images, [question] * RECORDS, batch_size=8)
        for name, (images, question) in sources.items()
    }
    return liveedit, inputs


def test_packed_states_give_the_features_of_the_full_edit_sequence(bank):
    liveedit, inputs = bank
    modules = liveedit.liveedit_modules
    with torch.no_grad():
        full = liveedit.build_inputs([tiny_image(3)], [QUESTION], ["Lyon"])
        hidden = liveedit.hidden_states_at_edit_layer(full)
        spans = liveedit.backbone.spans(full["input_ids"], full["attention_mask"], full["labels"])
        made = modules.make_experts(hidden, spans)
        packed_hidden, packed_spans = inputs["edit"].batch(torch.tensor([3]), torch.float32)
        query = modules.edit_extractor.visual_query(packed_hidden, packed_spans.prompt)
        phi = modules.edit_extractor.visual_feature(query, packed_hidden, packed_spans.image)
        psi = modules.edit_extractor.prompt_feature(packed_hidden, packed_spans.prompt)
    # float16 storage of the states: close, not bit-equal
    torch.testing.assert_close(phi, made.phi, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(psi, made.psi, rtol=2e-2, atol=2e-3)


def test_routing_stage_separates_entities_that_the_untrained_router_does_not(bank):
    liveedit, inputs = bank
    train, held = list(range(20)), list(range(20, RECORDS))
    before = routing_diagnostics(liveedit, inputs, train)
    # untrained: the filter keeps most edits (locality pictures too), the weight is spread
    assert before["edit_kept"] > 10 and before["edit_own_weight"] < 0.1
    assert before["locality_any_kept"] > 0.5
    args = RoutingStageArguments(
        steps=150, batch_size=8, learning_rate=3e-3, refresh_steps=5, soft_routing_visual_weight=1.0
    )
    logs = train_routing(liveedit, {k: v.select(train) for k, v in inputs.items()}, args)
    assert logs[-1]["rank"] < logs[0]["rank"] and logs[-1]["gate"] < logs[0]["gate"]
    assert liveedit.liveedit_config.soft_routing_visual_weight == 1.0
    after = routing_diagnostics(liveedit, inputs, train, held)
    assert after["edit_own_kept"] >= 0.95 and after["rephrase_own_kept"] >= 0.95
    assert after["edit_kept"] <= 4.0  # of 20 stored
    assert after["edit_own_weight"] >= 0.75
    assert after["locality_any_kept"] <= 0.1
    assert after["neighbour_any_kept"] <= 0.6  # unseen entities of the same relation


def test_routing_stage_trains_only_the_router(bank):
    liveedit, inputs = bank
    modules = liveedit.liveedit_modules
    generator = {k: v.clone() for k, v in modules.generator.state_dict().items()}
    norm = {k: v.clone() for k, v in modules.expert_norm.state_dict().items()}
    sentinel = modules.sentinel.detach().clone()
    train_routing(liveedit, inputs, RoutingStageArguments(steps=2, batch_size=4))
    assert all(torch.equal(v, modules.generator.state_dict()[k]) for k, v in generator.items())
    assert all(torch.equal(v, modules.expert_norm.state_dict()[k]) for k, v in norm.items())
    assert not torch.equal(sentinel, modules.sentinel)
    assert not any(p.requires_grad for p in modules.parameters())


def test_stage_arguments_and_visual_weight_are_checked():
    with pytest.raises(ValueError, match="steps"):
        RoutingStageArguments(steps=-1)
    with pytest.raises(ValueError, match="temperature"):
        RoutingStageArguments(temperature=0.0)
    with pytest.raises(ValueError, match="soft_routing_visual_weight"):
        LiveEditConfig(soft_routing_visual_weight=float("nan"))
    with pytest.raises(ValueError, match="soft_routing_visual_weight"):
        LiveEditConfig(soft_routing_visual_weight=-1.0)


def _tiny_benchmark(directory) -> None:
    """A 12-record train split (pictures, other renderings, locality pictures) in ``directory``."""
    import json

    (directory / "images").mkdir()
    rows = []
    for i in range(12):
        paths = {}
        for field, image in (
            ("image", tiny_image(i)),
            ("image_rephrase", _blend(i)),
            ("m_loc", tiny_image(500 + i)),
        ):
            paths[field] = f"images/{field}-{i}.png"
            image.save(directory / paths[field])
        rows.append(
            {
                "src": QUESTION,
                "rephrase": REPHRASE,
                "alt": "Lyon",
                "pred": "",
                "loc": "nq question: who wrote hamlet",
                "loc_ans": "Shakespeare",
                "m_loc_q": "What colour is it?",
                "m_loc_a": "red",
                "entity": f"entity {i}",
                "relation": "flag/country",
                "answer": "France",
                **paths,
            }
        )
    (directory / "train.json").write_text(json.dumps(rows))


def test_train_router_command_on_a_tiny_benchmark(tmp_path):
    import json

    from hf_liveedit import LiveEditModel, cli
    from hf_liveedit.testing.tiny_models import tiny_llava

    _tiny_benchmark(tmp_path)
    source = make_liveedit("llava")
    source.save_pretrained(tmp_path / "generator")
    args = ["train-router", "--backbone", "tiny", "--benchmark_dir", str(tmp_path)]
    args += ["--generator", str(tmp_path / "generator"), "--output_dir", str(tmp_path / "out")]
    args += ["--steps", "3", "--batch_size", "4", "--validation_fraction", "0.25"]
    args += ["--states_cache", str(tmp_path / "states.pt")]
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "out" / "routing_stage.json").read_text())
    assert summary["train_records"] == 9 and summary["held_out_records"] == 3
    assert summary["logs"][-1]["step"] == 3
    assert {"edit_own_kept", "neighbour_any_kept"} <= set(
        summary["diagnostics_after"]["all_stored"]
    )
    config = json.loads((tmp_path / "out" / "liveedit_config.json").read_text())
    assert config["soft_routing_visual_weight"] == 1.0
    loaded = LiveEditModel.from_pretrained(tiny_llava()[0], tmp_path / "out")
    assert loaded.liveedit_config.soft_routing_visual_weight == 1.0
    # a second run reuses the cached states
    assert (tmp_path / "states.pt").is_file()
    assert cli.main([*args[:-2], "--states_cache", str(tmp_path / "states.pt")]) == 0


def test_train_router_command_fits_the_image_key_and_picks_its_threshold(tmp_path):
    import json

    from hf_liveedit import LiveEditModel, cli
    from hf_liveedit.testing.tiny_models import tiny_llava

    _tiny_benchmark(tmp_path)
    make_liveedit("llava").save_pretrained(tmp_path / "generator")
    args = ["train-router", "--backbone", "tiny", "--benchmark_dir", str(tmp_path)]
    args += ["--generator", str(tmp_path / "generator"), "--output_dir", str(tmp_path / "out")]
    args += ["--hard_routing", "image_key", "--image_key_positions", "4", "--steps", "0"]
    args += ["--validation_fraction", "0.25"]
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "out" / "routing_stage.json").read_text())
    config = json.loads((tmp_path / "out" / "liveedit_config.json").read_text())
    sweep = summary["image_key_threshold_sweep"]
    assert config["hard_routing"] == "image_key" and config["image_key_positions"] == 4
    assert config["image_key_threshold"] in sweep["threshold"]
    index = sweep["threshold"].index(config["image_key_threshold"])
    assert sweep["neighbour"][index] <= 0.01 and sweep["locality"][index] <= 0.01
    after = summary["diagnostics_after"]["all_stored"]
    assert after["edit_own_kept"] == 1.0 and after["rephrase_own_kept"] == 1.0
    assert summary["logs"] == []  # steps 0: nothing trained
    model, processor = tiny_llava()
    loaded = LiveEditModel.from_pretrained(model, tmp_path / "out", processor=processor)
    assert int(loaded.liveedit_modules.image_key.num_fitted) == 9  # the training pictures


def test_image_key_stage_teaches_the_soft_score_to_refuse_other_relations_of_a_picture():
    """Two relations per picture: without the stage, a question whose relation was not edited
    gives the picture's other edit all the weight; after it, almost none."""
    from hf_liveedit.trainers.routing_stage import use_image_key

    liveedit = make_liveedit("llava")
    questions = [(QUESTION, REPHRASE), ("What colour is this flag?", "Name the flag's colour.")]
    rows = [(picture, q) for picture in range(12) for q in range(2)]  # row = 2 * picture + q
    sources = {
        "edit": ([tiny_image(p) for p, _ in rows], [questions[q][0] for _, q in rows]),
        "rephrase": ([tiny_image(p) for p, _ in rows], [questions[q][1] for _, q in rows]),
        "other_image": ([_blend(p) for p, _ in rows], [questions[q][0] for _, q in rows]),
        "locality": ([tiny_image(500 + i) for i in range(24)], ["What is it?"] * 24),
    }
    inputs = {
        name: collect_routing_states(liveedit, images, prompts, batch_size=8)
        for name, (images, prompts) in sources.items()
    }
    use_image_key(liveedit, inputs["edit"], positions=4)
    train = list(range(20))  # pictures 0-9, both relations
    edited = [2 * p for p in range(10)] + [2 * p + 1 for p in range(5)]
    same_picture = [2 * p + 1 for p in range(5, 10)]  # their picture's other relation is stored
    unedited = [20, 21, 22, 23]  # pictures 10, 11: never edited

    before = routing_diagnostics(liveedit, inputs, edited, unedited, same_picture)
    assert before["edit_own_kept"] == 1.0 and before["neighbour_any_kept"] == 0.0
    assert before["same_picture_any_kept"] == 1.0  # the filter keeps the picture's edits
    assert before["same_picture_weight"] > 0.3
    args = RoutingStageArguments(steps=40, batch_size=8, learning_rate=1e-2)
    logs = train_routing(liveedit, {k: v.select(train) for k, v in inputs.items()}, args)
    assert set(logs[-1]) == {"step", "soft", "reject"}
    after = routing_diagnostics(liveedit, inputs, edited, unedited, same_picture)
    assert after["edit_own_kept"] == 1.0 and after["rephrase_own_kept"] == 1.0
    assert after["edit_own_weight"] >= 0.9 and after["rephrase_own_weight"] >= 0.8
    assert after["same_picture_weight"] <= 0.1
    assert after["neighbour_any_kept"] == 0.0 and after["locality_any_kept"] == 0.0
