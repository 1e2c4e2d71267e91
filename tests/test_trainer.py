"""LiveEditTrainer, its collator and training forward, on a tiny offline LLaVA."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import make_liveedit, rig_routing
from hf_liveedit.trainers import (
    LOSS_CURVE_NAME,
    LOSS_TERMS,
    LiveEditDataCollator,
    LiveEditTrainer,
    LiveEditTrainingArguments,
    LiveEditTrainingModel,
    RowKind,
)
from hf_liveedit.trainers.export import export_generator
from hf_liveedit.trainers.losses import answer_nll
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_liveedit import LiveEditModel, cli
from hf_liveedit.data.prompts import format_prompt
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

TARGETS = ["Lyon", "Paris", "Rome", "Oslo"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_records(count: int = 4) -> list[dict]:
    """MMEdit-format records with tiny images (edit, rephrase, other image, two locality rows)."""
    return [
        {
            "src": f"Which city is shown in picture {i}?",
            "rephrase": f"Name the city of picture {i}.",
            "alt": TARGETS[i % len(TARGETS)],
            "image": tiny_image(i),
            "image_rephrase": tiny_image(50 + i),
            "loc": "nq question: who wrote hamlet",
            "loc_ans": "Shakespeare",
            "m_loc": tiny_image(100 + i),
            "m_loc_q": "What colour is it?",
            "m_loc_a": "red",
        }
        for i in range(count)
    ]


def training_args(tmp_path, **overrides) -> LiveEditTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        max_steps=12,
        logging_steps=1,
        save_steps=6,
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
    )
    return LiveEditTrainingArguments(**{**values, **overrides})


def test_collator_builds_edit_generality_and_locality_rows():
    liveedit = make_liveedit()
    records = make_records(3)
    del records[2]["m_loc"]  # a record without image locality still trains
    torch.manual_seed(0)
    batch = LiveEditDataCollator(liveedit)(records)

    kinds, owners = batch["row_kind"].tolist(), batch["row_record"].tolist()
    assert kinds == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert owners == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
    mask = batch["expert_mask"]
    generality = batch["row_kind"] <= RowKind.GEN_IMAGE
    own = mask[torch.arange(len(kinds)), batch["row_record"]]
    assert own[generality].all() and not own[~generality].any()  # locality: other experts only
    assert len(batch["frozen"]["input_ids"]) == 2 and "pixel_values" in batch["frozen"]
    assert "pixel_values" not in batch["text"] and len(batch["text"]["input_ids"]) == 3
    assert batch["text_expert_mask"][torch.arange(3), torch.arange(3)].sum() == 0
    for end in (batch["pair_input"], batch["pair_edit"]):
        assert batch["row_kind"][end].le(RowKind.GEN_IMAGE).all()
        assert batch["row_record"][end].tolist() == [0, 1, 2]
    assert (batch["negative_record"] != torch.arange(3)).all()

    tokenizer = liveedit.processor.tokenizer
    edited = batch["edited"]
    first = tokenizer.decode(edited["input_ids"][0][edited["attention_mask"][0].bool()])
    assert format_prompt(records[0]["src"]) in first  # the data loader's prompt format
    answer = edited["labels"][3][edited["labels"][3] != -100]
    assert tokenizer.decode(answer).strip() == records[0]["alt"]


def test_training_forward_matches_inference_with_the_edit_stored():
    """l_rel of a one-record batch = the teacher-forced NLL of the edited model at inference."""
    liveedit = make_liveedit(expert_scale=5.0)
    rig_routing(liveedit, keep=True)  # at inference the edit's own input keeps its expert
    record = make_records(1)[0]
    batch = LiveEditDataCollator(liveedit)([record])
    with torch.no_grad():
        terms = LiveEditTrainingModel(liveedit)(**batch)
    assert set(terms) == set(LOSS_TERMS)
    # A one-record batch has no other expert for its locality row: only padding noise remains.
    assert abs(terms["loc_image"]) < 1e-6

    prompt = format_prompt(record["src"])
    liveedit.add_edit(record["image"], prompt, record["alt"])
    inputs = liveedit.build_inputs(record["image"], prompt, record["alt"])
    with torch.no_grad():
        logits = liveedit(**inputs).logits
    labels = inputs["labels"]
    width = int((labels != -100).sum())
    expected = answer_nll(
        logits[:, -width - 1 : -1], labels[:, -width:], labels[:, -width:] != -100
    )
    torch.testing.assert_close(terms["rel"], expected[0])
    with liveedit.disable_adapter(), torch.no_grad():
        unedited = liveedit(**inputs).logits
    assert not torch.allclose(unedited, logits)


def test_text_only_locality_is_never_edited_unless_configured():
    records = make_records(2)
    for text_only, expect_zero in ((False, True), (True, False)):
        liveedit = make_liveedit(edit_text_only_inputs=text_only, expert_scale=5.0)
        torch.manual_seed(1)
        batch = LiveEditDataCollator(liveedit)(records)
        batch["text_expert_mask"][:] = True  # offer every expert to the text rows
        with torch.no_grad():
            terms = LiveEditTrainingModel(liveedit)(**batch)
        assert (terms["loc_text"] == 0) == expect_zero


def test_short_run_lowers_the_loss_and_trains_only_liveedit(tmp_path):
    liveedit = make_liveedit()
    base_before = {k: v.clone() for k, v in liveedit.base_model.state_dict().items()}
    modules_before = {k: v.clone() for k, v in liveedit.liveedit_modules.state_dict().items()}
    trainer = LiveEditTrainer(liveedit, args=training_args(tmp_path), train_dataset=make_records())
    trainer.train()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 12
    assert sum(losses[-3:]) < sum(losses[:3])
    logged = trainer.state.log_history[0]
    assert all(f"loss_{term}" in logged for term in LOSS_TERMS)
    for key, value in liveedit.base_model.state_dict().items():
        assert torch.equal(value.cpu(), base_before[key]), key
    changed = [
        key
        for key, value in liveedit.liveedit_modules.state_dict().items()
        if not torch.equal(value.cpu(), modules_before[key])
    ]
    assert len(changed) == len(modules_before)

    # Checkpoints are adapter folders with a loss curve; they load with from_pretrained.
    checkpoint = tmp_path / "run" / "checkpoint-12"
    assert (checkpoint / LOSS_CURVE_NAME).stat().st_size > 0
    base, processor = tiny_llava()
    loaded = LiveEditModel.from_pretrained(base, checkpoint, processor=processor)
    record = make_records(1)[0]
    for model in (liveedit, loaded):
        model.to("cpu").add_edit(record["image"], record["src"], record["alt"])
    inputs = loaded.build_inputs([record["image"], tiny_image(7)], [record["src"], "What is it?"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, liveedit(**inputs).logits)


def test_resume_continues_the_step_count(tmp_path):
    liveedit = make_liveedit()
    LiveEditTrainer(
        liveedit, args=training_args(tmp_path, max_steps=6), train_dataset=make_records()
    ).train()
    checkpoint = tmp_path / "run" / "checkpoint-6"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 6

    class AtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.weights = {
                k: v.clone() for k, v in model.liveedit.liveedit_modules.state_dict().items()
            }

    start = AtStart()
    fresh = make_liveedit()  # freshly initialised: the weights must come from the checkpoint
    trainer = LiveEditTrainer(
        fresh,
        args=training_args(tmp_path, max_steps=9),
        train_dataset=make_records(),
        callbacks=[start],
    )
    trainer.train(resume_from_checkpoint=str(checkpoint))
    saved = LiveEditModel.from_pretrained(tiny_llava()[0], checkpoint).liveedit_modules.state_dict()
    assert all(torch.equal(start.weights[k].cpu(), v) for k, v in saved.items())
    steps = [entry["step"] for entry in trainer.state.log_history if "loss" in entry]
    assert steps[-3:] == [7, 8, 9] and trainer.state.global_step == 9


def test_checkpoint_of_another_backbone_is_refused(tmp_path):
    make_liveedit().save_pretrained(tmp_path / "adapter")
    trainer = LiveEditTrainer(make_liveedit("qwen2_vl"), args=training_args(tmp_path))
    with pytest.raises(ValueError, match="different base model"):
        trainer.load_generator(tmp_path / "adapter")


def test_checkpoint_of_other_weights_is_refused_unless_allowed(tmp_path):
    source = make_liveedit()
    with torch.no_grad():
        source.liveedit_modules.sentinel.add_(1.0)
        source.base_model.get_input_embeddings().weight[0, 0] += 1.0  # another build
    source.save_pretrained(tmp_path / "adapter")
    trainer = LiveEditTrainer(make_liveedit(), args=training_args(tmp_path))
    with pytest.raises(ValueError, match="hash to"):
        trainer.load_generator(tmp_path / "adapter")
    with pytest.warns(UserWarning, match="hash to"):
        trainer.load_generator(tmp_path / "adapter", allow_base_model_mismatch=True)
    assert trainer.liveedit.generator_sha256() == source.generator_sha256()


def test_train_command_starts_from_another_backbones_generator(tmp_path):
    source = make_liveedit("llava", module_dim=32, num_heads=4)
    with torch.no_grad():
        source.liveedit_modules.sentinel.add_(1.0)
        source.base_model.get_input_embeddings().weight[0, 0] += 1.0  # another build
    source.save_pretrained(tmp_path / "init")
    data = tmp_path / "data.json"
    records = make_records(2)
    for i, record in enumerate(records):
        for field in ("image", "image_rephrase", "m_loc"):
            record[field].save(tmp_path / f"{field}-{i}.png")
            record[field] = f"{field}-{i}.png"
    data.write_text(json.dumps(records))
    args = [
        "train",
        "--backbone",
        "tiny",
        "--data",
        str(data),
        "--init_from",
        str(tmp_path / "init"),
    ]
    args += [
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "1",
        "--learning_rate",
        "0",
        "--logging_steps",
        "1",
    ]
    args += ["--output_dir", str(tmp_path / "out")]
    with pytest.warns(UserWarning, match="hash to"):
        assert cli.main(args) == 0
    trained = json.loads((tmp_path / "out" / "liveedit_config.json").read_text())
    assert trained["generator_sha256"] == source.generator_sha256()  # lr 0: the initial weights
    assert trained["base_model_sha256"] == make_liveedit().base_model_sha256()  # the new backbone
    assert cli.main([*args, "--resume", str(tmp_path / "init")]) == 2  # a usage error


def test_float16_export_loads_with_the_recorded_generator_hash(tmp_path):
    liveedit = make_liveedit()
    export_generator(liveedit, tmp_path / "export")
    assert {p.name for p in (tmp_path / "export").iterdir()} == {
        "liveedit_config.json",
        "generator.safetensors",
        "README.md",
    }
    stored = load_file(str(tmp_path / "export" / "generator.safetensors"))
    assert {value.dtype for value in stored.values()} == {torch.float16}
    recorded = json.loads((tmp_path / "export" / "liveedit_config.json").read_text())
    base, processor = tiny_llava()
    loaded = LiveEditModel.from_pretrained(base, tmp_path / "export", processor=processor)
    assert loaded.generator_sha256() == recorded["generator_sha256"] == liveedit.generator_sha256()


def test_train_command_with_yaml_and_flags(tmp_path):
    records = make_records(4)
    for i, record in enumerate(records):  # an MMEdit JSON file with image paths
        for field in ("image", "image_rephrase", "m_loc"):
            path = f"{field}-{i}.png"
            record[field].save(tmp_path / path)
            record[field] = path
    (tmp_path / "data.json").write_text(json.dumps(records))
    config = tmp_path / "train.yaml"
    config.write_text(
        "backbone: tiny\nmodule_dim: 32\nnum_heads: 4\nper_device_train_batch_size: 2\n"
        "max_steps: 99\n"
    )
    args = ["train", "--config", str(config), "--data", str(tmp_path / "data.json")]
    args += ["--max_steps", "2", "--output_dir", str(tmp_path / "out"), "--save_steps", "2"]
    args += ["--logging_steps", "1", "--report_to", "none"]
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    settings = summary["settings"]
    assert summary["steps"] == 2 and settings["training_args"]["per_device_train_batch_size"] == 2
    assert (
        settings["liveedit_config"]["module_dim"] == 32 and settings["script"]["backbone"] == "tiny"
    )
    assert set(summary["final_losses"]) == {"loss", *(f"loss_{term}" for term in LOSS_TERMS)}
    assert (tmp_path / "out" / LOSS_CURVE_NAME).is_file()
    assert (tmp_path / "out" / "checkpoint-2" / "generator.safetensors").is_file()


@pytest.mark.parametrize("family, fast", [("llava", True), ("qwen2_vl", True), ("blip2", False)])
def test_cached_bottom_gives_the_same_losses(family, fast):
    """Rows seen before skip the layers below l_e; checked once, with a fallback (BLIP-2)."""
    liveedit = make_liveedit(family, expert_scale=5.0)
    torch.manual_seed(0)
    batch = LiveEditDataCollator(liveedit)(make_records(3))
    cached = LiveEditTrainingModel(liveedit, cache_hidden_states=True)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = LiveEditTrainingModel(liveedit)(**batch)
        # The edited rows fill the cache; the frozen pass over the locality rows then finds
        # them cached and checks the cached path against the full forward once.
        first = cached(**batch)
        assert len(cached.cache) == 12 and cached.cache.fast_path is fast
        again = cached(**batch)
    assert bool(caught) is not fast
    for term in LOSS_TERMS:
        torch.testing.assert_close(first[term], expected[term])
        torch.testing.assert_close(again[term], expected[term], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family, split", [("llava", True), ("qwen2_vl", False)])
def test_partly_cached_batches_run_the_bottom_for_the_other_rows_only(family, split):
    """Rows not cached (or without a key) run the layers up to l_e alone; the losses stay."""
    liveedit = make_liveedit(family, expert_scale=5.0)
    records = make_records(3)
    torch.manual_seed(0)
    seen = LiveEditDataCollator(liveedit)(records[:2])
    torch.manual_seed(1)
    batch = LiveEditDataCollator(liveedit)(records)
    batch["row_keys"][0] = None  # a row that must not be kept (as fresh targets' rows)
    model = LiveEditTrainingModel(liveedit, cache_hidden_states=True)
    calls = []
    layer = liveedit.backbone.decoder_layers()[0]
    handle = layer.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        expected = LiveEditTrainingModel(liveedit)(**batch)
        model(**seen)
        assert model.cache.fast_path and len(model.cache) == 8
        calls.clear()
        terms = model(**batch)
    handle.remove()
    for term in LOSS_TERMS:
        torch.testing.assert_close(terms[term], expected[term], rtol=1e-4, atol=1e-5)
    # record 2's four rows are new; row 0 (seen, but without a key now) is not taken from the cache
    assert len(model.cache) == 12 and model.cache.missing(batch["row_keys"]) == [0]
    if split:  # the bottom ran once, on those five rows
        assert calls == [5]
    else:  # Qwen2-VL's inputs do not split by row: the whole batch runs, as before
        assert calls == [len(batch["row_keys"])]
    assert (liveedit.backbone.select_rows(batch["edited"], [2, 0]) is None) is not split


# --- fresh counterfactual targets --------------------------------------------------------------


def relational_records() -> list[dict]:
    """make_records with the benchmark's relation / answer columns (capitals of four countries)."""
    records = make_records(4)
    answers = ["Paris", "Rome", "Oslo", "Lyon"]  # true answers; each alt is another's
    for record, answer in zip(records, answers):
        record.update(relation="country/capital", answer=answer)
    return records


