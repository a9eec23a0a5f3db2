"""The --emotion grammar (labels, mixtures, timelines, files) and per-frame AU targets."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from spfem_cli.errors import SpfemError
from spfem_cli.generator.expression import EMOTIONS
from spfem_cli.targets import (
    TRANSITION_S,
    Part,
    Segment,
    Timeline,
    default_resolver,
    mixture_vector,
    parse_emotion,
    range_weights,
    render,
    segment_name,
    segment_shares,
    with_range,
    within_reach,
)

K = 3
# Fake AU vectors: one-hot, cycling through K = 3, so happy, sad and surprised are orthogonal
# (checked below) and a mixture's weights can be read off its target.
_ONE_HOT = MappingProxyType({name: np.eye(K)[i % K] for i, name in enumerate(EMOTIONS)})
HAPPY, SAD, SURPRISED = _ONE_HOT["happy"], _ONE_HOT["sad"], _ONE_HOT["surprised"]
RESOLVE = default_resolver(lambda name: _ONE_HOT[name])


# An independent statement of how one edited range fades in and out (smoothstep inside the
# range, no fade at 0 s or at an open end), to check `render` against.
def envelope(
    *,
    n_frames: int,
    fps: float,
    start: float | None,
    end: float | None,
    ramp_s: float = TRANSITION_S,
) -> np.ndarray:
    """Per-frame edit weight (T,) in [0, 1]: 1 inside [start, end) seconds, 0 outside, with
    smooth ramps of `ramp_s` seconds inside the range so the edit fades in and out."""
    t = np.arange(n_frames) / fps
    lo = -np.inf if start is None else start
    hi = np.inf if end is None else end
    w = ((t >= lo) & (t < hi)).astype(np.float64)
    if ramp_s > 0:
        rise = np.clip((t - lo) / ramp_s, 0, 1) if start is not None and start > 0 else 1.0
        fall = np.clip((hi - t) / ramp_s, 0, 1) if end is not None else 1.0
        w = w * np.minimum(rise, fall)
        w = w * w * (3 - 2 * w)  # smoothstep: no kink where the ramp starts
    return w


def known(name: str, weight: float = 1.0) -> Part:
    return Part(name=name, weight=weight, is_text=False)


def plain(*parts: Part) -> Timeline:
    return Timeline(segments=(Segment(start=None, end=None, parts=parts),))


def bad(spec: str, match: str) -> SpfemError:
    """Parse a spec that must fail; the message is one line and matches ``match``."""
    with pytest.raises(SpfemError, match=match) as info:
        parse_emotion(spec)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return info.value


def test_fake_vectors_tell_the_tested_emotions_apart() -> None:
    assert not np.array_equal(HAPPY, SAD)
    assert not np.array_equal(HAPPY, SURPRISED)
    assert not np.array_equal(SAD, SURPRISED)


# --- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("happy", "happy"),
        ("Surprise", "surprised"),
        ("  ANGER ", "angry"),
        ("disgust", "disgusted"),
        ("afraid", "fear"),
    ],
)
def test_label_and_aliases(spec: str, name: str) -> None:
    assert parse_emotion(spec) == plain(known(name))


def test_mixture_with_weights_and_bare_labels() -> None:
    assert parse_emotion("happy:0.6+surprised:0.4") == plain(
        known("happy", 0.6), known("surprised", 0.4)
    )
    assert parse_emotion("happy + Surprise:1.5") == plain(known("happy"), known("surprised", 1.5))
    assert parse_emotion("sad:0") == plain(known("sad", 0.0))


def test_timeline_segments_are_sorted_and_open_ended() -> None:
    tl = parse_emotion("3-:sad, 0 - 3 : happy")
    assert tl.segments == (
        Segment(start=0.0, end=3.0, parts=(known("happy"),)),
        Segment(start=3.0, end=None, parts=(known("sad"),)),
    )
    assert tl.transition_s == TRANSITION_S


def test_timeline_open_start_and_weighted_mixture() -> None:
    assert parse_emotion("-2:neutral").segments == (
        Segment(start=None, end=2.0, parts=(known("neutral"),)),
    )
    assert parse_emotion("1.5-4:happy:0.5+fear:0.5").segments == (
        Segment(start=1.5, end=4.0, parts=(known("happy", 0.5), known("fear", 0.5))),
    )


def test_free_text_is_kept_as_text() -> None:
    tl = parse_emotion("smug")
    assert tl == plain(Part(name="smug", weight=1.0, is_text=True))
    tl = parse_emotion("0-2:a  proud smile:0.5+happy")
    assert tl.segments[0].parts == (
        Part(name="a proud smile", weight=0.5, is_text=True),
        known("happy"),
    )


def test_default_resolver_refuses_free_text() -> None:
    with pytest.raises(SpfemError) as info:
        render(parse_emotion("smug"), n_frames=3, fps=25.0, resolve=RESOLVE)
    message = str(info.value)
    assert message.startswith("'smug' is not one of the eight emotions (neutral, angry, ")
    assert "free text needs CLIP weights: pass --clip-weights" in message
    assert "\n" not in message
    np.testing.assert_array_equal(RESOLVE(known("sad")), SAD)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("happy,", "empty segment in 'happy,'"),
        ("happy+", "empty part in 'happy\\+'"),
        ("happy++sad", "empty part"),
        (":0.5", "empty emotion name"),
        ("0-3:", "no emotion given in '0-3:'"),
        ("happy:", "missing weight after 'happy:'"),
        ("happy:abc", "weight 'abc' of 'happy' in 'happy:abc' is not a number"),
        ("happy:-1", "weight of 'happy' in 'happy:-1' must be between 0 and 1.5 .*got -1"),
        ("happy:1.6", "weight of 'happy' in 'happy:1.6' must be between 0 and 1.5 .*got 1.6"),
        ("sad:0.5+fear:10", "weight of 'fear' .* \\(as --intensity\\)"),
        ("happy:nan", "between 0 and 1.5"),
        ("happy:inf", "between 0 and 1.5"),
        ("happy::1", "more than one ':'"),
        ("3-1:happy", "segment '3-1' in '3-1:happy' must start before it ends"),
        ("2-2:happy", "must start before it ends"),
        ("0-3:happy,2-5:sad", "segments '0-3' and '2-5' in '0-3:happy,2-5:sad' overlap"),
        ("0-:happy,4-5:sad", "overlap"),
        ("happy,3-4:sad", "segment 'happy' in 'happy,3-4:sad' needs a time range"),
        ("-1-2:happy", "'-1-2' in '-1-2:happy' is neither an emotion nor free text"),
        ("1-2 happy", "neither an emotion nor free text"),
        ("1..2-3:happy", "time '1..2'"),
        ("42", "'42' in '42' is neither"),
        ("happy+happiness", "'happy' appears twice"),
        ("+".join(EMOTIONS) + "+smug", "mixes 9 emotions; at most 8"),
    ],
)
def test_bad_specs_fail_with_one_line(spec: str, match: str) -> None:
    bad(spec, match)


# --- files ---------------------------------------------------------------------------------

FILE_DATA = {
    "segments": [
        {"start": 3, "emotion": {"sad": 0.7, "fear": 0.3}},
        {"start": 0, "end": 3, "emotion": "Happy"},
    ],
    "transition": 0.5,
}
FILE_TIMELINE = Timeline(
    segments=(
        Segment(start=0.0, end=3.0, parts=(known("happy"),)),
        Segment(start=3.0, end=None, parts=(known("sad", 0.7), known("fear", 0.3))),
    ),
    transition_s=0.5,
)


def write_json(path: Path, data: object) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_json_file(tmp_path: Path) -> None:
    assert parse_emotion(write_json(tmp_path / "plan.json", FILE_DATA)) == FILE_TIMELINE
    default = parse_emotion(write_json(tmp_path / "d.json", {"segments": [{"emotion": "smug"}]}))
    assert default == Timeline(
        segments=(Segment(start=None, end=None, parts=(Part("smug", 1.0, True),)),),
        transition_s=TRANSITION_S,
    )


YAML_TEXT = """\
# what a user writes by hand
transition: 0.5
segments:
  - start: 3
    emotion: {sad: 0.7, fear: 0.3}
  - {start: 0, end: 3, emotion: Happy}
