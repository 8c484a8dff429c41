"""A KV cache that appends in place, for the decoding loops (`models/decoding.py`).

transformers' `DynamicLayer` grows by `torch.cat` on every forward, so each decoding step copies the whole cache
of every layer: at 8 rows x 1100 tokens (GSM8K 5-shot on SmolLM2) that copy cost as much as the model's matmuls.
`GrowingLayer` keeps keys/values as views into buffers with spare columns, so a step writes one column; the buffer
is reallocated (with room to spare) only when it is full or its rows change. The values seen by attention are the
same tensors a `DynamicLayer` would hold, so outputs do not change.
"""

from __future__ import annotations

from typing import Any, Sequence

SPARE = 64  # extra columns per reallocation, on top of a quarter of the needed length


def _layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A `DynamicLayer` whose keys/values are views into larger buffers (appends write in place)."""

        _kbuf: Any = None
        _vbuf: Any = None

        def _own(self) -> bool:  # keys are still the view this layer made (not replaced by a select / crop)
            return (self._kbuf is not None and self.keys.data_ptr() == self._kbuf.data_ptr()
                    and self.keys.shape[:2] == self._kbuf.shape[:2])

        def _regrow(self, need: int) -> None:
            length, cap = self.get_seq_length(), need + need // 4 + SPARE
            kbuf = self.keys.new_empty((*self.keys.shape[:2], cap, self.keys.shape[-1]))
            vbuf = self.values.new_empty((*self.values.shape[:2], cap, self.values.shape[-1]))
            kbuf[:, :, :length].copy_(self.keys)
            vbuf[:, :, :length].copy_(self.values)
            self._kbuf, self._vbuf = kbuf, vbuf

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length, n = self.get_seq_length(), key_states.shape[-2]
            if length == 0:  # first write: a buffer shaped like the states, with room after them
                self.keys = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[-1]))
                self.values = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[-1]))
                self._kbuf = None
            if not self._own() or length + n > self._kbuf.shape[-2]:
                self._regrow(length + n)
            self._kbuf[:, :, length: length + n].copy_(key_states)
            self._vbuf[:, :, length: length + n].copy_(value_states)
            self.keys, self.values = self._kbuf[:, :, : length + n], self._vbuf[:, :, : length + n]
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:
            if self.get_seq_length() > 0 and self._own():  # select rows of the buffer: one copy, room kept
                length = self.get_seq_length()
                self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
                self.keys, self.values = self._kbuf[:, :, :length], self._vbuf[:, :, :length]
            else:
                super().batch_select_indices(indices)

        def adopt(self, kbuf, vbuf, length: int) -> None:
            """Hold `length` columns of these buffers (the rest is room to append)."""
            self.device, self.is_initialized = kbuf.device, True
            self._kbuf, self._vbuf = kbuf, vbuf
            self.keys, self.values = kbuf[:, :, :length], vbuf[:, :, :length]

        def trim_left(self, columns: int) -> None:
            """Drop the first `columns` positions (all padding) without copying."""
            if columns <= 0 or self.get_seq_length() == 0:
                return
            if self._own():
                self._kbuf, self._vbuf = self._kbuf[:, :, columns:], self._vbuf[:, :, columns:]
                length = self.get_seq_length() - columns
                self.keys, self.values = self._kbuf[:, :, :length], self._vbuf[:, :, :length]
            else:
                self.keys, self.values = self.keys[:, :, columns:], self.values[:, :, columns:]

    return GrowingLayer


_GROWING: Any = None


def growing_layer_class():
    """The `GrowingLayer` class (built on first use: transformers is imported lazily)."""
    global _GROWING
    if _GROWING is None:
        _GROWING = _layer_class()
    return _GROWING


def new_cache(config: Any, data: Any = None) -> Any:
    """A `DynamicCache` for `config` whose plain full-attention layers append in place; `data` = per-layer
    (keys, values) to start from (copied). Sliding-window / recurrent layers keep transformers' own classes."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    if cache.layers and all(type(lay) is DynamicLayer for lay in cache.layers):
        cls = growing_layer_class()
        cache.layers = [cls() for _ in cache.layers]
    if data is not None:
        for lay, (k, v) in zip(cache.layers, data):
            lay.update(k, v)
    return cache


def merge_rows(config: Any, caches: Sequence[Any], width: int) -> Any:
    """One cache holding the rows of `caches` in order, each right-aligned to `width` columns (the columns on
    its left are zeros, which the caller masks). One copy of each row into a buffer with room to append."""
    out = new_cache(config)
    for li, lay in enumerate(out.layers):
        parts = [c.layers[li] for c in caches]
        bufs = []
        for name in ("keys", "values"):
            first = getattr(parts[0], name)
            rows = sum(getattr(p, name).shape[0] for p in parts)
            buf = first.new_empty((rows, first.shape[1], width + width // 4 + SPARE, first.shape[-1]))
            r = 0
            for p in parts:
                t = getattr(p, name)
                n, length = t.shape[0], t.shape[-2]
                buf[r: r + n, :, : width - length].zero_()
                buf[r: r + n, :, width - length: width].copy_(t)
                r += n
            bufs.append(buf)
        if hasattr(lay, "adopt"):
            lay.adopt(bufs[0], bufs[1], width)
        else:  # a layer type this module did not make: hand it the rows the ordinary way
            lay.update(bufs[0][:, :, :width], bufs[1][:, :, :width])
    return out


def is_plain(cache: Any) -> bool:
    """True when every layer is a full (not sliding / recurrent) per-layer key/value cache that rows can merge."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(lay) in (DynamicLayer, growing_layer_class())
                                and getattr(lay, "keys", None) is not None for lay in layers)
