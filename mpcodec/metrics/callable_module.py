"""Modules that share their name with their main function, and can be called as that function.

`from mpcodec.metrics import truth_tables` finds the submodule `truth_tables` (the import system sets it on
the package when the submodule loads), and callers read the module's other names through it
(`tt.hard_assignment`). Making such a module callable lets that one import serve both: the public API's
`truth_tables(...)` and the module's helpers. `inspect.signature` and `inspect.unwrap` see the function.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable


class CallableModule(types.ModuleType):
  """A module whose call runs its `__wrapped__` function."""

  def __call__(self, *args, **kwargs):
    return self.__wrapped__(*args, **kwargs)


def make_callable(module_name: str, function: Callable) -> None:
  """Makes the loaded module `module_name` callable as `function` (call it at the end of the module)."""
  module = sys.modules[module_name]
  module.__class__ = CallableModule
  module.__wrapped__ = function
