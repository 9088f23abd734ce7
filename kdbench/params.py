"""Deprecated: the shared parameter types moved to :mod:`kdbench.core.params` (and are
exported from :mod:`kdbench`, e.g. ``from kdbench import Weight``).

Every name still works here and warns (``DeprecationWarning``) until 0.3.0.
"""

from kdbench.core.deprecation import forward

__getattr__ = forward("kdbench.params", "kdbench.core.params")
