"""PCMECL stage one: the personalised prompt learner, its data, training, files and CLI.

Everything runs on the tiny CLIP of TINY_CONFIG (random weights, saved to a file and loaded
back as a user's weights would be) and on small synthetic faces whose emotion is their colour.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from spfem_cli import cli
from spfem_cli.errors import SpfemError
from spfem_cli.generator.device import torch_threads
from spfem_cli.generator.expression import EMOTIONS
from spfem_cli.pcmecl.clip import (
    TINY_CONFIG,
    ClipBundle,
    encode_images,
    encode_texts,
    load_clip,
)
from spfem_cli.pcmecl.prompt_data import (
    read_frames,
    read_video_frames,
    scan_dataset,
    split_people,
)
from spfem_cli.pcmecl.prompt_training import _encode_samples, train_prompts
from spfem_cli.pcmecl.prompts import (
    PromptLearner,
    emotion_word,
    load_prompt_learner,
    save_prompt_learner,
)
from spfem_cli.progress import MetricsReporter

TINY = "spfem-tiny-clip"
runner = CliRunner()

# Emotion -> RGB in [0, 1]: the "expression" of the synthetic faces.
COLOURS = {"happy": (0.9, 0.25, 0.2), "sad": (0.2, 0.25, 0.9), "angry": (0.25, 0.85, 0.2)}
PEOPLE = ("ann", "bob", "cat", "dan", "eve")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # These models are tiny: a second thread only adds hand-over cost (and spins badly when
    # another process keeps the cores busy).
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP at a fixed random initialisation, saved as a user's weights file."""
    torch.manual_seed(0)
    bundle = load_clip(arch=TINY, config=TINY_CONFIG)
    path = tmp_path_factory.mktemp("clip") / "tiny.pt"
    torch.save(bundle.model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_weights: Path) -> ClipBundle:
    return load_clip(arch=TINY, pretrained=tiny_weights, config=TINY_CONFIG)


def make_faces(
    root: Path,
    *,
    people: tuple[str, ...] = PEOPLE,
    per_person: int = 4,
    layout: str = "prefix",
    size: tuple[int, int] = (40, 48),
) -> Path:
    """Write synthetic labelled faces: each emotion a colour, each person a brightness.

    layout "prefix": happy/ann_0.png; "folders": happy/ann/0.png.
    """
    rng = np.random.default_rng(0)
    for emotion, colour in COLOURS.items():
        for i, person in enumerate(people):
            folder = root / emotion / person if layout == "folders" else root / emotion
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_person):
                pixels = np.array(colour) * (0.7 + 0.1 * i) + rng.normal(0, 0.08, (*size, 3))
                name = f"{k}.png" if layout == "folders" else f"{person}_{k}.png"
                image = (pixels.clip(0, 1) * 255).astype(np.uint8)
                Image.fromarray(image).save(folder / name)
    return root


