"""Build a tiny random Llama + byte-level BPE tokenizer on disk (no hub), for eval tests and the agreement script.

Vocab ~1000 trained on the shared benchmark texts, hidden 64, 2 layers: a forward pass is milliseconds and the
model is random, so per-sample choices are a strict test of scoring code (no accuracy to hide behind).
"""

from __future__ import annotations

import json
from pathlib import Path

from shared_paths import DATA  # noqa: E402
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Human: ' + m['content'] + eos_token + '\\nAssistant:' }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token + '\\n' }}{% else %}{{ m['content'] + '\\n' }}"
    "{% endif %}{% endfor %}"
)


def _corpus() -> list[str]:
    texts = []
    for rel in ("openbookqa/openbookqa_dev_subset.jsonl", "mmlu/dev.jsonl", "gsm8k/test_dev_subset.jsonl"):
        p = DATA / rel
        if p.exists():
            texts += p.read_text(encoding="utf-8").splitlines()
    return texts or ["The quick brown fox jumps over the lazy dog. Question: Answer: 0123456789"] * 50


def build_tiny_llama(out: Path, seed: int = 0, vocab: int = 1000, hidden: int = 64, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=512, clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    tcfg = json.loads(cfg_path.read_text())
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # not LlamaTokenizer: keep the byte-level BPE as is
    cfg_path.write_text(json.dumps(tcfg, indent=2))

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(config)
    # random init at std 0.02 gives near-uniform predictions; a larger scale makes choices clearly separated
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.5 / p.shape[1] ** 0.5 * 4)
    model.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_llama(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tiny-llama-eval")))