"""


def test_yaml_file(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    for suffix in (".yaml", ".YML"):
        path = tmp_path / f"plan{suffix}"
        path.write_text(YAML_TEXT, encoding="utf-8")
        assert parse_emotion(str(path)) == FILE_TIMELINE


def test_yaml_without_pyyaml_says_to_use_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("segments: []\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    with pytest.raises(SpfemError, match="PyYAML is not installed; use a .json file"):
        parse_emotion(str(path))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"segments": [{"emotion": "happy"}], "fps": 30}, "unknown key 'fps'"),
        ({"segments": [{"emotion": "happy", "begin": 1}]}, "unknown key 'begin' in segment 1"),
        ([{"emotion": "happy"}], "must hold a mapping with a 'segments' list, not a list"),
        ({"segments": []}, "non-empty 'segments' list"),
        ({"segments": {"emotion": "happy"}}, "non-empty 'segments' list"),
        ({"segments": ["happy"]}, "segment 1 of .* must be a mapping"),
        ({"segments": [{"start": 1}]}, "segment 1 of .* has no 'emotion'"),
        ({"segments": [{"emotion": 3}]}, "must be a label, a mixture string or a mapping"),
        ({"segments": [{"emotion": {"sad": "lots"}}]}, "maps names to numbers"),
        ({"segments": [{"emotion": {"sad": -1}}]}, "weight of 'sad' .* between 0 and 1.5"),
        ({"segments": [{"emotion": {"sad": 2}}]}, "weight of 'sad' .*intensity\\), got 2"),
        ({"segments": [{"emotion": "happy:x"}]}, "weight 'x' of 'happy'"),
        ({"segments": [{"start": "0", "emotion": "happy"}]}, "'start' .* number of seconds"),
        ({"segments": [{"start": True, "emotion": "happy"}]}, "'start' .* number of seconds"),
        ({"segments": [{"start": -1, "emotion": "happy"}]}, "times must be seconds >= 0"),
        ({"segments": [{"start": 2, "end": 1, "emotion": "happy"}]}, "start before it ends"),
        (
            {"segments": [{"end": 2, "emotion": "happy"}, {"start": 1, "emotion": "sad"}]},
            "overlap",
        ),
        ({"segments": [{"emotion": "happy"}], "transition": -0.1}, "'transition'"),
    ],
)
def test_bad_files_fail_with_one_line(tmp_path: Path, data: object, match: str) -> None:
    bad(write_json(tmp_path / "plan.json", data), match)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    bad(str(tmp_path / "nope.json"), "emotion file .*nope.json' not found")
    broken = tmp_path / "broken.json"
    broken.write_text('{"segments": [', encoding="utf-8")
    bad(str(broken), "not valid JSON: .* at line 1")
    other = tmp_path / "plan.txt"
    other.write_text("happy", encoding="utf-8")
    bad(str(other), "must end in .json")


def test_broken_yaml_file(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "plan.yml"
    path.write_text("segments: [\n  - {start: 0\n", encoding="utf-8")
    bad(str(path), "not valid YAML: .* at line")


# --- label, is_plain, with_range -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("happy", "happy"),
        ("Surprise", "surprised"),
        ("happy:0.6+surprised:0.4", "happy0.6+surprised0.4"),
        ("happy+surprised:1", "happy+surprised"),
        ("sad:0.333333", "sad0.333"),
        ("a proud smile/ok:0.5", "a_proud_smile_ok0.5"),
        ("0-3:happy,3-:sad", "timeline"),
        ("1-2:happy", "happy"),
        ("-:happy", "happy"),
    ],
)
def test_label(spec: str, label: str) -> None:
    tl = parse_emotion(spec)
    assert tl.label() == label
    assert re.fullmatch(r"[A-Za-z0-9.+_-]+", tl.label())
    assert tl.is_plain() == (spec not in ("0-3:happy,3-:sad", "1-2:happy"))


def test_an_emotion_over_a_range_is_named_for_the_emotion() -> None:
    """`spfem edit talk.mp4 -e sad --start 2 --end 4` writes talk.sad.mp4, not
    talk.timeline.mp4: the edit shows one emotion. Two emotions over one range in a batch
    then get two names, where both were "timeline" and the batch refused them."""
    assert with_range(parse_emotion("sad"), start=2.0, end=4.0).label() == "sad"
    assert with_range(parse_emotion("happy:0.5"), start=None, end=4.0).label() == "happy0.5"


def test_with_range_matches_the_timeline_and_refuses_timelines() -> None:
    happy = parse_emotion("happy:0.5")
    assert with_range(happy, start=1, end=2) == parse_emotion("1-2:happy:0.5")
    assert with_range(happy, start=1.5, end=None) == parse_emotion("1.5-:happy:0.5")
    assert with_range(happy, start=None, end=None) == happy
    timeline = parse_emotion("0-3:happy,3-:sad")
    assert with_range(timeline, start=None, end=None) == timeline
    for tl in (timeline, parse_emotion("1-2:happy")):
        with pytest.raises(SpfemError, match="^--start/--end cannot be combined with a timeline$"):
            with_range(tl, start=1, end=None)
    with pytest.raises(SpfemError, match="--start .* must be before --end"):
        with_range(happy, start=2, end=1)
    with pytest.raises(SpfemError, match="--start must be a number of seconds >= 0"):
        with_range(happy, start=-1, end=None)


# --- render --------------------------------------------------------------------------------

FPS = 30.0


def test_mixture_vector_of_a_label_or_a_mixture_and_not_of_a_timeline() -> None:
    np.testing.assert_array_equal(mixture_vector("happy", resolve=RESOLVE), HAPPY)
    np.testing.assert_allclose(
        mixture_vector(" happy:0.6+surprised:0.4 ", resolve=RESOLVE), 0.6 * HAPPY + 0.4 * SURPRISED
    )
    for spec in ("0-3:happy", "0-3:happy,3-:sad", "2-:sad"):
        with pytest.raises(SpfemError, match="has time ranges") as info:
            mixture_vector(spec, resolve=RESOLVE)
        assert "\n" not in str(info.value)
    with pytest.raises(SpfemError, match="CLIP weights"):
        mixture_vector("smug", resolve=RESOLVE)


def test_render_single_label() -> None:
    targets, weights = render(parse_emotion("happy"), n_frames=50, fps=FPS, resolve=RESOLVE)
    assert targets.shape == (50, K) and weights.shape == (50,)
    assert targets.dtype == np.float64 and weights.dtype == np.float64
    np.testing.assert_array_equal(weights, 1.0)
    np.testing.assert_array_equal(targets, np.tile(HAPPY, (50, 1)))


def test_render_mixture_is_the_weighted_sum() -> None:
    tl = parse_emotion("happy:0.6+surprised:0.4+sad:1.5")
    targets, weights = render(tl, n_frames=10, fps=FPS, resolve=RESOLVE)
    np.testing.assert_allclose(targets, np.tile(0.6 * HAPPY + 0.4 * SURPRISED + 1.5 * SAD, (10, 1)))
    np.testing.assert_array_equal(weights, 1.0)


def test_render_crossfade_between_touching_segments() -> None:
    n = int(6 * FPS)
    targets, weights = render(
        parse_emotion("0-3:happy,3-:sad"), n_frames=n, fps=FPS, resolve=RESOLVE
    )
    t = np.arange(n) / FPS
    np.testing.assert_array_equal(weights, 1.0)
    np.testing.assert_allclose(targets[t < 2.85], np.tile(HAPPY, ((t < 2.85).sum(), 1)))
    np.testing.assert_allclose(targets[t > 3.15], np.tile(SAD, ((t > 3.15).sum(), 1)))
    # Between, the target moves monotonically from happy to sad along a smoothstep.
    share_sad = targets @ SAD / (SAD @ SAD)
    np.testing.assert_allclose(targets, np.outer(1 - share_sad, HAPPY) + np.outer(share_sad, SAD))
    assert np.all(np.diff(share_sad) >= 0)
    # A linear 0.3 s ramp at 30 fps moves 1/9 a frame; smoothstep peaks at 1.5x that.
    assert np.abs(np.diff(targets, axis=0)).max() <= 1.5 / (TRANSITION_S * FPS) + 1e-9
    assert share_sad[np.searchsorted(t, 3.0)] == pytest.approx(0.5)


def test_segment_shares_are_how_render_blends_the_segments() -> None:
    """Each frame's share of each segment: the crossfade render plays (its targets are the
    shares times the segments' mixtures), 1 in all inside the timeline, 0 outside it."""
    n = int(8 * FPS)
    timeline = parse_emotion("0-3:happy,3-5:sad:0.5+surprised:0.5,6-:sad")
    shares = segment_shares(timeline, n_frames=n, fps=FPS)
    targets, _ = render(timeline, n_frames=n, fps=FPS, resolve=RESOLVE)
    mixes = np.stack([HAPPY, 0.5 * SAD + 0.5 * SURPRISED, SAD])
    np.testing.assert_allclose(shares @ mixes, targets, atol=1e-12)
    t = np.arange(n) / FPS
    inside = (t < 5) | (t >= 6)
    np.testing.assert_allclose(shares[inside].sum(axis=1), 1.0)
    assert np.all(shares[~inside] == 0) and np.all(shares >= 0)
    assert np.all(np.diff(shares[(t > 2) & (t < 4), 1]) >= 0)  # into the second segment
    assert [segment_name(seg) for seg in timeline.segments] == [
        "0-3 s happy", "3-5 s sad:0.5+surprised:0.5", "6- s sad",
    ]  # fmt: skip
    assert segment_name(parse_emotion("smug").segments[0]) == "- s 'smug'"