def test_counterfactual_targets_never_draw_the_true_answer():
    from datasets import Dataset

    from hf_liveedit.data.targets import CounterfactualTargets

    records = relational_records()
    records.append(dict(records[0], relation="country/tld", answer=".fr", alt=".it"))
    pools = CounterfactualTargets(Dataset.from_list([dict(r, image=None) for r in records]))
    assert pools.pools == {
        "country/capital": ["Lyon", "Oslo", "Paris", "Rome"],
        "country/tld": [".fr", ".it"],
    }
    torch.manual_seed(0)
    drawn = {pools.draw(records[0]) for _ in range(60)}
    assert drawn == {"Lyon", "Oslo", "Rome"}  # every other value, never "Paris"
    assert {pools.draw(records[-1]) for _ in range(10)} == {".it"}
    with pytest.raises(ValueError, match="lacks \\['relation', 'answer'\\]"):
        CounterfactualTargets(Dataset.from_list([{"src": "q", "alt": "a"}]))
    with pytest.raises(ValueError, match="single value"):
        CounterfactualTargets([{"relation": "r", "answer": "x", "alt": "X"}])  # same once folded


def test_invented_targets_are_new_strings_made_of_two_values():
    from hf_liveedit.data.targets import CounterfactualTargets

    records = relational_records()  # capitals Lyon, Oslo, Paris, Rome
    pools = CounterfactualTargets(records, novel_rate=1.0)
    known = {"lyon", "oslo", "paris", "rome"}
    generator = torch.Generator().manual_seed(0)
    invented = [pools.draw(records[0], ("Ossa",), generator) for _ in range(60)]
    heads = ("L", "Ly", "Lyo", "O", "Os", "Osl", "P", "Pa", "Par", "Pari", "R", "Ro", "Rom")
    for value in invented:
        assert value.lower() not in known and value != "Ossa" and len(value) > 1
        assert value.startswith(heads)  # the start of one value, the end of another
    assert len(set(invented)) > 10
    generator = torch.Generator().manual_seed(0)
    assert [pools.draw(records[0], ("Ossa",), generator) for _ in range(60)] == invented
    half = CounterfactualTargets(records, novel_rate=0.5)
    torch.manual_seed(0)
    drawn = [half.draw(records[0]) for _ in range(200)]
    assert 60 < sum(value in {"Lyon", "Oslo", "Rome"} for value in drawn) < 140
    with pytest.raises(ValueError, match="novel_rate must be in"):
        CounterfactualTargets(records, novel_rate=2)
    # one-letter values cannot be cut in two
    letters = [{"relation": "r", "answer": "a", "alt": "b"}]
    with pytest.raises(ValueError, match="could not invent a new value of r"):
        CounterfactualTargets(letters).invent(letters[0])


