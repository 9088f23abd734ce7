"""Deprecated: the hook specifications moved to :mod:`kdbench.core.hookspecs`
(``hookimpl`` is exported from :mod:`kdbench`).

Every name still works here and warns (``DeprecationWarning``) until 0.3.0.
"""

from kdbench.core.deprecation import forward

__getattr__ = forward("kdbench.hookspecs", "kdbench.core.hookspecs")
