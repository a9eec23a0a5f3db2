"""The generators a command can ask for, kept free of heavy imports so the CLI can name them."""

from __future__ import annotations

GENERATORS = ("refiner", "warp")
# What a command uses when the user names no generator: the refiner only once its shipped
# checkpoint beats the warp on held-out people (scripts/measure_refiner.py).
DEFAULT_GENERATOR = "warp"