def unit(rows: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return F.normalize(
        torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


# --- the learner ---------------------------------------------------------------------------


def test_untrained_learner_is_zero_shot_clip(tiny: ClipBundle) -> None:
    learner = PromptLearner(
        bundle=tiny, class_names=["happy", "fear"], class_texts=["happy", "fearful"]
    )
    with torch.no_grad():
        learner.meta_net[2].weight.zero_()
    features = learner.text_features(unit(2))
    assert features.shape == (2, 2, 32)
    reference = encode_texts(tiny, ["a photo of a happy face.", "a photo of a fearful face."])
    torch.testing.assert_close(features[0], reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(features[1], reference, atol=1e-5, rtol=0)
    assert learner.template == "X X X X {} face."


def test_gradients_reach_context_and_meta_net_not_clip(tiny: ClipBundle) -> None:
    learner = PromptLearner(bundle=tiny, class_names=["happy", "sad", "angry"])
    assert {name for name, _ in learner.named_parameters()} == {
        "ctx",
        "meta_net.0.weight",
        "meta_net.0.bias",
        "meta_net.2.weight",
        "meta_net.2.bias",
    }
    loss = F.cross_entropy(learner.logits(unit(4)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, param in learner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())


def test_open_vocabulary_and_personalisation(tiny: ClipBundle) -> None:
    learner = PromptLearner(bundle=tiny, class_names=["happy", "sad"])
    people = unit(2, seed=3)
    smug = learner.text_feature(people, "smug")
    assert smug.shape == (2, 32)
    torch.testing.assert_close(smug.norm(dim=-1), torch.ones(2))
    # The same text, personalised by two faces, gives two features.
    assert not torch.allclose(smug[0], smug[1])
    assert learner.text_feature(people[0], "smug").shape == (32,)
    with pytest.raises(SpfemError, match="too long"):
        learner.text_feature(people[0], "smug " * 20)
    assert emotion_word("fear") == "fearful" and emotion_word("happy") == "happy"


def test_same_seed_same_learner(tiny: ClipBundle) -> None:
    before = torch.random.get_rng_state()
    a = PromptLearner(bundle=tiny, class_names=["happy", "sad"], ctx_init=None, seed=5)
    b = PromptLearner(bundle=tiny, class_names=["happy", "sad"], ctx_init=None, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before), "global RNG must be left alone"
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


# --- files ---------------------------------------------------------------------------------


def test_save_load_round_trip(tiny: ClipBundle, tmp_path: Path) -> None:
    learner = PromptLearner(
        bundle=tiny, class_names=["happy", "fear"], class_texts=["happy", "fearful"], seed=1
    )
    with torch.no_grad():
        learner.ctx.add_(0.05)
    path = tmp_path / "p.safetensors"
    save_prompt_learner(learner, path, extra={"note": "test"})
    loaded = load_prompt_learner(path, bundle=tiny)
    assert loaded.class_names == ("happy", "fear") and loaded.class_texts == ("happy", "fearful")
    people = unit(3)
    assert torch.equal(loaded.text_features(people), learner.text_features(people).detach())
    assert torch.equal(
        loaded.text_feature(people, "smug"), learner.text_feature(people, "smug").detach()
    )


def test_load_refuses_a_mismatched_clip(tiny: ClipBundle, tmp_path: Path) -> None:
    path = tmp_path / "p.safetensors"
    save_prompt_learner(PromptLearner(bundle=tiny, class_names=["happy", "sad"]), path)

    config = json.loads(TINY_CONFIG.read_text())
    config["text_cfg"]["width"] = 48
    wide_config = tmp_path / "spfem-tiny-clip-w48.json"
    wide_config.write_text(json.dumps(config))
    wide = load_clip(arch="spfem-tiny-clip-w48", config=wide_config)
    with pytest.raises(SpfemError, match="text_width 64.*has text_width 48") as info:
        load_prompt_learner(path, bundle=wide)
    assert info.value.exit_code == 2

    torch.manual_seed(123)
    other_weights = load_clip(arch=TINY, config=TINY_CONFIG)
    with pytest.raises(SpfemError, match="weights loaded now .* differ"):
        load_prompt_learner(path, bundle=other_weights)
    assert load_prompt_learner(path, bundle=other_weights, check_weights=False).n_ctx == 4

    from spfem_cli.generator.checkpoint import save_checkpoint

    other_kind = tmp_path / "refiner.safetensors"
    save_checkpoint(
        other_kind, tensors={"w": torch.zeros(1)}, config={"kind": "refiner", "version": 1}
    )
    with pytest.raises(SpfemError, match="not a prompt-learner file"):
        load_prompt_learner(other_kind, bundle=tiny)


# --- data ----------------------------------------------------------------------------------


def test_scan_reads_people_from_prefix_or_folder(tmp_path: Path) -> None:
    flat = scan_dataset(make_faces(tmp_path / "flat", per_person=1))
    nested = scan_dataset(make_faces(tmp_path / "nested", per_person=1, layout="folders"))
    for data in (flat, nested):
        assert data.people == tuple(sorted(PEOPLE))
        assert data.emotions == ("angry", "happy", "sad")  # in EMOTIONS order
        assert len(data.samples) == 15


def test_scan_accepts_aliases_and_skips_other_files(tmp_path: Path) -> None:
    root = make_faces(tmp_path / "d", per_person=1)
    (root / "angry").rename(root / "Anger")
    (root / "happy" / "notes.txt").write_text("x")
    (root / ".cache").mkdir()
    data = scan_dataset(root)
    assert data.emotions == ("angry", "happy", "sad") and data.n_ignored == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "data folder not found"),
        (lambda root: root.mkdir(), "no emotion folders"),
        (
            lambda root: (root / "happy").mkdir(parents=True) or (root / "bored").mkdir(),
            "not emotions: bored",
        ),
        (
            lambda root: (root / "sad").mkdir(parents=True) or (root / "sadness").mkdir(),
            "both 'sad'",
        ),
        (lambda root: (root / "happy").mkdir(parents=True), "at least two emotions"),
    ],
)
def test_scan_refuses_bad_layouts(tmp_path: Path, setup, message: str) -> None:  # noqa: ANN001
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(SpfemError, match=message) as info:
        scan_dataset(root)
    assert info.value.exit_code == 2


def test_split_by_person_is_seeded_and_disjoint() -> None:
    people = [f"p{i}" for i in range(10)]
    train, val = split_people(people, seed=7)
    assert len(val) == 2 and not set(train) & set(val) and set(train) | set(val) == set(people)
    assert split_people(list(reversed(people)), seed=7) == (train, val)
    assert {split_people(people, seed=s)[1] for s in range(6)} != {val}
    assert split_people(people, val_people=["p3"]) == (
        tuple(p for p in people if p != "p3"),
        ("p3",),
    )
    with pytest.raises(SpfemError, match="not in the data: zed"):
        split_people(people, val_people=["zed"])
    with pytest.raises(SpfemError, match="at least two people"):
        split_people(["solo"])
    with pytest.raises(SpfemError, match="names everyone"):
        split_people(["a", "b"], val_people=["a", "b"])


def test_frames_of_mixed_sizes_and_videos_encode_as_one_by_one(
    tmp_path: Path, tiny: ClipBundle, make_clip: Callable[..., Path]
) -> None:
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for emotion, person, size in [
        ("happy", "ann", (30, 40)),
        ("happy", "bob", (50, 36)),
        ("sad", "ann", (30, 40)),
        ("sad", "cat", (33, 33)),
    ]:
        (root / emotion).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / emotion / f"{person}_{size[0]}.png")
    shutil.move(make_clip("dan_take1.mp4", size=(64, 48)), root / "sad")
    data = scan_dataset(root)
    assert [s.kind for s in data.samples].count("video") == 1

    encoded = _encode_samples(
        tiny,
        data.samples,
        class_index={"happy": 0, "sad": 1},
        frames_per_clip=3,
        advance=lambda: None,
    )
    assert encoded.features.shape == (7, 32)
    assert encoded.people.count("dan") == 3 and encoded.labels.tolist().count(1) == 5
    one_by_one = []
    for sample in data.samples:
        for frame in read_frames(sample, frames_per_clip=3):
            image = torch.from_numpy(frame).permute(2, 0, 1).float().div(255).unsqueeze(0)
            one_by_one.append(encode_images(tiny, image)[0])
    torch.testing.assert_close(encoded.features, torch.stack(one_by_one), atol=1e-5, rtol=0)


