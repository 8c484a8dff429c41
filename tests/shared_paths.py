"""Where the real shared data lives: $TUNEFORGE_SHARED_DATA, else ../shared/data beside the repo, else /work/shared."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _find() -> Path:
    env = os.environ.get("TUNEFORGE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


DATA = _find()
