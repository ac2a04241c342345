"""Packages that can also be called: ``rewardlab.train(config)``, ``rewardlab.evaluate(...)``, ``rewardlab.serve(...)``.

The Python API mirrors the CLI, so ``train``, ``evaluate`` and ``serve`` are functions; they are
also the names of subpackages. A plain function bound to ``rewardlab.train`` would break
``import rewardlab.train.loop as loop``, so instead the subpackage itself becomes callable
(Python allows a module to change its ``__class__`` to a `types.ModuleType` subclass): calling it
runs the one function it names, imported on first call, and its submodules import as usual.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any


class CallablePackage(types.ModuleType):
    """A package whose call runs ``target`` (``"module:function"``)."""

    __call_target__: str

    def _target(self) -> Any:
        module, _, name = self.__call_target__.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # so that help() and editors show the function's arguments
        return inspect.signature(self._target())


def make_callable(package: str, target: str) -> None:
    """Make the package named ``package`` (pass ``__name__``) call ``target`` (``"module:function"``)."""
    module = sys.modules[package]
    module.__class__ = CallablePackage
    module.__call_target__ = target
