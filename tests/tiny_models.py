"""Tiny random decoder models (Llama, Qwen2) and a locally trained BPE tokenizer with a ChatML template."""

from __future__ import annotations

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Reverse the word. Sort the letters. Count the items. Repeat after me. The answer is",
    "apple banana cherry dragon eagle falcon garden harbor island jungle kettle lemon mirror",
    "one two three four five six seven eight nine ten. Human: Assistant: System: ### Instruction: Response:",
    "0 1 2 3 4 5 6 7 8 9 + - = ? ! . , : ; ( ) [ ] { } \" ' \n\n",
]


def build_tokenizer(vocab_size: int = 600):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 10, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", clean_up_tokenization_spaces=False)
    fast.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")],
                    special_tokens=True)
    fast.chat_template = CHATML
    return fast


def build_model_dir(path, arch: str) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                  pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
                  initializer_range=0.15)  # large enough that LoRA (lm_head frozen) can move the logits
    model = (LlamaForCausalLM(LlamaConfig(**common)) if arch == "llama"
             else Qwen2ForCausalLM(Qwen2Config(**common)))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
