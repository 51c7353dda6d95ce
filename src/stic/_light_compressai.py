"""Import CompressAI without torch-geometric, torchvision and scipy.stats: ~5 s off every cold start.

Why: `import compressai` runs its package __init__, which imports its point-cloud datasets and
a registry of transforms, which import torch-geometric and torchvision (and through them
torch._dynamo): ~4 s of a 6 s cold `stic decode`, for code stic never runs (stic uses CompressAI's
models, layers, entropy models and coder; CompressAI uses those two packages only in its datasets,
its transform registry and its command-line tools; scipy.stats only to build entropy tables).
While CompressAI's own __init__ executes,
this module lends it empty stand-ins (names resolve to inert placeholders), then withdraws them,
so a later real `import torchvision` gets the real package. A package imported before
CompressAI is used as it is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

#: scipy.stats (~1 s) serves only CompressAI's table building (GaussianConditional.update), where
#: scipy's lazy submodule loading then imports the real one. CompressAI's point-cloud datasets and
#: losses (pandas, and torch.jit.script compiled at import: ~0.27 s) serve point-cloud codecs only.
_STUBS = ("torch_geometric", "torchvision", "scipy.stats", "compressai.datasets.pointcloud",
          "compressai.losses.pointcloud")  # fmt: skip


def _stubbed(name: str, stubs: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in stubs)


class _Placeholder:
    """Stands for any torch-geometric name: a base class, a decorator (factory), a callable."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, obj=None, *args, **kwargs):
        return obj

    def __class_getitem__(cls, item):
        return cls


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_Placeholder,), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, stubs: tuple[str, ...]):
        self.stubs = stubs

    def find_spec(self, name, path=None, target=None):
        if _stubbed(name, self.stubs):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__all__ = []  # `from stub import *` and `*stub.__all__` find nothing
        return module

    def exec_module(self, module):
        pass


class _CompressAIFinder(importlib.abc.MetaPathFinder):
    """Finds `compressai` with the real finders and runs its __init__ with the stand-in lent."""

    def find_spec(self, name, path=None, target=None):
        if name != "compressai":
            return None
        sys.meta_path.remove(self)  # one import only, and never recursive
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        stubs = tuple(s for s in _STUBS if s not in sys.modules)
        if spec is None or not stubs:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            stub = _StubFinder(stubs)
            sys.meta_path.insert(0, stub)
            try:
                real_exec(module)
            finally:
                sys.meta_path.remove(stub)
                for key in [k for k in sys.modules if _stubbed(k, stubs)]:
                    parent, _, child = key.rpartition(".")
                    if parent in sys.modules and isinstance(getattr(sys.modules[parent], child, None), _StubModule):
                        delattr(sys.modules[parent], child)  # a real parent package must not keep a stand-in
                    del sys.modules[key]

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Make the next `import compressai` light (no effect once CompressAI is imported)."""
    if "compressai" not in sys.modules and not any(isinstance(f, _CompressAIFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CompressAIFinder())


def rans():
    """CompressAI's rANS coder, its C++ extension `compressai.ans`, without importing the package,
    whose __init__ imports torch (~1.5 s): a decoder that needs only the coder does not pay for it.
    Registered under its own name, so a later `import compressai` uses this very module."""
    module = sys.modules.get("compressai.ans")
    if module is not None:
        return module
    package = importlib.machinery.PathFinder.find_spec("compressai")  # locates; imports nothing
    if package is None or not package.submodule_search_locations:
        raise ImportError("CompressAI is not installed (pip install compressai)")
    spec = importlib.machinery.PathFinder.find_spec("compressai.ans", list(package.submodule_search_locations))
    if spec is None:
        raise ImportError("CompressAI's rANS extension (compressai.ans) is missing from its installation")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["compressai.ans"] = module
    return module
