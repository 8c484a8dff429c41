"""Continued pre-training (stage: pt): the SFT recipe on documents, where every token is trained.

The difference is the data step: documents are read from any layout's text field, joined with EOS and cut into
blocks of `data.cutoff_len` tokens (`data/tokenize.py`), and no chat template is involved.
"""

from __future__ import annotations

from tuneforge.data.formats import SampleKind
from tuneforge.train.sft import SftStage


class PretrainStage(SftStage):
    name = "pt"
    description = "continued pre-training on plain text (every token trained)"
    sample_kind: SampleKind = "text"
    uses_chat_template = False


STAGE = PretrainStage()
