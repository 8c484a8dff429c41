"""A fast stand-in for the sentence-transformers encoder: hashed bag of words, L2-normalised.

Texts with the same words get cosine 1, disjoint words about 0, so detector logic can be tested in
milliseconds; the real model is exercised by the planted integration test and one unit test.
"""

from __future__ import annotations

import zlib

import numpy as np

from tuneforge.data.qa_fields import words


class FakeEncoder:
    dim = 256

    def __init__(self):
        self.calls = 0
        self.texts = 0

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
               show_progress_bar=False):
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in words(t):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def install(monkeypatch) -> FakeEncoder:
    """Route tuneforge.data.embed_index.load_encoder to a FakeEncoder; returns it (for call counts)."""
    from tuneforge.data import embed_index

    fake = FakeEncoder()
    monkeypatch.setattr(embed_index, "load_encoder", lambda name="builtin:minilm": fake)
    return fake