def test_render_touching_within_half_a_frame_still_crossfades() -> None:
    gap = 0.4 / FPS
    tl = Timeline(
        segments=(
            Segment(start=None, end=3.0, parts=(known("happy"),)),
            Segment(start=3.0 + gap, end=None, parts=(known("sad"),)),
        )
    )
    targets, weights = render(tl, n_frames=int(6 * FPS), fps=FPS, resolve=RESOLVE)
    np.testing.assert_array_equal(weights, 1.0)
    assert np.abs(np.diff(targets, axis=0)).max() <= 1.5 / (TRANSITION_S * FPS) + 1e-9


def test_render_lone_range_fades_inside_like_the_envelope() -> None:
    n = int(4 * FPS)
    targets, weights = render(parse_emotion("1-2:happy"), n_frames=n, fps=FPS, resolve=RESOLVE)
    t = np.arange(n) / FPS
    outside = (t < 1.0) | (t >= 2.0)
    np.testing.assert_array_equal(weights[outside], 0.0)
    np.testing.assert_array_equal(targets[outside], 0.0)
    inside = ~outside
    np.testing.assert_array_equal(targets[inside], np.tile(HAPPY, (inside.sum(), 1)))
    np.testing.assert_array_equal(weights[(t >= 1.3) & (t <= 1.7)], 1.0)
    rising = weights[(t >= 1.0) & (t <= 1.3)]
    assert rising[0] == 0.0 and np.all(np.diff(rising) > 0)
    np.testing.assert_allclose(
        weights, envelope(n_frames=n, fps=FPS, start=1.0, end=2.0, ramp_s=TRANSITION_S)
    )
    # What `spfem check --start 1 --end 2` measures: the frames this edit changed.
    lone = range_weights(n_frames=n, fps=FPS, start=1.0, end=2.0)
    np.testing.assert_array_equal(lone, weights)
    assert (lone > 0).sum() == inside.sum() - 1 and lone[t == 1.0] == 0.0
    np.testing.assert_array_equal(
        range_weights(n_frames=n, fps=FPS, start=0.0, end=None), np.ones(n)
    )