def test_collator_redraws_targets_per_batch_and_leaves_the_cache_alone():
    from hf_liveedit.data.targets import CounterfactualTargets

    liveedit = make_liveedit()
    records = relational_records()
    pools = CounterfactualTargets(records)
    tokenizer = liveedit.processor.tokenizer

    def targets(batch):  # the answer of each edit / generality row, by record
        edited, kinds = batch["edited"], batch["row_kind"]
        out = {}
        for row in (kinds <= RowKind.GEN_IMAGE).nonzero().squeeze(1).tolist():
            labels = edited["labels"][row]
            answer = tokenizer.decode(labels[labels != -100]).strip()
            out.setdefault(int(batch["row_record"][row]), set()).add(answer)
        return out

    torch.manual_seed(0)
    plain = LiveEditDataCollator(liveedit)(records)
    torch.manual_seed(0)
    off = LiveEditDataCollator(liveedit, fresh_targets=pools, fresh_target_rate=0.0)(records)
    # rate 0 is the collator of before, draw for draw
    assert off["row_keys"] == plain["row_keys"] and torch.equal(
        off["expert_mask"], plain["expert_mask"]
    )
    fresh = LiveEditDataCollator(liveedit, fresh_targets=pools, fresh_target_rate=1.0)
    seen = set()
    for _ in range(8):
        batch = fresh(records)
        assert batch["frozen_keys"] == plain["frozen_keys"]
        for kind, key, plain_key in zip(batch["row_kind"], batch["row_keys"], plain["row_keys"]):
            # fresh edit and generality rows are not kept; locality rows keep their keys
            assert key == (None if kind <= RowKind.GEN_IMAGE else plain_key)
        for index, answers in targets(batch).items():
            assert len(answers) == 1  # edit, rephrase and other image share the new target
            (answer,) = answers
            assert answer != records[index]["answer"] and answer in pools.pools["country/capital"]
            seen.add((index, answer))
    assert len(seen) > len(records)  # targets change from batch to batch
    # a fresh batch trains without filling the cache with rows that will not come again
    model = LiveEditTrainingModel(liveedit, cache_hidden_states=True)
    with torch.no_grad():
        terms = model(**fresh(records))
    assert torch.isfinite(terms["rel"]) and len(model.cache) == len(plain["frozen_keys"])
    with pytest.raises(ValueError, match="needs fresh_targets"):
        LiveEditDataCollator(liveedit, fresh_target_rate=0.5)


