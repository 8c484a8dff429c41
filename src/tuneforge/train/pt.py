"""Continued pre-training: the SFT recipe on plain text, where every token is trained.

The difference lives in the data step (`tokenize_samples` concatenates documents with EOS and cuts blocks of
`data.cutoff_len` tokens when `stage: pt`), so the recipe itself is shared.
"""

from tuneforge.train.sft import run

__all__ = ["run"]