def test_render_gap_fades_out_and_in() -> None:
    n = int(5 * FPS)
    tl = parse_emotion("-2:happy,3-:sad")
    targets, weights = render(tl, n_frames=n, fps=FPS, resolve=RESOLVE)
    t = np.arange(n) / FPS
    np.testing.assert_allclose(
        weights,
        envelope(n_frames=n, fps=FPS, start=None, end=2.0)
        + envelope(n_frames=n, fps=FPS, start=3.0, end=None),
    )
    assert weights[0] == 1.0 and weights[-1] == 1.0  # no fade at the video's ends
    np.testing.assert_array_equal(targets[(t >= 2.0) & (t < 3.0)], 0.0)
    np.testing.assert_array_equal(targets[t >= 3.0], np.tile(SAD, ((t >= 3.0).sum(), 1)))


def test_render_short_segments_stay_smooth_and_convex() -> None:
    # Segments shorter than the transition: crossfades overlap but stay a convex combination.
    tl = parse_emotion("0-1:happy,1-1.1:surprised,1.1-1.2:sad,1.2-:happy")
    targets, weights = render(tl, n_frames=int(3 * FPS), fps=FPS, resolve=RESOLVE)
    np.testing.assert_array_equal(weights, 1.0)
    assert targets.min() >= -1e-12
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    assert np.abs(np.diff(targets, axis=0)).max() <= 1.5 / (TRANSITION_S * FPS) + 1e-9


