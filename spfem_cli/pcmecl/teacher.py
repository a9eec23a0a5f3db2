"""The CLIP teacher of PCMECL's stage two: text features of emotions for one person, and the
emotion a frame shows.

With a trained prompt learner (stage one) the text features are personalised: the prompt's
context is shifted by the person's CLIP image feature. Without one, texts go through CLIP's own
tokenizer in a fixed template ("a photo of a {word} face."), which is zero-shot CLIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from spfem_cli.generator.expression import EMOTIONS
from spfem_cli.pcmecl.clip import ClipBundle, encode_texts
from spfem_cli.pcmecl.prompts import PromptLearner, emotion_word

ZERO_SHOT_TEMPLATE = "a photo of a {} face."


@dataclass(frozen=True)
class Teacher:
    """A frozen CLIP (and optionally a personalised prompt learner) conditioned on one person.

    person: (D,) the person's CLIP image feature (`prompts.person_feature`), on the bundle's
    device.
    """

    bundle: ClipBundle
    learner: PromptLearner | None
    person: Tensor

    @property
    def class_names(self) -> tuple[str, ...]:
        """The emotions `classify` chooses from: the learner's classes, else the eight."""
        return self.learner.class_names if self.learner is not None else EMOTIONS

    @property
    def class_texts(self) -> tuple[str, ...]:
        """The words put into the prompt for each of `class_names`."""
        if self.learner is not None:
            return self.learner.class_texts
        return tuple(emotion_word(name) for name in EMOTIONS)

    def text_features(self, texts: Sequence[str]) -> Tensor:
        """Unit text features (N, D) of N emotion words or short texts for this person; no
        gradient (the teacher is frozen)."""
        with torch.no_grad():
            if self.learner is not None:
                return self.learner.text_features(self.person[None], list(texts))[0].float()
            return encode_texts(self.bundle, [ZERO_SHOT_TEMPLATE.format(t) for t in texts])

    def classify(self, image_features: Tensor) -> Tensor:
        """Index into `class_names` (B,) of the emotion each frame shows, from unit image
        features (B, D). With a learner each frame conditions its own prompts (CoCoOp)."""
        with torch.no_grad():
            if self.learner is not None:
                return self.learner.logits(image_features).argmax(dim=-1)
            text = self.text_features(self.class_texts)
            return (image_features.float() @ text.T).argmax(dim=-1)
