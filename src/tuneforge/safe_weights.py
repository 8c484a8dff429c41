"""The one guard every model, head, encoder and adapter load goes through: safetensors only, never pickle.

`.bin` / `.pt` / `.pth` / `.ckpt` / `.pkl` weights are Python pickles: loading one can run arbitrary code, and
torch's `weights_only` default is a mitigation, not a guarantee. A local directory whose weights exist only in
pickle form is refused with a one-line hint on converting it; hub loads are asked for safetensors
(`use_safetensors=True`). Our own resume state (optimizer/RNG files inside a run's checkpoints) is not model
weights and stays with transformers' `weights_only` loader.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE_SUFFIXES = (".safetensors", ".gguf")
CONVERT_HINT = "convert once with a trusted script: model.save_pretrained(dir, safe_serialization=True)"


def check_local_weights(path: str | Path, what: str = "model") -> None:
    """Refuse a local file/dir (and its module subdirs) whose weights are pickles only. Hub ids pass through."""
    p = Path(path)
    if p.is_file():
        if p.suffix in PICKLE_SUFFIXES:
            raise ModelLoadError(f"{what} '{p}' is a pickle file; tuneforge loads safetensors only", hint=CONVERT_HINT)
        return
    if not p.is_dir():
        return
    for d in [p, *(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))]:
        pickles = [f.name for f in d.iterdir() if f.suffix in PICKLE_SUFFIXES and f.is_file()]
        if pickles and not any(f.suffix in SAFE_SUFFIXES for f in d.iterdir()):
            raise ModelLoadError(f"{what} '{d}' only has pickle weights ({', '.join(sorted(pickles)[:3])}); "
                                 "tuneforge loads safetensors only", hint=CONVERT_HINT)


def require_safetensors(path: str | Path, what: str = "model") -> None:
    """A local model dir must hold *.safetensors (after the pickle check names the problem when it does not)."""
    p = Path(path)
    check_local_weights(p, what)
    if p.is_dir() and not any(p.glob("*.safetensors")):
        raise ModelLoadError(f"no {what} weights (*.safetensors) in '{p}'")


def from_pretrained(auto_class, path: str, what: str = "model", **kwargs):
    """`auto_class.from_pretrained(path, use_safetensors=True)` after the local pickle check."""
    require_safetensors(path, what)
    return auto_class.from_pretrained(path, use_safetensors=True, **kwargs)


def load_tensors(file: str | Path, what: str = "weights") -> dict:
    """A safetensors file as a dict of tensors; a missing or corrupt file is one ModelLoadError naming it."""
    from safetensors.torch import load_file

    f = Path(file)
    if f.suffix != ".safetensors":
        raise ModelLoadError(f"{what} '{f}' is not a .safetensors file; tuneforge loads safetensors only")
    if not f.is_file():
        raise ModelLoadError(f"{what} file not found: {f}")
    try:
        return load_file(str(f))
    except Exception as e:  # safetensors raises its own SafetensorError for truncated/corrupt headers
        raise ModelLoadError(f"{what} '{f}' is corrupted or not safetensors ({str(e)[:200]})") from None
