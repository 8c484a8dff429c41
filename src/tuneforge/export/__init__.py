"""Compression and export of trained models. Every command writes its output atomically and proves it:

- `merge.py`: adapter merged into its base (or a full run's model copied) as sharded safetensors; logits checked.
- `gguf.py` + `modelfile.py`: GGUF for llama.cpp / Ollama (f32, f16, bf16, q8_0, q5_*, q4_*); reloaded and checked.
- `quantize.py`: int8 / int4 weight-only post-training quantization (torchao), loadable by transformers.
- `prune.py`: unstructured magnitude pruning and structured MLP-channel pruning that shrinks the matrices.
- `merge_models.py`: linear, SLERP, TIES and DARE merges of models or adapters of one base.
- `verify.py` measures (logit diff, perplexity, latency, size, sparsity); `report.py` writes the before/after report.
"""
