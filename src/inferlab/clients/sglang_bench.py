"""Run ``python -m sglang.benchmark.serving`` with the given arguments, in the client's environment.

A CPU-only client environment has no usable torchvision (PyPI's is a CUDA build that breaks
beside CPU torch), yet sglang imports ``torchvision.transforms`` at module load for multimodal
helpers the benchmark never calls. Only where ``import torchvision`` fails, a stand-in module
tree is provided; everything it hands out is inert. Standalone: runs without the inferlab package.
"""

import importlib.abc
import importlib.machinery
import runpy
import sys
import types


class _Inert(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(name, (), {})

    def __call__(cls, *a, **k):
        return cls


class _StubModule(types.ModuleType):
    __version__ = "0.0.0+inferlab.stand-in"

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(name, (), {})


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def main():
    # run as a file: its folder is sys.path[0]; keep it from shadowing anything
    if sys.path and sys.path[0] and __file__.startswith(sys.path[0]):
        sys.path.pop(0)
    try:
        import torchvision  # noqa: F401
    except Exception:
        sys.modules.pop("torchvision", None)
        sys.meta_path.insert(0, _StandIn())
    sys.argv[0] = "sglang.benchmark.serving"
    runpy.run_module("sglang.benchmark.serving", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
