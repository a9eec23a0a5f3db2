"""Open vocabulary: an AU vector for any short text ("smug", "quietly proud"), per clip.

The edit needs an AU activation vector; CLIP knows what "smug" looks like. The vector is found
by a short optimisation on a few frames of the clip being edited:

    minimise over a in [0, MAX]^K, with the size of a fixed:
        direction_loss(E_img(edit(frame, a - present)) - E_img(frame),
                       E_txt(text | person) - E_txt(source | person))

through the same differentiable crop path as fine-tuning (`crop_edit.edit_crops`: expression
model, mouth rule, warp, refiner frozen). The source is the emotion CLIP reads on each frame
(personalised prompts when given, zero-shot otherwise), so the edit moves *from* what the face
shows *toward* the text, which is what PCMECL's feature differencing measures.

Why this and not something cheaper:
- A fixed mapping from text to AUs (nearest labelled emotion, or a softmax mixture of the
  eight by text similarity) can only produce mixtures of the eight prototypes; "smug" is a
  one-sided smile with slightly lowered lids, which no mixture of the eight gives. Optimising
  in AU space reaches any AU combination the model can draw.
- Optimising pixels or the refiner per text would be slow and could change what the speech
  owns; an AU vector is 15 numbers, goes through the mouth rule like every other edit, and
  then plays through timelines, mixtures and `--intensity` like a label.
- The cosine loss says nothing about how strong the edit is (any positive multiple of a
  direction scores the same), so the size of the vector is held fixed: the mean size of the
  labelled prototypes (root-mean-square landmark displacement), so intensity 1 of a text is as
  strong as intensity 1 of a label. Each Adam step is followed by a projection: clip to
  [0, MAX], rescale to that size, clip again. It starts from the labelled emotion whose text
  feature is closest to the text's, which is already a sensible answer if CLIP has no better
  one, and the best vector seen is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from spfem_cli.errors import SpfemError
from spfem_cli.generator.expression import ExpressionModel, Side
from spfem_cli.generator.generator import MouthMode
from spfem_cli.generator.refiner import CropGeometry, Refiner
from spfem_cli.pcmecl.clip import ClipBundle, encode_images
from spfem_cli.pcmecl.crop_edit import CropBatch, edit_crops, prepare_crops, to_unit_range
from spfem_cli.pcmecl.losses import direction_loss
from spfem_cli.pcmecl.personal import MAX_ACTIVATION
from spfem_cli.pcmecl.prompts import PromptLearner, emotion_word
from spfem_cli.pcmecl.teacher import Teacher
from spfem_cli.progress import Reporter, SilentReporter

if TYPE_CHECKING:
    from spfem_cli.pipeline import Analysis, Editor


@dataclass(frozen=True)
class OpenVocabConfig:
    """frames: frames of the clip the vector is fitted on; steps: Adam steps per text; lr: its
    learning rate (AU activation units)."""

    frames: int = 4
    steps: int = 30
    lr: float = 0.05


@dataclass(frozen=True)
class TextVector:
    """What a text became: vector (K,) float64 AU activations at intensity 1, in
    [0, MAX_ACTIVATION]; source: the emotion CLIP read on the frames (most frequent); start: the
    labelled emotion the search started from; loss_start / loss: the direction loss there and
    at the vector returned (0 best, 1 unrelated, 2 opposite)."""

    text: str
    vector: np.ndarray
    source: str
    start: str
    loss_start: float
    loss: float

    def describe(self, au_names: Sequence[str], *, top: int = 3) -> str:
        """One line for the user: the strongest AUs of the vector."""
        order = np.argsort(-self.vector)[:top]
        aus = ", ".join(f"{au_names[i]} {self.vector[i]:.2f}" for i in order if self.vector[i] > 0)
        return (
            f"'{self.text}' read by CLIP as {aus or 'no AU'} (from {self.source}; started at "
            f"{self.start}; direction loss {self.loss_start:.3f} -> {self.loss:.3f})"
        )


@contextmanager
def _frozen(module: nn.Module | None) -> Iterator[None]:
    """No gradients for `module`'s parameters inside (gradients still flow through it to its
    inputs); their previous flags come back after."""
    if module is None:
        yield
        return
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def displacement_size(expression: ExpressionModel, vectors: Tensor) -> Tensor:
    """Root-mean-square landmark displacement (IOD) of AU vectors (..., K) -> (...)."""
    disp = expression.displacement(vectors)
    return disp.square().sum(dim=-1).mean(dim=-1).sqrt()


def text_to_aus(
    text: str,
    *,
    batch: CropBatch,
    present: Tensor,
    teacher: Teacher,
    expression: ExpressionModel,
    prototypes: Tensor,
    refiner: Refiner | None,
    mouth: MouthMode,
    crop: CropGeometry,
    config: OpenVocabConfig | None = None,
    advance: Callable[[], None] | None = None,
    side: Side = "right",
) -> TextVector:
    """Fit an AU vector to `text` on the frames of `batch` (see the module docstring).
    side: where the edit will play the one-sided units (`Analysis.side`).

    present: (F, K) the expression already on each frame (what the edit replaces);
    prototypes: (E, K) the emotion vectors the search may start from and whose mean size it
    keeps (a person's, with their offsets); expression's buffers must be on the batch's device.
    `refiner` is frozen while this runs. Deterministic for the same inputs.
    """
    cfg = config or OpenVocabConfig()
    bundle = teacher.bundle
    emotions = expression.emotions
    with torch.no_grad():
        image_in = torch.cat(
            [encode_images(bundle, to_unit_range(c)) for c in batch.source.split(16)]
        ).float()
    source_class = teacher.classify(image_in)
    source_text = teacher.text_features(teacher.class_texts)[source_class]  # (F, D)
    names = [teacher.class_names[int(i)] for i in source_class]
    source = max(set(names), key=lambda n: (names.count(n), n))
    target_text = teacher.text_features([text])  # (1, D)

    protos = prototypes.to(batch.source.device).float()
    labelled = [i for i, name in enumerate(emotions) if name != "neutral" and protos[i].any()]
    if not labelled:
        raise SpfemError("the expression model has no emotion prototypes to start from")
    with torch.no_grad():
        emotion_text = teacher.text_features([emotion_word(emotions[i]) for i in labelled])
        closest = labelled[int((emotion_text @ target_text[0]).argmax())]
        size = displacement_size(expression, protos[labelled]).mean()

    def project(a: Tensor) -> None:
        a.clamp_(0.0, MAX_ACTIVATION)
        current = displacement_size(expression, a)
        if float(current) > 1e-9:
            a.mul_(size / current).clamp_(0.0, MAX_ACTIVATION)

    def loss_of(a: Tensor) -> Tensor:
        delta = a[None] - present
        edit = edit_crops(
            batch, delta, expression=expression, refiner=refiner, mouth=mouth, crop=crop, side=side
        )
        edited = encode_images(bundle, to_unit_range(edit.out))
        return direction_loss(image_in, edited, source_text, target_text[0])

    vector = nn.Parameter(protos[closest].clone())
    with torch.no_grad():
        project(vector)
    optimizer = torch.optim.Adam([vector], lr=cfg.lr)
    best: tuple[float, Tensor] | None = None
    loss_start = float("nan")
    with _frozen(refiner):
        for step in range(cfg.steps + 1):
            loss = loss_of(vector)
            value = float(loss.detach())
            if step == 0:
                loss_start = value
            if best is None or value < best[0]:
                best = (value, vector.detach().clone())
            if step == cfg.steps:
                break  # the last evaluation only scores the last update
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                project(vector)
            if advance is not None:
                advance()
    assert best is not None
    return TextVector(
        text=text,
        vector=best[1].double().cpu().numpy(),
        source=source,
        start=emotions[closest],
        loss_start=loss_start,
        loss=best[0],
    )


# --- in the pipeline: a few frames of the analysed video ---------------------------------------


def sample_frames(
    analysis: Analysis, *, crop: CropGeometry, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to `n` frames with a face, evenly spread over the video: their aligned crops at
    twice the crop's size (F, 3, 2S, 2S) uint8 (as `prepare_crops` takes them), landmarks
    (F, 478, 2) in the face frame, and the expression already on them (F, K) as the edit
    estimated it. One decode, stopped after the last frame needed."""
    from spfem_cli.generator.refiner import supersampled_points
    from spfem_cli.media import FrameReader
    from spfem_cli.training.frames import fine_crop_from_frame

    track = analysis.track
    valid = np.flatnonzero(track.valid)
    if valid.size == 0:
        raise SpfemError("no frame of the video has a face to read the emotion text on")
    picks = valid[np.linspace(0, valid.size - 1, min(n, valid.size)).round().astype(int)]
    picks = np.unique(picks)
    wanted = {int(t): i for i, t in enumerate(picks)}
    crops = np.zeros((picks.size, 3, 2 * crop.size, 2 * crop.size), dtype=np.uint8)
    sub = supersampled_points(crop).double().numpy()
    with FrameReader(analysis.info) as reader:
        for t, frame in enumerate(reader):
            if t in wanted:
                crops[wanted[t]] = fine_crop_from_frame(frame, track.frame(t).to_image(sub))
            if t >= picks[-1]:
                break
    points = np.asarray(track.norm[picks], dtype=np.float32)
    present = np.asarray(analysis.current[picks], dtype=np.float32)
    return crops, points, present


def resolve_texts(
    texts: Sequence[str],
    *,
    analysis: Analysis,
    editor: Editor,
    clip_arch: str,
    clip_weights: str | Path,
    clip_config: str | Path | None = None,
    prompts: str | Path | None = None,
    device: torch.device | str = "cpu",
    config: OpenVocabConfig | None = None,
    reporter: Reporter | None = None,
) -> dict[str, TextVector]:
    """AU vectors for free texts, fitted on frames of the analysed video with the editor's
    expression model, person offsets (a personal checkpoint) and refiner.

    Loads CLIP (`clip_weights`: an open_clip tag or a local file) and, when given, the prompt
    file of `spfem train-prompts` (personalised prompts; it must have been trained on this
    CLIP). Raises SpfemError as `load_clip` and `load_prompt_learner` do.
    """
    from spfem_cli.pcmecl.clip import load_clip
    from spfem_cli.pcmecl.prompts import load_prompt_learner

    cfg = config or OpenVocabConfig()
    rep = reporter or SilentReporter()
    dev = torch.device(device)
    bundle: ClipBundle = load_clip(
        arch=clip_arch,
        pretrained=clip_weights,
        config=Path(clip_config) if clip_config is not None else None,
        device=dev,
    )
    learner: PromptLearner | None = None
    if prompts is not None:
        learner = load_prompt_learner(Path(prompts).expanduser(), bundle=bundle)
    generator = editor.generator
    refiner = copy.deepcopy(generator.refiner).to(dev).eval() if generator.refiner else None
    crop = refiner.config.crop if refiner is not None else CropGeometry()
    crops, points, present = sample_frames(analysis, crop=crop, n=cfg.frames)
    batch = prepare_crops(crops, points, crop=crop, mouth=generator.mouth, device=dev)
    with torch.no_grad():
        person = torch.nn.functional.normalize(
            encode_images(bundle, to_unit_range(batch.source)).float().mean(dim=0), dim=-1
        )
    teacher = Teacher(bundle=bundle, learner=learner, person=person)
    expression = copy.deepcopy(editor.expression).to(dev)
    prototypes = editor.prototypes().to(dev)
    out: dict[str, TextVector] = {}
    for text in texts:
        with rep.stage(f"Reading '{text}' with CLIP", cfg.steps) as advance:
            out[text] = text_to_aus(
                text,
                batch=batch,
                present=torch.from_numpy(present).to(dev),
                teacher=teacher,
                expression=expression,
                prototypes=prototypes,
                refiner=refiner,
                mouth=generator.mouth,  # type: ignore[arg-type]
                crop=crop,
                config=cfg,
                advance=advance,
                side=analysis.side,
            )
    return out
