"""The generators a command can ask for and how they treat the speech, kept free of heavy
imports so the CLI and a batch's driver can name them."""

from __future__ import annotations

GENERATORS = ("refiner", "warp")
# The pre-trained refiner's name in weights/manifest.json.
DEFAULT_REFINER = "refiner-v1"
# What a command uses when the user names no generator: the refiner only once its shipped
# checkpoint beats the warp on held-out people (scripts/measure_refiner.py).
DEFAULT_GENERATOR = "warp"
# The refiner `spfem finetune` starts from: "none" is an untrained one (the identity), which
# fine-tuning teaches from scratch on the person's clip, until a pre-trained refiner ships.
NO_REFINER = "none"
DEFAULT_BASE_REFINER = NO_REFINER


def keeps_speech(keep_speech: bool | None, *, mouth: str) -> bool:
    """Whether an edit's speech is measured and kept (`pipeline.render_edit`): as asked, or by
    default in natural mouth mode, whose moving lip corners change how FaceMesh reads some
    speakers' lips (strict mode holds the mouth region still; expressive mode gives the lips
    to the emotion)."""
    return mouth == "natural" if keep_speech is None else keep_speech