def test_render_beyond_the_video_and_empty() -> None:
    targets, weights = render(parse_emotion("10-20:happy"), n_frames=30, fps=FPS, resolve=RESOLVE)
    assert not weights.any() and not targets.any()
    targets, weights = render(parse_emotion("happy"), n_frames=0, fps=FPS, resolve=RESOLVE)
    assert targets.shape == (0, K) and weights.shape == (0,)


def test_render_resolves_each_part_once() -> None:
    calls: list[str] = []

    def resolve(part: Part) -> np.ndarray:
        calls.append(part.name)
        return _ONE_HOT[part.name]

    render(
        parse_emotion("0-1:happy,1-2:sad+happy:0.5,2-3:happy"), n_frames=9, fps=3.0, resolve=resolve
    )
    assert sorted(calls) == ["happy", "sad"]


def test_a_hint_for_emotions_that_show_in_the_mouth_in_natural_mode() -> None:
    from spfem_cli.pipeline import mouth_hint

    hint = mouth_hint(parse_emotion("0-2:happy,2-:contempt:0.5+sad:0.5"), mouth="natural")
    assert hint is not None and "contempt and happy" in hint and "--mouth expressive" in hint
    assert "contempt and happy show much" in hint
    assert (mouth_hint(parse_emotion("happy"), mouth="natural") or "").startswith("happy shows")
    assert mouth_hint(parse_emotion("happy"), mouth="expressive") is None
    assert mouth_hint(parse_emotion("happy"), mouth="strict") is None
    assert mouth_hint(parse_emotion("surprised+sad"), mouth="natural") is None
    assert mouth_hint(parse_emotion("happy:0+sad:1"), mouth="natural") is None
    # Expressive mode raises disgust's upper lip twice as far.
    hint = mouth_hint(parse_emotion("disgusted+happy:0.5+contempt:0.2"), mouth="natural")
    assert (hint or "").startswith("contempt, disgusted and happy show much of")
    assert (hint or "").endswith("--mouth expressive moves them further, as a real expression does")
    # A preview's columns, together.
    columns = [parse_emotion("sad"), parse_emotion("contempt:0.5+fear:0.5"), parse_emotion("happy")]
    assert (mouth_hint(columns, mouth="natural") or "").startswith("contempt and happy show")
    assert mouth_hint(columns[:1], mouth="natural") is None


