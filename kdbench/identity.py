"""Deprecated: experiment and teacher ids moved to :mod:`kdbench.records.identity`.

Every name still works here and warns (``DeprecationWarning``) until 0.3.0.
"""

from kdbench.core.deprecation import forward

__getattr__ = forward("kdbench.identity", "kdbench.records.identity")
