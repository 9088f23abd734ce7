"""Deprecated: :class:`FeatureTaps` is public as :class:`kdbench.testing.FeatureTaps`.

It still works here and warns (``DeprecationWarning``) until 0.3.0.
"""

from kdbench.core.deprecation import forward

__getattr__ = forward("kdbench.features", "kdbench.testing", ["FeatureTaps"])