def test_a_still_mouth_is_one_whose_opening_barely_varies() -> None:
    """`mouth_is_still` on landmarks whose lips part by a steady gap, then by a gap that
    varies as speech's does, then on frames without a face (NaN) and none at all."""
    from spfem_cli.evaluate import OPENING_PAIRS
    from spfem_cli.face import mesh
    from spfem_cli.pipeline import mouth_is_still

    rng = np.random.default_rng(0)
    lm = np.zeros((40, 478, 2))
    right, left = list(mesh.RIGHT_EYE), list(mesh.LEFT_EYE)
    lm[:, right, 0], lm[:, left, 0] = -50.0, 50.0  # eyes 100 pixels apart
    upper, lower = list(OPENING_PAIRS[0]), list(OPENING_PAIRS[1])
    lm[:, lower, 1] = 5.0 + rng.normal(0.0, 0.5, size=(40, 1))  # 0.05 IOD, steady
    assert mouth_is_still(lm)
    lm[:, lower, 1] = 5.0 + rng.normal(0.0, 5.0, size=(40, 1))  # varies as speech's
    assert not mouth_is_still(lm)
    assert lm[:, upper, 1].max() == 0.0
    assert not mouth_is_still(np.full((5, 478, 2), np.nan))
    assert not mouth_is_still(None)


