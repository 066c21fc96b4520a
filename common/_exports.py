"""A package's public names, each imported from its module on first use (PEP 562), so that a
light part of common/ (the command line, the data) never loads Keras or TensorFlow."""

import importlib


def lazy_exports(package, exports):
    """`__getattr__` and `__dir__` for `package` (its `__name__`) whose names are
    {name: module, relative to the package}."""

    def getattr_(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return getattr_, lambda: sorted(exports)
