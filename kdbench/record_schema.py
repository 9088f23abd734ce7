"""Deprecated: the record schema moved to :mod:`kdbench.records.schema`.

Every name still works here and warns (``DeprecationWarning``) until 0.3.0, and
``python -m kdbench.record_schema`` still prints the JSON Schema, as
``python -m kdbench.records.schema`` does.
"""

from kdbench.core.deprecation import forward, moved

__getattr__ = forward("kdbench.record_schema", "kdbench.records.schema")

if __name__ == "__main__":
    from kdbench.records.schema import json_schema

    moved("python -m kdbench.record_schema", "python -m kdbench.records.schema", stacklevel=2)
    print(json_schema(), end="")
