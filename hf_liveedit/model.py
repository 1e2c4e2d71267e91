"""``LiveEditModel``: a frozen VLLM plus LiveEdit's generator, expert repository and routing hook."""

from __future__ import annotations

import contextlib
import copy
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import BatchFeature

from .backbones import BackboneSpec, get_backbone_spec
from .config import CONFIG_NAMES, LEGACY_CONFIG_NAME, LiveEditConfig, config_file
from .images import check_image_source, image_sha256, load_image
from .layer import EditLayerHook, StopForward
from .model_card import adapter_card, experts_card
from .modules import ExpertBatch, LiveEditModules
from .persistence import (
    EDITS_NAME,
    EXPERTS_WEIGHTS_NAME,
    FORMAT_VERSION,
    GENERATOR_WEIGHTS_NAME,
    atomic_directory,
    cast_floats,
    check_base_model,
    check_format_version,
    read_edit_records,
    read_generator,
    read_json,
    read_safetensors,
    recover_leftovers,
    require_keys,
    state_dict_sha256,
    write_json,
)
from .repository import EditRecord, ExpertRepository
from .verification import EditCheck, refine_new_experts


class LiveEditModel(nn.Module):
    """A VLLM whose knowledge can be edited, edit after edit, without changing its weights.

    Build it with :func:`get_liveedit_model` or :meth:`from_pretrained`. Attributes the wrapper
    does not define (``config``, ``generation_config``, ``device``, ...) are the base model's.

    Args:
        model: the base VLLM; frozen, never copied or modified.
        config: the adapter's configuration.
        processor: the base model's processor (needed by :meth:`add_edit`).
    """

    def __init__(self, model: nn.Module, config: LiveEditConfig, processor: Any | None = None):
        super().__init__()
        if not isinstance(config, LiveEditConfig):
            hint = " (use LiveEditConfig(**settings))" if isinstance(config, dict) else ""
            raise TypeError(f"config must be a LiveEditConfig, got {type(config).__name__}{hint}")
        if isinstance(model, LiveEditModel):
            raise ValueError("The model is already a LiveEditModel; add edits to it directly")
        backbone = get_backbone_spec(model, processor)
        if any(
            isinstance(hook, EditLayerHook)
            for layer in backbone.decoder_layers()
            for hook in layer._forward_hooks.values()
        ):  # a second hook would edit twice, and disable_adapter would only disable one
            raise ValueError(
                "This model already carries a LiveEdit adapter: use that LiveEditModel, or call "
                "its unload() first"
            )
        config = copy.deepcopy(config)
        if config.edit_layer is None:
            config.edit_layer = int(backbone.num_layers * 2 / 3)
        if not 0 <= config.edit_layer < backbone.num_layers:
            raise ValueError(
                f"edit_layer {config.edit_layer} is out of range for {type(model).__name__} with "
                f"{backbone.num_layers} decoder layers (valid: 0..{backbone.num_layers - 1})"
            )
        if config.num_sentinel_tokens is None:
            config.num_sentinel_tokens = backbone.num_image_tokens
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(model.config, "_name_or_path", None) or None
        model.requires_grad_(False)
        self.base_model = model
        self.processor = processor
        self.liveedit_config = config
        self.backbone: BackboneSpec = backbone
        # on layer l_e's device: a `device_map` model may spread its layers over several
        device = next(backbone.decoder_layers()[config.edit_layer].parameters()).device
        self.liveedit_modules = LiveEditModules(
            config, backbone.hidden_size, config.num_sentinel_tokens
        ).to(device=device, dtype=config.torch_module_dtype)
        self.repository = ExpertRepository(
            config.rank,
            backbone.hidden_size,
            config.num_queries,
            config.module_dim,
            dtype=config.torch_expert_dtype,
            device=device,
        )
        self.hook = EditLayerHook(self.liveedit_modules, self.repository, config.backend)
        self._handles = [
            backbone.decoder_layers()[config.edit_layer].register_forward_hook(self.hook),
            backbone.step_module().register_forward_pre_hook(self._before_step, with_kwargs=True),
        ]

    # --- attribute forwarding (as PEFT does) -------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__["_modules"].get("base_model")
            if base is None:
                raise
            return getattr(base, name)

    @property
    def config(self) -> Any:
        """The base model's config (pipelines and ``generate`` read it)."""
        return self.base_model.config

    # --- forward / generate -----------------------------------------------------------------------
    def _before_step(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Before each language-model step: is it decoding, and where are the spans?"""
        # transformers 5.x names the KV cache `cache`; older releases `past_key_values`.
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        decoding = cache is not None and cache.get_seq_length() > 0
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        spans = None
        if not decoding and input_ids is not None:
            spans = self.backbone.spans(
                input_ids, kwargs.get("attention_mask"), kwargs.get("labels")
            )
        self.hook.before_step(decoding, spans)

    def _call(self, kwargs: dict) -> contextlib.AbstractContextManager[None]:
        """Routing state for one call, with its spans for steps that only see embeddings."""
        input_ids = kwargs.get("input_ids")
        spans = None
        if input_ids is not None:
            spans = self.backbone.spans(
                input_ids, kwargs.get("attention_mask"), kwargs.get("labels")
            )
        return self.hook.call(spans)

    def forward(self, **kwargs: Any) -> Any:
        """The base model's forward with the edits applied at layer ``l_e``.

        Positions with ``labels != -100`` are answer tokens and take no part in routing.
        """
        with self._call(kwargs):
            return self.base_model(**kwargs)

    def generate(self, **kwargs: Any) -> Any:
        """The base model's ``generate`` with the edits applied.

        Routing is decided at prefill from each sample's image and prompt and reused for every
        decoding step.
        """
        with self._call(kwargs):
            return self.base_model.generate(**kwargs)

    def disable_adapter(self) -> contextlib.AbstractContextManager[None]:
        """Within this context the model behaves exactly like the base model.

        Only calls made in this thread (or asyncio task) are affected; other threads keep
        their edits.
        """
        return self.hook.disabled()

    def record_routing(self) -> contextlib.AbstractContextManager[list[torch.Tensor]]:
        """Record the routing of every call in this context (this thread or task only).

        Yields a list to which each prefill appends its ``[B, N]`` weights over the stored
        experts (0 where the hard filter drops an expert)::

            with model.record_routing() as routing:
                model(**inputs)
            weights = routing[-1]
        """
        return self.hook.recording()

    def get_base_model(self) -> nn.Module:
        """The wrapped base model (frozen; its weights are never changed)."""
        return self.base_model

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts, as PEFT reports them.

        Trainable parameters are the LiveEdit modules' (generator, extractors, sentinel,
        expert LayerNorm) when they require gradients; the stored experts are buffers, not
        parameters.
        """
        parameters = list(self.parameters())
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        return trainable, sum(p.numel() for p in parameters)

    def print_trainable_parameters(self) -> None:
        """Print the trainable and total parameter counts, in PEFT's format."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || "
            f"trainable%: {100 * trainable / total:.4f}"
        )

    def unload(self) -> nn.Module:
        """Remove LiveEdit's hooks and return the untouched base model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return self.base_model

    # --- editing -------------------------------------------------------------------------------------
    @property
    def edits(self) -> list[EditRecord]:
        """Metadata of the stored edits (id, prompt, target, image SHA-256, time)."""
        return self.repository.records

    def build_inputs(
        self,
        images: Image.Image | str | Path | Sequence[Image.Image | str | Path] | None,
        prompts: str | Sequence[str],
        targets: str | Sequence[str] | None = None,
    ) -> BatchFeature:
        """Processor inputs formatted exactly as edits are (chat template, image first).

        Args:
            images: one image (or path) or a list of them, or None for text-only prompts.
            prompts: one prompt or a list.
            targets: optional answers appended for teacher-forced scoring (marked in ``labels``).
        """
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        if images is not None:
            images = [images] if single else list(images)
            images = [load_image(image) for image in images]
        if targets is not None:
            targets = [targets] if isinstance(targets, str) else list(targets)
        device = next(self.base_model.parameters()).device
        return self.backbone.build_inputs(images, prompts, targets).to(device)

    def add_edit(self, image: Image.Image | str | Path, prompt: str, target: str) -> str:
        """Store one edit: from now on ``(image, prompt)`` should be answered with ``target``.

        One partial forward pass up to layer ``l_e``; no weight changes. With
        ``LiveEditConfig.verify_edits`` the greedy answer on ``(image, prompt)`` is checked and
        the edit's expert refined until it is ``target`` (see :mod:`hf_liveedit.verification`);
        ``get_edit(id).took`` tells whether it took, and a warning says when it did not.

        Returns:
            The new edit's id.

        Raises:
            TypeError: ``image`` is not a PIL image or path.
            ValueError: empty prompt or target, or a target that tokenizes to nothing.
        """
        return self.add_edits([image], [prompt], [target], progress=False)[0]

    def add_edits(
        self,
        images: Sequence[Image.Image | str | Path],
        prompts: Sequence[str],
        targets: Sequence[str],
        batch_size: int = 8,
        progress: bool | None = None,
    ) -> list[str]:
        """Store many edits, computed in batches. Every input is validated before any is stored.

        Args:
            images, prompts, targets: equally long sequences, one edit each.
            batch_size: edits per forward pass.
            progress: show a progress bar (default: when there is more than one batch).

        Returns:
            The new edits' ids, in order.
        """
        for name, value in (("images", images), ("prompts", prompts), ("targets", targets)):
            if isinstance(value, (str, bytes, Path, Image.Image)):
                raise TypeError(
                    f"{name} must be a sequence with one item per edit, got a single "
                    f"{type(value).__name__}; use add_edit for one edit"
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        images, prompts, targets = list(images), list(prompts), list(targets)
        if not len(images) == len(prompts) == len(targets):
            raise ValueError(
                f"images, prompts and targets must be equally long, got {len(images)}, "
                f"{len(prompts)}, {len(targets)}"
            )
        for image in images:  # cheap checks first; images are decoded one batch at a time
            check_image_source(image)
        self._check_texts(prompts, targets)
        records: list[EditRecord] = []
        made: list[ExpertBatch] = []
        config = self.liveedit_config
        starts = range(0, len(images), batch_size)
        show = progress if progress is not None else len(starts) > 1
        for start in tqdm(starts, desc="add_edits", disable=not show, unit="batch"):
            end = start + batch_size
            batch_images = [load_image(image) for image in images[start:end]]
            inputs = self.build_inputs(batch_images, prompts[start:end], targets[start:end])
            experts = self._make_experts(inputs)
            checks: list[EditCheck | None] = [None] * len(batch_images)
            if config.verify_edits:
                stored = ExpertBatch.cat([self.repository.snapshot(), *made])
                experts, checks = refine_new_experts(
                    self,
                    inputs,
                    experts,
                    stored,
                    config.refine_steps,
                    config.refine_lr,
                    # an image key is a fingerprint whose similarity is a cosine: the own picture
                    # passes by construction, and moving the key would scale it past every other
                    config.refine_routing_margin if config.hard_routing == "sentinel" else None,
                    config.refine_min_probability,
                )
            made.append(experts)
            records += [
                EditRecord.new(
                    prompt,
                    target,
                    image_sha256(image),
                    took=None if check is None else check.took,
                    refine_steps=0 if check is None else check.steps,
                    rerouted=check is not None and check.rerouted,
                )
                for image, prompt, target, check in zip(
                    batch_images, prompts[start:end], targets[start:end], checks
                )
            ]
        if made:  # one addition: all edits are stored, or none
            self.repository.add(ExpertBatch.cat(made), records)
        missed = [record.id for record in records if record.took is False]
        if missed:
            warnings.warn(
                f"{len(missed)} of {len(records)} edits did not take within refine_steps="
                f"{config.refine_steps} (greedy answer on the edit input is not the target): "
                f"{', '.join(missed)}. They are stored; see EditRecord.took (refine_steps 0: the "
                "router keeps no expert for the edit's own input, so refining U and V cannot "
                "help; see refine_routing_margin).",
                stacklevel=3 if len(records) == 1 else 2,
            )
        return [record.id for record in records]

    def _check_texts(self, prompts: Sequence[str], targets: Sequence[str]) -> None:
        tokenizer = self.backbone.require_processor().tokenizer
        for name, texts in (("prompt", prompts), ("target", targets)):
            for text in texts:
                if not isinstance(text, str):
                    raise TypeError(f"Each {name} must be a str, got {type(text).__name__}")
                if not any(char.isprintable() and not char.isspace() for char in text):
                    raise ValueError(
                        f"Blank {name} {text!r}: an edit needs a {name} with visible characters"
                    )
        placeholders = set(self.backbone.image_block_token_ids())
        limit = getattr(self.backbone.text_config, "max_position_embeddings", None)
        for prompt, target in zip(prompts, targets):
            prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
            if placeholders & set(prompt_ids):
                raise ValueError(
                    f"Prompt {prompt!r} contains the model's image placeholder token: pass the "
                    "image as the image argument; LiveEdit inserts the placeholder itself"
                )
            target_ids = tokenizer(self.backbone.answer_text("", target), add_special_tokens=False)
            if not target_ids.input_ids:
                raise ValueError(f"Target {target!r} tokenizes to no tokens")
            if placeholders & set(target_ids.input_ids):
                raise ValueError(
                    f"Target {target!r} contains the model's image placeholder token, which "
                    "would be read as image positions"
                )
            length = len(prompt_ids) + len(target_ids.input_ids) + self.backbone.num_image_tokens
            if limit is not None and length > limit:
                raise ValueError(
                    f"Prompt and target take about {length} tokens with the image, more than the "
                    f"model's context of {limit} positions"
                )

    @torch.no_grad()
    def _make_experts(self, inputs: BatchFeature) -> ExpertBatch:
        """The generator's experts for teacher-forced edit inputs (image, prompt, target)."""
        hidden = self.hidden_states_at_edit_layer(inputs)
        spans = self.backbone.spans(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        return self.liveedit_modules.make_experts(hidden, spans)

    def hidden_states_at_edit_layer(self, inputs: BatchFeature | dict) -> torch.Tensor:
        """Run the frozen base model up to layer ``l_e`` (no edits) and return its output ``h``."""
        with self.hook.capturing() as captured:
            try:
                self.base_model(**{key: value for key, value in inputs.items() if key != "labels"})
            except StopForward:
                pass
        return captured[0]

    def get_edit(self, edit_id: str) -> EditRecord:
        """The record of one stored edit; ``UnknownEditError`` if the id is unknown."""
        return self.repository.records[self.repository.index_of(edit_id)]

    def remove_edit(self, edit_id: str) -> EditRecord:
        """Delete one stored edit; ``UnknownEditError`` (a KeyError and ValueError) if the id is unknown."""
        return self.repository.remove(edit_id)

    def clear_edits(self) -> None:
        """Delete every stored edit (the generator is kept)."""
        self.repository.clear()

    # --- persistence --------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """The base model's fingerprint plus the edited layer."""
        return {**self.backbone.fingerprint(), "edit_layer": self.liveedit_config.edit_layer}

    def base_model_sha256(self) -> str:
        """SHA-256 of every weight and buffer of the base model: its identity.

        Recorded with the generator and the experts when they are saved and checked when they
        are loaded, so that they are never applied silently to a model with the same
        architecture but other weights. Computed from the exact bytes, so the same checkpoint
        loaded in another dtype hashes differently. About 1 s per 500 MB of weights.
        """
        return state_dict_sha256(self.base_model.state_dict())

    def generator_sha256(self) -> str:
        """SHA-256 of the current generator weights (experts are only valid with these)."""
        return state_dict_sha256(self.liveedit_modules.state_dict())

    def save_pretrained(
        self,
        save_directory: str | Path,
        metrics: dict[str, float] | None = None,
        *,
        include_experts: bool = True,
        generator_dtype: torch.dtype | None = None,
        repo_id: str | None = None,
        license: str | None = "apache-2.0",
    ) -> None:
        """Save config, generator, experts and a model card; atomic (all or nothing).

        A failure or a killed process at any step leaves the previous save whole (restored by the
        next save or load if need be); see :func:`~hf_liveedit.persistence.atomic_directory`.

        Args:
            save_directory: target folder, created or replaced; its other files are kept (hard
                linked, not copied); a symlink to a folder stays a symlink. A legacy
                ``adapter_config.json`` is removed (``liveedit_config.json`` replaces it).
            metrics: editing metrics to show in the model card, if measured.
            include_experts: also save the expert repository. Without it the folder keeps no
                experts (those it held were made by the previous generator).
            generator_dtype: store the generator's weights in this dtype (e.g. ``torch.float16``
                to halve the file). Every value must survive the cast exactly, so that the
                recorded SHA-256 still verifies them: round the modules first, as
                :func:`hf_liveedit.trainers.export.export_generator` does.
            repo_id: Hub repository the card's usage snippet names (a placeholder when None).
            license: the model card's license (of the adapter's weights).

        Raises:
            ValueError: a weight is changed by the cast to ``generator_dtype``.
        """
        state = {key: v.contiguous() for key, v in self.liveedit_modules.state_dict().items()}
        if generator_dtype is not None:
            stored = {
                k: v.to(generator_dtype) if v.is_floating_point() else v for k, v in state.items()
            }
            changed = [k for k, v in state.items() if not torch.equal(stored[k].to(v.dtype), v)]
            if changed:
                raise ValueError(
                    f"generator weights {changed[:3]} change when stored in {generator_dtype}: "
                    "their recorded SHA-256 would not verify them. Round the modules first "
                    "(trainers.export.export_generator)."
                )
            state = stored
        base_model_sha256 = self.base_model_sha256()
        drop = [LEGACY_CONFIG_NAME] + ([] if include_experts else list(EXPERT_FILES))
        with atomic_directory(save_directory, drop=drop) as staging:
            self.liveedit_config.save_pretrained(
                staging,
                base_model_fingerprint=self.fingerprint(),
                base_model_sha256=base_model_sha256,
                generator_sha256=self.generator_sha256(),
                format_version=FORMAT_VERSION,
            )
            save_file(state, str(staging / GENERATOR_WEIGHTS_NAME))
            if include_experts:
                self._write_experts(staging, base_model_sha256)
            card = adapter_card(
                self.liveedit_config,
                {**self.fingerprint(), "sha256": base_model_sha256},
                self.edits if include_experts else [],
                metrics,
                repo_id=repo_id,
                license=license,
            )
            # write_text, not card.save: one primitive for every file (crash tests instrument it)
            (staging / "README.md").write_text(str(card), encoding="utf-8", newline="")

    def save_experts(self, save_directory: str | Path) -> None:
        """Save only the expert repository (``experts.safetensors`` + ``edits.json``), atomically.

        The folder's other files are kept, as by :meth:`save_pretrained`.

        Args:
            save_directory: target folder, created or replaced.
        """
        base_model_sha256 = self.base_model_sha256()
        with atomic_directory(save_directory) as staging:
            self._write_experts(staging, base_model_sha256)

    def _write_experts(self, directory: Path, base_model_sha256: str) -> None:
        save_file(self.repository.state_dict(), str(directory / EXPERTS_WEIGHTS_NAME))
        write_json(
            directory / EDITS_NAME,
            {
                "format_version": FORMAT_VERSION,
                "base_model_fingerprint": self.fingerprint(),
                "base_model_sha256": base_model_sha256,
                "generator_sha256": self.generator_sha256(),
                "expert_dtype": str(self.repository.dtype).removeprefix("torch."),
                "edits": [record.to_dict() for record in self.edits],
            },
        )

    def load_experts(
        self,
        directory: str | Path,
        allow_generator_mismatch: bool = False,
        allow_base_model_mismatch: bool = False,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        subfolder: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> None:
        """Replace the repository with experts saved by :meth:`save_experts` / :meth:`save_pretrained`.

        Args:
            directory: local folder or Hub repo id (only its two expert files are downloaded).
            allow_generator_mismatch: load experts made by other generator weights (their
                routing features will not match this generator's; for debugging only).
            allow_base_model_mismatch: load experts made on a base model with the same
                architecture but other weights (see :meth:`base_model_sha256`) with a warning
                instead of an error.
            revision, token, subfolder, cache_dir, local_files_only: as for
                :meth:`from_pretrained`.

        Raises:
            ValueError: the experts were made for another base model, layer or generator, by a
                newer hf-liveedit, or a file is corrupt, incomplete or missing its pair
                (``experts.safetensors`` without ``edits.json`` or the reverse); the message
                names the file. The current repository is left unchanged.
            OSError: a file cannot be read or downloaded.
        """
        folder = resolve_directory(
            directory,
            revision=revision,
            token=token,
            subfolder=subfolder,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            files=EXPERT_FILES,
        )
        edits_path, experts_path = folder / EDITS_NAME, folder / EXPERTS_WEIGHTS_NAME
        if edits_path.is_file() != experts_path.is_file():  # one of the pair lost or not copied
            pair = (edits_path, experts_path)
            present, absent = pair if edits_path.is_file() else pair[::-1]
            raise ValueError(
                f"{present} has no {absent.name} beside it: the expert repository is incomplete. "
                "Restore the missing file or save the experts again."
            )
        meta = read_json(edits_path, ("base_model_fingerprint", "generator_sha256", "edits"))
        check_format_version(meta, edits_path)
        what = f"The experts in {folder}"
        check_base_model(
            meta, self.fingerprint(), self.base_model_sha256, what, allow_base_model_mismatch
        )
        if not allow_generator_mismatch and meta["generator_sha256"] != self.generator_sha256():
            raise ValueError(
                f"The experts in {folder} were made by a different generator (sha256 "
                f"{meta['generator_sha256'][:12]}..., loaded generator {self.generator_sha256()[:12]}...). "
                "Load the generator they were made with, or re-add the edits."
            )
        records = read_edit_records(meta["edits"], edits_path)
        tensors = read_safetensors(experts_path)
        tensors = cast_floats(tensors, self.repository.dtype, experts_path, "expert_dtype")
        rows = sorted({len(tensor) if tensor.dim() else 0 for tensor in tensors.values()})
        if tensors and rows != [len(records)]:  # e.g. the two files come from different saves
            raise ValueError(
                f"{experts_path} holds {'/'.join(map(str, rows))} experts, but {edits_path.name} "
                f"lists {len(records)} edits: the two files are not from the same save"
            )
        try:
            self.repository.load(tensors, records)  # validates everything before any change
        except ValueError as error:  # tensors missing, or not one row per edit of edits.json
            raise ValueError(f"{experts_path} does not match {edits_path.name}: {error}") from error

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | Path,
        processor: Any | None = None,
        load_experts: bool = True,
        revision: str | None = None,
        token: str | bool | None = None,
        allow_base_model_mismatch: bool = False,
        *,
        is_trainable: bool = False,
        subfolder: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> LiveEditModel:
        """Load a saved adapter (local folder or Hub repo) onto ``model``, as PEFT loads one.

        Reads ``liveedit_config.json`` (or, in folders saved by earlier versions,
        ``adapter_config.json``). From the Hub only the files needed are downloaded.

        Args:
            model: the base VLLM the adapter was made for.
            model_id: local folder or Hub repo id.
            processor: the base model's processor.
            load_experts: also load the saved expert repository, if present; False neither
                reads nor downloads the expert files.
            revision: Hub branch, tag or commit.
            token: Hub token (default: the logged-in user's).
            allow_base_model_mismatch: load an adapter made on a model with the same
                architecture but other weights (see :meth:`base_model_sha256`) with a warning
                instead of an error, e.g. to start training a generator for a new backbone
                from an existing one. Adapters saved without a recorded hash load without
                this check.
            is_trainable: False (the default, as in PEFT) loads for inference: the LiveEdit
                modules do not require gradients and the model is put in eval mode. True keeps
                them trainable (e.g. to train further with ``LiveEditTrainer``).
            subfolder: folder of the adapter inside ``model_id``.
            cache_dir: Hub cache folder (default: the Hugging Face cache).
            local_files_only: use the Hub cache only, never the network.

        Raises:
            ValueError: the adapter was made for another base model; a file is corrupt (the
                generator's SHA-256 is verified whether or not experts are loaded), incomplete,
                of another PEFT method or of a newer hf-liveedit; the message names the file.
                ``model`` is left without hooks.
            OSError: a file cannot be read or downloaded.
        """
        folder = resolve_directory(
            model_id,
            revision=revision,
            token=token,
            subfolder=subfolder,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            files=ADAPTER_FILES + (EXPERT_FILES if load_experts else ()),
        )
        config, extra = LiveEditConfig.from_pretrained(folder)
        config.inference_mode = not is_trainable
        config_path = config_file(folder)
        require_keys(extra, ["base_model_fingerprint"], config_path)
        backbone = get_backbone_spec(model, processor)
        expected = {**backbone.fingerprint(), "edit_layer": config.edit_layer}
        what = f"The adapter in {folder}"
        check_base_model(  # before the hooks are attached
            extra,
            expected,
            lambda: state_dict_sha256(model.state_dict()),
            what,
            allow_base_model_mismatch,
        )
        # read and verified before the hooks are attached: a refused file leaves `model` as it was
        generator_path = folder / GENERATOR_WEIGHTS_NAME
        state = read_generator(
            generator_path, config.torch_module_dtype, extra.get("generator_sha256")
        )
        liveedit = cls(model, config, processor)
        try:
            try:
                liveedit.liveedit_modules.load_state_dict(state)
            except RuntimeError as error:  # other tensor names or shapes (and no hash recorded)
                raise ValueError(
                    f"{generator_path} does not fit {config_path.name}: {error}"
                ) from error
            if load_experts and any((folder / name).is_file() for name in EXPERT_FILES):
                liveedit.load_experts(folder, allow_base_model_mismatch=allow_base_model_mismatch)
        except BaseException:
            liveedit.unload()  # hand the base model back without hooks
            raise
        liveedit.liveedit_modules.requires_grad_(is_trainable)
        if not is_trainable:
            liveedit.eval()
        return liveedit

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        metrics: dict[str, float] | None = None,
        *,
        experts_only: bool = False,
        revision: str | None = None,
        create_pr: bool = False,
        license: str | None = "apache-2.0",
    ) -> Any:
        """Save the adapter (as :meth:`save_pretrained`), or only its experts, and upload it.

        Args:
            repo_id: the Hub repository, created if need be.
            private: make a new repository private.
            token: Hub token with write access (default: the logged-in user's).
            commit_message: the commit's message.
            metrics: editing metrics for the model card.
            experts_only: upload ``experts.safetensors`` and ``edits.json`` alone (as
                :meth:`save_experts`), with a small card of their own unless the repository
                already holds an adapter (whose card is kept). Load them with
                :meth:`load_experts`.
            revision: branch to commit to.
            create_pr: open a pull request instead of committing.
            license: the model card's license.

        Returns:
            ``huggingface_hub``'s commit info.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp, "upload")
            if experts_only:
                base_model_sha256 = self.base_model_sha256()  # ~1 s per 500 MB: once
                folder.mkdir()
                self._write_experts(folder, base_model_sha256)
                api.create_repo(repo_id, private=private, exist_ok=True)
                has_adapter = any(
                    api.file_exists(repo_id, name, revision=revision) for name in CONFIG_NAMES
                )
                if not has_adapter:
                    experts_card(
                        self.liveedit_config,
                        {**self.fingerprint(), "sha256": base_model_sha256},
                        self.edits,
                        self.generator_sha256(),
                        repo_id=repo_id,
                        license=license,
                    ).save(folder / "README.md")
                delete = None
            else:
                self.save_pretrained(folder, metrics, repo_id=repo_id, license=license)
                api.create_repo(repo_id, private=private, exist_ok=True)
                delete = [LEGACY_CONFIG_NAME]  # left by a push of an earlier version
            what = "LiveEdit experts" if experts_only else "LiveEdit adapter"
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or f"Upload {what}",
                revision=revision,
                create_pr=create_pr,
                delete_patterns=delete,
            )

    def push_experts_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload only the expert repository (``push_to_hub(repo_id, experts_only=True)``).

        Args:
            repo_id: the Hub repository, created if need be.
            **kwargs: as for :meth:`push_to_hub`.
        """
        return self.push_to_hub(repo_id, experts_only=True, **kwargs)


#: The files of an adapter without experts, and those of an expert repository.
ADAPTER_FILES = (*CONFIG_NAMES, GENERATOR_WEIGHTS_NAME)
EXPERT_FILES = (EDITS_NAME, EXPERTS_WEIGHTS_NAME)


def resolve_directory(
    model_id: str | Path,
    revision: str | None = None,
    token: str | bool | None = None,
    *,
    subfolder: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    files: Sequence[str] = ADAPTER_FILES + EXPERT_FILES,
) -> Path:
    """A local folder as is; otherwise download ``files`` of the Hub repo ``model_id``.

    A local folder is first recovered from a save that was killed mid-way (see
    :func:`~hf_liveedit.persistence.recover_leftovers`).

    Args:
        model_id: local folder or Hub repo id.
        revision, token, cache_dir, local_files_only: passed to ``snapshot_download``.
        subfolder: folder inside ``model_id`` that holds the files.
        files: the files wanted; only these are downloaded, and a local folder must hold one.

    Returns:
        The folder holding the files.

    Raises:
        ValueError: a local folder holds none of ``files``.
        OSError: the download failed (offline, unknown repo, no access).
    """
    root = Path(model_id)
    path = root / subfolder if subfolder else root
    recover_leftovers(path)  # before is_dir: a save killed between its renames hid the folder
    if path.is_dir() or root.is_dir():
        if not any((path / name).is_file() for name in files):
            raise ValueError(f"{path} holds no LiveEdit adapter (none of {', '.join(files)})")
        return path
    from huggingface_hub import snapshot_download

    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    try:
        snapshot = snapshot_download(
            str(model_id),
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            allow_patterns=[prefix + name for name in files],
        )
    except Exception as error:  # offline, unknown repo, no access: say which id failed
        raise OSError(
            f"{model_id!r} is neither a local folder nor a Hub repo that could be downloaded: {error}"
        ) from error
    return Path(snapshot, prefix)


def get_liveedit_model(
    model: nn.Module, config: LiveEditConfig, processor: Any | None = None
) -> LiveEditModel:
    """Wrap a VLLM with a fresh LiveEdit adapter (PEFT's ``get_peft_model`` counterpart).

    Args:
        model: a supported transformers VLLM (see :func:`hf_liveedit.supported_model_classes`).
        config: the adapter's configuration.
        processor: the model's processor, needed to add edits.

    Raises:
        TypeError: unsupported model class.
        ValueError: ``config.edit_layer`` out of range.
    """
    return LiveEditModel(model, config, processor)
