"""Deprecated: the loss building blocks moved to :mod:`kdbench.core.functional`.

Every name still works here and warns (``DeprecationWarning``) until 0.3.0.
"""

from kdbench.core.deprecation import forward

__getattr__ = forward("kdbench.functional", "kdbench.core.functional")