def test_trainer_with_fresh_targets_trains_and_evaluates_on_the_records_own(tmp_path):
    from datasets import Dataset

    records = relational_records()
    args = training_args(tmp_path, max_steps=2, save_steps=10, fresh_target_rate=1.0)
    liveedit = make_liveedit()
    trainer = LiveEditTrainer(liveedit, args=args, train_dataset=records, eval_dataset=records)
    assert trainer.data_collator.fresh_target_rate == 1.0
    trainer.train()
    fresh_eval = trainer.evaluate()["eval_loss"]
    assert trainer.data_collator.fresh_target_rate == 1.0  # restored after evaluating
    own = LiveEditTrainer(
        trainer.liveedit, args=training_args(tmp_path), train_dataset=records, eval_dataset=records
    )
    assert fresh_eval == own.evaluate()["eval_loss"]
    with pytest.raises(ValueError, match="fresh_target_rate must be in"):
        training_args(tmp_path, fresh_target_rate=1.5)
    with pytest.raises(ValueError, match="novel_target_rate must be in"):
        training_args(tmp_path, novel_target_rate=-0.1)
    with pytest.raises(ValueError, match="set fresh_target_rate > 0"):
        training_args(tmp_path, novel_target_rate=0.5)
    novel = training_args(tmp_path, fresh_target_rate=1.0, novel_target_rate=1.0)
    collator = LiveEditTrainer(liveedit, args=novel, train_dataset=records).data_collator
    assert collator.fresh_targets.novel_rate == 1.0
    unrelated = make_records()  # MMEdit records (E-VQA, ...) have no relation to draw from
    with pytest.raises(ValueError, match="the data lacks \\['relation', 'answer'\\]"):
        LiveEditTrainer(make_liveedit(), args=args, train_dataset=Dataset.from_list(unrelated))


