"""Constrained parameter types for plugin constructors and factories.

Annotate a loss's, model's or dataset's TOML parameters with these (``temperature:
Temperature = 4.0``) and a bad value in a benchmark file is rejected before anything
trains, with the range in the message. They are ``typing.Annotated`` types carrying
``annotated_types`` bounds, so pydantic (``TypeAdapter(Temperature)``) and any other
reader of the annotation see the same constraint. Built-in plugins use them; third-party
plugins should too, so one name means one range everywhere.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Interval

__all__ = [
    "Fraction",
    "Momentum",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "Temperature",
    "Weight",
]

Temperature = Annotated[float, Gt(0)]
"""A softmax temperature: strictly positive (logits are divided by it)."""

Weight = Annotated[float, Ge(0)]
"""The weight of a loss term: zero switches the term off, a negative one would reward it."""

Probability = Annotated[float, Interval(ge=0, le=1)]
"""A mixing weight in [0, 1], such as KD's alpha in (1 - alpha) * CE + alpha * KD."""

Fraction = Annotated[float, Interval(gt=0, lt=1)]
"""A share of something strictly between 0 and 1, such as a test split's fraction."""

Momentum = Annotated[float, Interval(ge=0, lt=1)]
"""An exponential moving-average factor in [0, 1): 1 would never update."""

PositiveFloat = Annotated[float, Gt(0)]
"""A strictly positive real, such as an exponent or a scale."""

PositiveInt = Annotated[int, Ge(1)]
"""A width, dimension or count: at least 1."""

NonNegativeInt = Annotated[int, Ge(0)]
"""A count that may be zero (a warm-up of 0 epochs) or a seed."""