def test_rotated_video_frames_are_upright_and_quiet(
    make_clip: Callable[..., Path],
    make_rotated: Callable[[Path, int], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rotated = make_rotated(make_clip("r.mp4", size=(64, 48)), 90)
    frames = read_video_frames(rotated, count=2)
    assert [f.shape for f in frames] == [(64, 48, 3), (64, 48, 3)]
    assert not [r for r in caplog.records if r.name == "imageio_ffmpeg"]


# --- training ------------------------------------------------------------------------------


class Recorder:
    """A MetricsReporter that keeps what it is told."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.stages: list[str] = []

    def stage(self, description: str, total: int):  # noqa: ANN201
        from contextlib import nullcontext

        self.stages.append(description)
        return nullcontext(lambda: None)

    def note(self, message: str) -> None:
        pass

    def metrics(self, text: str, *, keep: bool = False) -> None:
        if keep:
            self.kept.append(text)


def test_training_learns_and_generalises_to_held_out_people(
    tmp_path: Path, tiny_weights: Path, tiny: ClipBundle
) -> None:
    data = make_faces(tmp_path / "data")
    recorder = Recorder()
    assert isinstance(recorder, MetricsReporter)
    kwargs = dict(
        data_dir=data,
        arch=TINY,
        clip_weights=tiny_weights,
        clip_config=TINY_CONFIG,
        epochs=6,
        batch_size=16,
        seed=0,
        device="cpu",
    )
    result = train_prompts(output=tmp_path / "a.safetensors", reporter=recorder, **kwargs)
    assert result.val_people and not set(result.val_people) & set(result.train_people)
    assert result.n_val_frames == 4 * 3 * len(result.val_people)
    first, last = result.history[0], result.history[-1]
    assert last.loss < 0.7 * first.loss
    assert last.val_accuracy > result.chance + 0.3
    assert len(recorder.kept) == 6 and "held-out acc" in recorder.kept[-1]
    assert load_prompt_learner(result.output, bundle=tiny).class_names == ("angry", "happy", "sad")


def test_training_is_reproducible(tmp_path: Path, tiny_weights: Path, tiny: ClipBundle) -> None:
    data = make_faces(tmp_path / "data", per_person=2)
    outputs = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for output in outputs:
        train_prompts(
            data_dir=data,
            output=output,
            arch=TINY,
            clip_weights=tiny_weights,
            clip_config=TINY_CONFIG,
            epochs=2,
            batch_size=8,
            seed=3,
            device="cpu",
        )
    a, b = (load_prompt_learner(path, bundle=tiny).state_dict() for path in outputs)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_training_refuses_to_overwrite(tmp_path: Path, tiny_weights: Path) -> None:
    output = tmp_path / "p.safetensors"
    output.write_bytes(b"precious")
    with pytest.raises(SpfemError, match="exists; pass --overwrite"):
        train_prompts(data_dir=make_faces(tmp_path / "d", per_person=1), output=output, arch=TINY)
    assert output.read_bytes() == b"precious"


# --- command line --------------------------------------------------------------------------


def invoke(*args: str | Path):  # noqa: ANN201
    # Wide enough that rich does not wrap the one-line messages.
    return runner.invoke(cli.app, ["train-prompts", *map(str, args)], env={"COLUMNS": "400"})


def test_cli_writes_prompts(tmp_path: Path, tiny_weights: Path, tiny: ClipBundle) -> None:
    data = make_faces(tmp_path / "data", per_person=2)
    output = tmp_path / "out" / "prompts.safetensors"
    result = invoke(
        data, "-o", output, "--arch", TINY, "--clip-config", TINY_CONFIG,
        "--clip-weights", tiny_weights, "--epochs", "2", "--val-people", "bob,eve",
        "--device", "cpu", "--seed", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "epoch 2/2" in result.output and "held-out acc" in result.output
    assert f"wrote {output}" in result.output and "bob, eve held out" in result.output
    learner = load_prompt_learner(output, bundle=tiny)
    assert learner.class_names == ("angry", "happy", "sad")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "data folder not found"),
        ("empty", "no emotion folders"),
        ("unknown", "folders in .* that are not emotions: bored"),
        ("one person", "a held-out split needs at least two people, found only 'ann'"),
        ("unknown val", "--val-people: not in the data: zed"),
        ("bad image", "cannot read image .*bob_0.png"),
        ("bad clip", "cannot read video .*cat_x.mp4"),
        ("bad epochs", "--epochs must be at least 1"),
        ("no weights", "spfem train-prompts needs CLIP weights: --clip-weights openai .* random"),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    tmp_path: Path, tiny_weights: Path, case: str, message: str
) -> None:
    data = tmp_path / "data"
    extra: list[str] = []
    if case == "empty":
        data.mkdir()
    elif case == "unknown":
        make_faces(data, per_person=1)
        (data / "bored").mkdir()
    elif case == "one person":
        make_faces(data, people=("ann",), per_person=1)
    elif case == "unknown val":
        make_faces(data, per_person=1)
        extra = ["--val-people", "zed"]
    elif case == "bad image":
        make_faces(data, per_person=1)
        (data / "sad" / "bob_0.png").write_bytes(b"this is not a png")
    elif case == "bad clip":
        make_faces(data, per_person=1)
        (data / "sad" / "cat_x.mp4").write_bytes(b"this is not an mp4")
    elif case == "bad epochs":
        make_faces(data, per_person=1)
        extra = ["--epochs", "0"]
    weights = [] if case == "no weights" else ["--clip-weights", tiny_weights]
    if case == "no weights":
        make_faces(data, per_person=1)
    result = invoke(
        data, "-o", tmp_path / "p.safetensors", "--arch", TINY, "--clip-config", TINY_CONFIG,
        *weights, "--device", "cpu", *extra,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("spfem: error: ")]
    assert len(error) == 1 and len(error[0].splitlines()) == 1, result.output
    assert re.search(message, error[0]), error[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "p.safetensors").exists()


# --- real faces ----------------------------------------------------------------------------

# Who is in the MEAD clips: fear and surprised show the same woman; the others are taken to be
# one person each (sad is actor M030).
MEAD_PEOPLE = {
    "contempt": "c1",
    "disgusted": "d1",
    "fear": "w1",
    "happy": "h1",
    "sad": "m030",
    "surprised": "w1",
}


@pytest.mark.clips
def test_real_clips_end_to_end(clips_dir: Path, tmp_path: Path, tiny_weights: Path) -> None:
    mead = clips_dir / "mead_emotions"
    if not mead.is_dir():
        pytest.skip(f"{mead} not found")
    data = tmp_path / "data"
    for clip in sorted(mead.glob("*.mp4")):
        folder = data / clip.stem
        folder.mkdir(parents=True)
        (folder / f"{MEAD_PEOPLE.get(clip.stem, clip.stem)}_{clip.stem}.mp4").symlink_to(clip)
    recorder = Recorder()
    result = train_prompts(
        data_dir=data,
        output=tmp_path / "mead.safetensors",
        arch=TINY,
        clip_weights=tiny_weights,
        clip_config=TINY_CONFIG,
        epochs=1,
        frames_per_clip=3,
        val_people=["w1"],
        device="cpu",
        reporter=recorder,
    )
    assert set(result.class_names) <= set(EMOTIONS) and len(result.class_names) == 6
    assert result.val_people == ("w1",) and "w1" not in result.train_people
    assert result.n_val_frames == 6 and result.n_train_frames == 12
    assert 0.0 <= result.history[0].val_accuracy <= 1.0
    assert "held-out acc" in recorder.kept[0] and result.output.is_file()
