"""How far a smile raises the lower lids, on real faces and in spfem's happy.

    python scripts/measure_smile_lids.py [--clips ../shared/clips] [--frames 8]
                                         [--levels 0 0.25 0.5 0.75 1]

On the clips where a person goes from a calm face to a smile (`build_shading.SMILE_CLIPS`), the
smile's frames and the calm ones are picked as `build_shading.pick_frames` picks them, and
`--frames` of each, evenly spaced, are read: each eye's lower lid below its iris's centre, off
the pixels (`evaluate.lower_lids_seen`; the landmarks found by FaceMesh on the frame alone). A
real smile's rise is the calm frames' median less the smile's. Then each calm frame is edited
to happy as `spfem edit` edits it (the warp and the shipped shading), with the lid tightener
(AU7) at each of `--levels` in place of the prototype's own, and the edit's rise is read the
same way. FaceMesh's lid points follow a lid only in part, on a real face as on a warped one,
so they cannot size a lid's motion; the pixels can.

Prints, per clip and as the mean over the clips, the real rise and the edit's at each level
(IOD), and the level at which the edit's mean meets the real one (linear between levels).
Happy's prototype keeps its calibrated lid tightening (none): the three faces disagree (see
docs/expressions.md). About a minute on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from build_shading import SMILE_CLIPS, pick_frames

from spfem_cli.evaluate import lower_lids_seen
from spfem_cli.face.mesh import FaceFrame
from spfem_cli.face.tracker import LandmarkTracker
from spfem_cli.generator.expression import ExpressionModel
from spfem_cli.generator.generator import build_generator
from spfem_cli.media import FrameReader, probe
from spfem_cli.pipeline import analyse_video
from spfem_cli.progress import SilentReporter


def evenly(frames: np.ndarray, n: int) -> set[int]:
    """Up to n of the frame indices, evenly spaced."""
    return {
        int(frames[i]) for i in np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=Path("../shared/clips"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    args = parser.parse_args()
    model = ExpressionModel.load()
    generator = build_generator(model=model, device=torch.device("cpu"), kind="warp")
    happy = model.emotion_vector("happy").double().numpy()
    au7 = model.au_names.index("AU7")
    print(f"happy's shipped lid tightening (AU7): {happy[au7]:.2f}")
    rows = []
    for name in SMILE_CLIPS:
        info = probe(args.clips / f"{name}.mp4")
        with tempfile.TemporaryDirectory() as tmp:
            analysis = analyse_video(
                info, model=model, workdir=Path(tmp), reporter=SilentReporter()
            )
        smile, calm = pick_frames(np.asarray(analysis.track.norm, np.float64), analysis.track.valid)
        chosen = {t: "smile" for t in evenly(smile, args.frames)}
        chosen |= {t: "calm" for t in evenly(calm, args.frames)}
        seen: dict[str, list[np.ndarray]] = {"smile": [], "calm": []}
        seen |= {f"edit {level}": [] for level in args.levels}
        with FrameReader(info) as reader, LandmarkTracker(video_mode=False) as tracker:
            for t, frame in enumerate(reader):
                if t not in chosen:
                    continue
                found = tracker.detect(frame)
                if found is None:
                    continue
                face = FaceFrame.from_landmarks(found.landmarks)
                points = face.to_face(found.landmarks.astype(np.float64))
                seen[chosen[t]].append(lower_lids_seen(frame, face=face, points=points))
                if chosen[t] != "calm":
                    continue
                for level in args.levels:
                    delta = happy.copy()
                    delta[au7] = level
                    out = generator.edit_frame(frame, face=face, points=points, delta=delta)
                    below = lower_lids_seen(out, face=face, points=points)
                    seen[f"edit {level}"].append(below)
        # Each eye's median over the frames, then both eyes' mean: a lens's reflection may hide
        # one eye's lid on some frames.
        calm_at = np.nanmedian(seen["calm"], axis=0)
        per_eye = [calm_at - np.nanmedian(seen["smile"], axis=0)]
        per_eye += [calm_at - np.nanmedian(seen[f"edit {level}"], axis=0) for level in args.levels]
        rise = [float(np.mean(r)) for r in per_eye]
        rows.append(rise)
        print(
            f"{name}: {len(seen['smile'])} smile and {len(seen['calm'])} calm frames; lower lid "
            f"rise, IOD: real {rise[0]:+.4f} (eyes {per_eye[0][0]:+.4f}, {per_eye[0][1]:+.4f}); "
            "happy with AU7 at "
            + ", ".join(f"{lv:g}: {r:+.4f}" for lv, r in zip(args.levels, rise[1:], strict=True))
        )
    mean = np.mean(rows, axis=0)
    print(
        f"mean over the clips: real {mean[0]:+.4f}; happy with AU7 at "
        + ", ".join(f"{lv:g}: {r:+.4f}" for lv, r in zip(args.levels, mean[1:], strict=True))
    )
    edits = mean[1:]
    if np.all(np.diff(edits) > 0) and edits[0] <= mean[0] <= edits[-1]:
        level = float(np.interp(mean[0], edits, args.levels))
        print(f"the edit's mean rise meets the real smiles' at AU7 {level:.2f}")
    else:
        print("the edit's mean rise does not cross the real smiles' within the levels given")


if __name__ == "__main__":
    main()