def test_a_second_of_speech_in_a_long_silent_clip_is_speech() -> None:
    """A minute at 25 fps whose closed mouth opens 0.15 IOD for one second: the opening's
    spread (0.019) is under `STILL_MOUTH`, but its range is a speaker's, so the mouth is not
    still and natural mode keeps the lips near that second's speech."""
    from spfem_cli.evaluate import OPENING_PAIRS
    from spfem_cli.face import mesh
    from spfem_cli.pipeline import mouth_is_still
    from spfem_cli.speech_check import STILL_MOUTH, opening_spread

    lm = np.zeros((1500, 478, 2))
    lm[:, list(mesh.RIGHT_EYE), 0], lm[:, list(mesh.LEFT_EYE), 0] = -50.0, 50.0
    lower = list(OPENING_PAIRS[1])
    lm[:, lower, 1] = 1.0
    assert mouth_is_still(lm)
    lm[700:725, lower, 1] = 16.0
    assert opening_spread(lm) < STILL_MOUTH
    assert not mouth_is_still(lm)


def test_natural_mode_plays_as_expressive_where_there_is_no_speech() -> None:
    """`played_mouth`: natural mode on a photo, or on a video whose mouth never moves, plays
    as expressive mode and says why; on a speaking video, or before the video is tracked, it
    stays natural; strict and expressive modes are played as asked."""
    from types import SimpleNamespace

    from spfem_cli.evaluate import OPENING_PAIRS
    from spfem_cli.face import mesh
    from spfem_cli.pipeline import PHOTO_MOUTH_NOTE, STILL_MOUTH_NOTE, played_mouth

    rng = np.random.default_rng(1)
    lm = np.zeros((40, 478, 2))
    lm[:, list(mesh.RIGHT_EYE), 0], lm[:, list(mesh.LEFT_EYE), 0] = -50.0, 50.0
    lower = list(OPENING_PAIRS[1])
    lm[:, lower, 1] = 1.0 + rng.normal(0.0, 0.3, size=(40, 1))
    silent = SimpleNamespace(raw=lm.copy())
    lm[:, lower, 1] = 5.0 + rng.normal(0.0, 5.0, size=(40, 1))
    speaking = SimpleNamespace(raw=lm)

    assert played_mouth("natural", photo=True) == ("expressive", PHOTO_MOUTH_NOTE)
    assert played_mouth("natural", photo=False) == ("natural", None)
    assert played_mouth("natural", photo=False, track=silent) == ("expressive", STILL_MOUTH_NOTE)
    assert played_mouth("natural", photo=False, track=speaking) == ("natural", None)
    for mode in ("strict", "expressive"):
        assert played_mouth(mode, photo=True, track=silent) == (mode, None)
    assert "no speech to keep" in STILL_MOUTH_NOTE and "--mouth strict" in STILL_MOUTH_NOTE


# --- within reach ---------------------------------------------------------------------------

# Two emotions over three AUs: the first plays AU 0 at most 1.2 (a limit of 1.8 at the top
# intensity), AU 1 at most 0.5 and AU 2 not at all (both then 1.5).
PROTOTYPES = np.array([[1.2, 0.5, 0.0], [0.4, 0.2, 0.0]])


def test_a_target_within_reach_is_played_as_it_is() -> None:
    targets = np.array([1.5 * PROTOTYPES[0], PROTOTYPES[1], [1.5 * 1.2, 1.5, 1.5], np.zeros(3)])
    np.testing.assert_array_equal(within_reach(targets, prototypes=PROTOTYPES), targets)


def test_a_mixture_past_reach_is_scaled_down_as_a_whole() -> None:
    # AU 0 at 3.6 is twice its limit, AU 1 at 2.25 one and a half times: the frame is halved.
    targets = np.array([[3.6, 2.25, 0.3], [0.9, 0.0, 3.0]])
    played = within_reach(targets, prototypes=PROTOTYPES)
    np.testing.assert_allclose(played, [[1.8, 1.125, 0.15], [0.45, 0.0, 1.5]])
    # One frame alone (K,) reads the same as in a clip.
    np.testing.assert_allclose(within_reach(targets[0], prototypes=PROTOTYPES), played[0])
