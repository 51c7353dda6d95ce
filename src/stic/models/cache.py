"""The models stic keeps loaded between calls: named, bounded caches you can list and empty.

Loading a caption LM, a VLM or a diffusion pipeline takes seconds to minutes, so the registries keep
the last few per process (a bench runs many files, `stic serve` many requests). Each cache is one
`ModelCache` with a bound, keyed by what identifies a model — a local file or folder by its resolved
path (`stic.paths.model_key`), an id or shipped name as given — plus how it is placed (device,
dtype, engine). A `stic.pipeline.SticPipeline` keeps the parts it holds whatever these caches do
(its `from_pretrained` loads them through the registries); `loaded_models()` shows what the
registries hold and `clear_model_caches()` frees it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_CACHES: dict[str, ModelCache] = {}


class ModelCache:
    """Least-recently-used models, at most `maxsize`; a load happens once per key even when two
    threads ask at the same time. A load holds the cache (other keys wait for it), so a loader must
    not ask the same cache for another model."""

    def __init__(self, name: str, maxsize: int):
        if name in _CACHES:
            raise ValueError(f"a model cache named {name!r} exists already")
        self.name, self.maxsize = name, maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        _CACHES[name] = self

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The model under `key`, calling `load()` if it is not held (then the oldest one beyond
        `maxsize` is dropped). A failed load stores nothing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = load()
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return value

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def loaded_models() -> dict[str, list[Hashable]]:
    """Every cache's name and the keys it holds, oldest first."""
    return {name: cache.keys() for name, cache in _CACHES.items()}


def clear_model_caches() -> None:
    """Drop every model the registries hold (what a held `SticPipeline` part keeps stays loaded)."""
    for cache in _CACHES.values():
        cache.clear()
