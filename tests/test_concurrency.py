"""Concurrent use: calls from several threads route independently and see whole edits.

Each thread checks every output against a result computed beforehand on one thread. An edit
added and removed by another thread during the run may or may not apply to a call that
overlaps it, so a call on the edited input must equal the result with the original edits or
the result with the extra edit too, never anything else.
"""

from __future__ import annotations

import threading

import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing

from hf_liveedit.testing.tiny_models import tiny_image

ROUNDS = 12
EXTRA = (tiny_image(7), "Name it.", "Paris")


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def greedy(model, inputs) -> torch.Tensor:
    return model.generate(**inputs, max_new_tokens=3, do_sample=False)


def run_threads(*workers) -> None:
    """Run each worker on its own thread; re-raise the first failure."""
    failures: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(worker):
        def run():
            start.wait()
            try:
                for _ in range(ROUNDS):
                    worker()
            except BaseException as error:  # noqa: BLE001 - reported on the main thread
                failures.append(error)

        return threading.Thread(target=run)

    threads = [wrap(worker) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_threads_mixing_edited_unedited_text_only_and_edit_changes_match_one_thread():
    torch.manual_seed(0)
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    image = tiny_image(0)
    edited_in = liveedit.build_inputs(image, PROMPT)
    text_in = liveedit.build_inputs(None, PROMPT)
    with liveedit.disable_adapter():
        base = logits(liveedit, edited_in)
        base_text = logits(liveedit, text_in)
        base_tokens = greedy(liveedit, edited_in)
    liveedit.add_edit(image, PROMPT, TARGET)
    edited = {"one": logits(liveedit, edited_in)}
    tokens = {"one": greedy(liveedit, edited_in)}
    extra_id = liveedit.add_edit(*EXTRA)
    edited["two"], tokens["two"] = logits(liveedit, edited_in), greedy(liveedit, edited_in)
    liveedit.remove_edit(extra_id)
    # the references differ, so each check below can fail
    assert not torch.equal(edited["one"], base) and not torch.equal(edited["one"], edited["two"])
    assert not torch.equal(tokens["one"], base_tokens)

    def edited_forward():
        out = logits(liveedit, edited_in)
        assert any(torch.equal(out, reference) for reference in edited.values())

    def edited_generate():
        out = greedy(liveedit, edited_in)
        assert any(torch.equal(out, reference) for reference in tokens.values())

    def text_only():
        assert torch.equal(logits(liveedit, text_in), base_text)

    def disabled():
        with liveedit.disable_adapter():
            assert torch.equal(logits(liveedit, edited_in), base)
            assert torch.equal(greedy(liveedit, edited_in), base_tokens)

    def add_and_remove():
        liveedit.remove_edit(liveedit.add_edit(*EXTRA))

    run_threads(edited_forward, edited_generate, text_only, disabled, add_and_remove)
    assert len(liveedit.edits) == 1
    assert torch.equal(logits(liveedit, edited_in), edited["one"])


def test_recorded_routing_and_disabling_belong_to_their_thread():
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    image = tiny_image(0)
    liveedit.add_edit(image, PROMPT, TARGET)
    inputs = liveedit.build_inputs(image, PROMPT)
    inside, outside = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def disabler():
        with liveedit.disable_adapter(), liveedit.record_routing() as routing:
            inside.set()
            outside.wait(timeout=60)
            logits(liveedit, inputs)
        seen["disabled routing"] = routing

    thread = threading.Thread(target=disabler)
    thread.start()
    inside.wait(timeout=60)
    with liveedit.record_routing() as routing:  # the other thread is inside disable_adapter
        logits(liveedit, inputs)
    outside.set()
    thread.join()
    assert len(routing) == 1 and routing[0][0, 0] > 0  # this thread still routes
    assert seen["disabled routing"] == []  # the disabled thread routed nothing
