"""A tiny byte-level BPE tokenizer trained in well under a second (no hub), for template and collate tests."""

from __future__ import annotations

import functools

CORE_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")

_CORPUS = [
    "Hello! How are you today? I am fine, thank you. What is the capital of France? Paris is the capital.",
    "You are a helpful assistant. Answer briefly and politely.\n\nLine one.\nLine two.\n",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\nReverse the string.\n\n### Response:\nDone.\n\nHuman: hi\nAssistant: hello\n",
    "def add(a, b):\n    return a + b  # {braces} and [brackets] (parens) 1234567890 ... ,;:!?",
]


@functools.lru_cache(maxsize=None)
def _trained_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(CORE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    return tok.to_str()


def build_tiny_tokenizer(special_tokens: tuple[str, ...] = (), vocab_size: int = 400):
    """A fresh fast tokenizer (bos <s>, eos </s>, pad <pad>) with ``special_tokens`` added; BPE trained once."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_json(vocab_size)),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    if special_tokens:
        fast.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens], special_tokens=True)
    return fast