def test_generator_only_training_leaves_the_router_alone(tmp_path):
    liveedit = make_liveedit()
    before = {k: v.clone() for k, v in liveedit.liveedit_modules.state_dict().items()}
    args = training_args(tmp_path, max_steps=3, save_steps=10, trained_modules="generator")
    LiveEditTrainer(liveedit, args=args, train_dataset=make_records()).train()
    after = liveedit.liveedit_modules.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key].cpu())}
    assert changed and all(key.startswith(("generator.", "expert_norm.")) for key in changed)
    assert any(key.startswith("expert_norm.") for key in changed)
    with pytest.raises(ValueError, match="trained_modules must be one of"):
        training_args(tmp_path, trained_modules="router")


def test_time_budget_stops_at_a_step_with_a_checkpoint_that_resumes(tmp_path):
    args = training_args(tmp_path, max_steps=12, save_steps=100, max_train_minutes=1e-9)
    trainer = LiveEditTrainer(make_liveedit(), args=args, train_dataset=make_records())
    trainer.train()
    assert trainer.state.global_step == 1  # the budget is spent after the first step
    assert (tmp_path / "run" / "checkpoint-1" / "generator.safetensors").is_file()
    args = training_args(tmp_path, max_steps=3, save_steps=100)
    resumed = LiveEditTrainer(make_liveedit(), args=args, train_dataset=make_records())
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    assert resumed.state.global_step == 3
    with pytest.raises(ValueError, match="max_train_minutes must be > 0"):
        training_args(tmp_path, max_train_minutes=0)
