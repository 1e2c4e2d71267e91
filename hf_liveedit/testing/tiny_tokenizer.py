"""A tiny byte-level BPE tokenizer trained offline on an embedded English corpus.

One vocabulary (with every special token any supported processor needs) is shared by all tiny
model families, so the model configs can all use the ids in `SPECIAL_TOKENS` order.
"""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Special tokens get the first ids, in this order (the trainer adds them before the bytes).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<s>",
    "</s>",
    "<unk>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_CORE_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
TOKEN_IDS: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
VOCAB_SIZE = 512

_CORPUS = """
What is the capital of France? The capital of France is Paris. Lyon is a large city in France.
What is the capital of Italy? The answer is Rome. What is the capital of Spain? It is Madrid.
What is the capital of Germany? The answer is Berlin. The capital of Japan is Tokyo.
Which country does this flag belong to? This flag belongs to France. The flag is blue, white
and red. The flag of Italy is green, white and red. The flag of Japan is white with a red circle.
What country is shown in the image? The image shows a flag. What is in the picture? A cat sits
on a mat. A dog runs in the park. The animal in the photo is a horse. The bird is small and blue.
Answer the question about the image. Question: what color is the flag? Answer: red and white.
Question: what city is this? Answer: Paris. Question: what is the name of this tower? Answer: the
Eiffel Tower. The tower is in Paris, the capital city of the country. The river in Lyon is the
Rhone. The museum in Paris is the Louvre. A photo of a building, a bridge, a mountain and a lake.
User: describe the image. Assistant: the image shows a red flag with a yellow star.
USER: what is the capital of Italy? ASSISTANT: Rome. USER: and of France? ASSISTANT: Paris.
user: which flag is this? assistant: the flag of Japan. user: thanks. assistant: you are welcome.
What is the largest city of the country? The largest city is the capital. Who lives there?
Many people live in the city. The answer is yes. The answer is no. Is this a cat? Yes, it is.
What is the color of the sky? The sky is blue. What is the color of the grass? The grass is green.
How many people are in the image? There are two people in the image. There is one dog.
The country has a king. The country has a river, a sea and many small towns. Its flag has stars.
What is the language of the country? The language is French. In Spain people speak Spanish.
Where is the Louvre? It is in Paris. Where is the Colosseum? It is in Rome, the capital of Italy.
"""


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    """Trains the BPE once per process (~15 ms) and returns its serialization."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.split("\n"), trainer=trainer)
    if tokenizer.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"tiny BPE has {tokenizer.get_vocab_size()} tokens, not {VOCAB_SIZE}")
    return tokenizer.to_str()


def tiny_tokenizer(
    eos_token: str = "</s>",
    add_bos: bool = True,
    extra_tokens: tuple[str, ...] = (),
    named_tokens: dict[str, str] | None = None,
) -> PreTrainedTokenizerFast:
    """Builds a fresh tiny tokenizer (processors mutate theirs, so never share one).

    Args:
        eos_token: The end-of-sequence token of the family (one of `SPECIAL_TOKENS`, or of
            `extra_tokens`).
        add_bos: Whether `add_special_tokens=True` prepends `<s>` (never to an empty text when
            `add_special_tokens=False`).
        extra_tokens: Special tokens appended after the `VOCAB_SIZE` trained ones (ids from
            `VOCAB_SIZE` on), for families whose markers the shared vocabulary lacks; the trained
            vocabulary, hence every other family, stays unchanged.
        named_tokens: Named special tokens a processor reads as tokenizer attributes (e.g.
            Gemma 3's `{"boi_token": "<start_of_image>"}` gives `tokenizer.boi_token_id`); keys
            end in `_token`, values not in the vocabulary are appended like `extra_tokens`.

    Returns:
        A left-padding `PreTrainedTokenizerFast` with `<pad>` as pad, and `VOCAB_SIZE` tokens plus
        the appended ones (`len(tokenizer)` is the model's vocabulary size).
    """
    backend = Tokenizer.from_str(_trained_tokenizer_json())
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", TOKEN_IDS["<s>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token=eos_token,
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in _CORE_TOKENS]
        + list(extra_tokens),
        padding_side="left",
        model_max_length=512,
        **(named_tokens or {}),
    )
