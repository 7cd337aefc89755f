"""Readers for the training datasets: annotated sequence folders, GOT-10k, LaSOT, TrackingNet, UAV123, ILSVRC-VID
and COCO-style JSON. GOT-10k, LaSOT, TrackingNet and UAV123 are read by the runtime's readers (``runtime.layouts``),
the ones ``edgetrack eval`` uses; a frame is visible where the runtime's sequence has it not absent.

Layouts (``<root>`` is the path given):

- sequence folders (``sequences:``): what ``edgetrack eval`` reads, one sequence folder or a folder of them: OTB
  (``img/`` + ``groundtruth_rect.txt``) or VOT (``color/`` + 4-value or polygon ``groundtruth.txt``), NaN rows for
  frames without the target. The evaluation folders (``$EDGETRACK_DATA/benchmark`` and ``sequences``) are refused.
- GOT-10k: ``<root>/<split>/<sequence>/`` with ``00000001.jpg ...``, ``groundtruth.txt`` (x,y,w,h per line),
  optional ``absence.label`` (1 = absent) and ``cover.label`` (0 = fully covered); ``<root>/<split>/list.txt``
  names the sequences, else every sub-folder is one.
- LaSOT: ``<root>/<category>/<category>-<n>/`` with ``img/00000001.jpg ...``, ``groundtruth.txt`` and optional
  ``full_occlusion.txt`` / ``out_of_view.txt`` (comma-separated 0/1 per frame; either flag makes a frame invisible).
- TrackingNet: ``<root>/TRAIN_<k>/frames/<video>/0.jpg ...`` and ``<root>/TRAIN_<k>/anno/<video>.txt``.
- UAV123: ``<root>/anno/UAV123/<name>.txt`` and ``<root>/data_seq/UAV123/<folder>/000001.jpg ...``, with the
  sub-sequences that are frame ranges of one folder (``runtime.layouts.UAV123_RANGES``); NaN rows are invisible.
- ILSVRC-VID: ``<root>/Data/VID/<split>/.../<snippet>/000000.JPEG`` and the same path under
  ``<root>/Annotations/VID/<split>`` with ``.xml``; each (snippet, trackid) is one sequence, invisible where the
  trackid is not annotated.
- COCO JSON: every non-crowd annotation is a one-frame sequence; crowd annotations are left out silently.

Frames are only listed while indexing, never read. Bad input never stops a dataset half-read:

- a missing root, or one with no sequence of the expected layout, or no usable sequence at all: ``SourceError``;
- a corrupt annotation line, a corrupt flag file, no frames, a frame count that differs from the box count, only the
  first frame's box (a test split), or no visible box: the whole sequence is skipped, with the file (and line) in
  ``TrainingSet.skipped``;
- a malformed VID XML file: its frame counts as target absent, with a reason; a malformed COCO entry: skipped with a
  reason; a COCO file that is not JSON of images and annotations: ``SourceError``.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from edgetrack.runtime.datasets import Sequence as RuntimeSequence
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.errors import SourceError
from edgetrack.runtime.layouts import (
    entry_names,
    frames_of,
    got10k_names,
    is_image,
    lasot_folders,
    natural_name,
    read_got10k_sequence,
    read_lasot_sequence,
    read_trackingnet_sequence,
    read_uav123_sequence,
    trackingnet_videos,
    uav123_names,
)

from .sequence import ImageSequence, TrainingSequence, TrainingSet, checked_boxes


class FolderSequence(ImageSequence):
    """An ``ImageSequence`` whose frame paths may be ``NumberedFrames`` rather than a tuple of paths. ``SourceError``
    (which the readers turn into a skip) when frames and boxes differ in number or no box is visible."""

    def __init__(self, name: str, frame_paths: Sequence[Path], boxes, visible=None):
        self.name = name
        self.frame_paths = frame_paths
        self.boxes, self.visible = checked_boxes(name, boxes, visible)
        if len(frame_paths) != len(self.boxes):
            where = f" in {frame_paths[0].parent}" if len(frame_paths) else ""
            raise SourceError(f"{len(frame_paths)} frames{where} but {len(self.boxes)} boxes")
        if not self.visible.any():
            raise SourceError("no frame has a visible box, so it gives no training pair")


def read_got10k(root: Path, split: str = "train") -> TrainingSet:
    """``<root>/<split>/``: the sequences its list.txt names, else every sub-folder."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise SourceError(f"GOT-10k root {folder} not found: expected <root>/{split}/<sequence>/groundtruth.txt")
    names = got10k_names(folder, require_list=False)
    return _read_all(f"GOT-10k root {folder}", ((f"got10k/{n}", _training, read_got10k_sequence, folder / n) for n in names))


def read_lasot(root: Path) -> TrainingSet:
    folders = lasot_folders(root)
    return _read_all(f"LaSOT root {root}", ((f"lasot/{f.name}", _training, read_lasot_sequence, f) for f in folders))


def read_trackingnet(root: Path, chunks: Sequence[str] | None = None) -> TrainingSet:
    """The ``TRAIN_<k>`` chunks of ``root``, or the ``chunks`` named (TEST has first-frame boxes only)."""
    root = Path(root)
    layout = "<root>/TRAIN_<k>/anno/<video>.txt and <root>/TRAIN_<k>/frames/<video>/0.jpg"
    if not root.is_dir():
        raise SourceError(f"TrackingNet root {root} not found: expected {layout}")
    if isinstance(chunks, str):
        chunks = [chunks]
    elif chunks is None:
        chunks = [name for name in entry_names(root, directories=True) if name.startswith("TRAIN_")]
    if not chunks:
        raise SourceError(f"TrackingNet root {root} holds no TRAIN_* folder: expected {layout}")
    missing = [chunk for chunk in chunks if not (root / chunk / "anno").is_dir()]
    if missing:
        raise SourceError(f"TrackingNet folder {root / missing[0] / 'anno'} not found: expected {layout}")
    items = [
        (f"trackingnet/{chunk}/{video}", _training, read_trackingnet_sequence, root / chunk, video)
        for chunk in chunks
        for video in trackingnet_videos(root / chunk)
    ]
    return _read_all(f"TrackingNet root {root}", items)


def read_uav123(root: Path) -> TrainingSet:
    names = uav123_names(root)
    return _read_all(f"UAV123 root {root}", ((f"uav123/{n}", _training, read_uav123_sequence, root, n) for n in names))


def _training(name: str, read: Callable[..., RuntimeSequence], *args) -> TrainingSequence:
    """The runtime's sequence ``read(*args)`` as a training sequence, visible where it is not absent."""
    sequence = read(*args)
    if not sequence.scored:
        raise SourceError("only the first frame has a box (a test split), so it gives no training pair")
    return FolderSequence(name, sequence.frame_paths, sequence.groundtruth, ~sequence.absent)


def read_imagenet_vid(root: Path, split: str = "train") -> TrainingSet:
    root = Path(root)
    data, annotations = root / "Data" / "VID" / split, root / "Annotations" / "VID" / split
    layout = f"<root>/Data/VID/{split}/.../<snippet>/000000.JPEG and <root>/Annotations/VID/{split}/.../<snippet>/000000.xml"
    for folder in (data, annotations):
        if not folder.is_dir():
            raise SourceError(f"ILSVRC-VID folder {folder} not found: expected {layout}")
    skipped, items = [], []
    for folder, names in _snippets(data):
        snippet = folder.relative_to(data)
        name = f"vid/{snippet.as_posix()}"
        frames = frames_of(folder, names)
        try:
            tracks, reasons = _vid_tracks(frames, annotations / snippet)
        except SourceError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        skipped.extend(f"{name}: {reason}" for reason in reasons)
        if not tracks:
            skipped.append(f"{name}: no object is annotated in {annotations / snippet}")
        items.extend((f"{name}/{track}", FolderSequence, frames, boxes) for track, boxes in tracks.items())
    result = _read_all(None, items)
    result.skipped[:0] = skipped
    return _usable(result, f"ILSVRC-VID root {root} (expected {layout})")


def read_coco(annotations: Path, images: Path | None = None) -> TrainingSet:
    """COCO-style JSON; ``images`` is the folder that ``file_name`` is relative to. Without it, the first of
    ``<json folder>/images``, ``<json folder>`` and, for the official layout (``annotations/instances_train2017.json``
    beside ``train2017/``), ``<json folder>/../<json name after its last _>`` that holds the first image."""
    annotations = Path(annotations)
    where = f"COCO annotations {annotations}"
    expected = 'expected JSON {"images": [{"id", "file_name"}], "annotations": [{"image_id", "bbox", "iscrowd"}]}'
    if not annotations.is_file():
        raise SourceError(f"{where} not found: {expected}")
    try:
        data = json.loads(annotations.read_bytes())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{where} cannot be read: {exc}; {expected}") from None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)):
        raise SourceError(f"{where} has no images and annotations lists: {expected}")

    result = TrainingSet()
    files: dict = {}
    for entry in data["images"]:
        if isinstance(entry, dict) and isinstance(entry.get("file_name"), str) and "id" in entry:
            files[entry["id"]] = entry["file_name"]
        else:
            result.skipped.append(f"{annotations}: image entry {str(entry)[:60]} has no id or file_name")
    folder = Path(images) if images is not None else _coco_images(annotations, next(iter(files.values()), None))
    if not folder.is_dir():
        raise SourceError(f"COCO image folder {folder} not found")

    paths: dict = {}  # one Path per image, shared by its annotations
    for entry in data["annotations"]:
        label = f"{annotations}: annotation {entry.get('id') if isinstance(entry, dict) else str(entry)[:40]}"
        try:
            if entry.get("iscrowd"):
                continue
            file_name = files[entry["image_id"]]
            if not isinstance(entry["bbox"], list):
                raise TypeError
            x, y, w, h = (float(v) for v in entry["bbox"])
        except (AttributeError, KeyError, TypeError, ValueError):
            result.skipped.append(f"{label}: expected image_id of a listed image and bbox [x, y, w, h]")
            continue
        if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
            result.skipped.append(f"{label}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] is not a finite box of positive size")
            continue
        path = paths.setdefault(file_name, folder / file_name)
        result.sequences.append(FolderSequence(f"coco/{path.stem}/{entry.get('id')}", (path,), [[x, y, w, h]]))
    return _usable(result, where)


def _coco_from_path(path: Path) -> TrainingSet:
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            raise SourceError(
                f"COCO folder {path} holds {len(found)} JSON files: give the annotation file itself or a folder with exactly one"
            )
        path = found[0]
    return read_coco(path)


#: What ``edgetrack eval`` scores: never training data, whatever the spec says.
EVALUATION_FOLDERS = ("benchmark", "sequences")


def evaluation_folders() -> list[Path]:
    data = Path(os.environ.get("EDGETRACK_DATA", "../shared/data"))
    return [(data / name).resolve() for name in EVALUATION_FOLDERS]


def refuse_evaluation_data(root: Path) -> None:
    """Training on the benchmark would make every score a lie: refuse a path inside an evaluation folder or holding one."""
    root = root.resolve()
    for folder in evaluation_folders():
        if root.is_relative_to(folder) or folder.is_relative_to(root):
            raise SourceError(f"{root} is or holds the evaluation data {folder}: it is never trained on; give the train/ folder or your own")


def read_sequence_folders(root: Path) -> TrainingSet:
    """Annotated sequence folders in the layouts ``edgetrack eval`` reads (OTB ``img/`` + ``groundtruth_rect.txt``,
    VOT ``color/`` + 4-value or polygon ``groundtruth.txt``), one folder or a folder of them; rows of NaN (target
    absent) are frames that are never a positive."""
    refuse_evaluation_data(root)
    dataset = load_dataset(root)
    result = TrainingSet(skipped=[f"{name}: {reason}" for name, reason in dataset.skipped])
    return _read_all(str(root), ((s.name, _sequence_folder, s) for s in dataset.sequences)).extend(result)


def _sequence_folder(name: str, sequence) -> TrainingSequence:
    try:
        return ImageSequence(name, sequence.frame_paths, sequence.groundtruth)
    except ValueError as exc:
        raise SourceError(str(exc)) from None


FORMATS: dict[str, Callable[[Path], TrainingSet]] = {
    "got10k": read_got10k,
    "lasot": read_lasot,
    "trackingnet": read_trackingnet,
    "uav123": read_uav123,
    "vid": read_imagenet_vid,
    "coco": _coco_from_path,
}


def read_training_data(spec: str) -> TrainingSet:
    """Read ``FORMAT:PATH``, e.g. ``got10k:/data/GOT-10k`` (FORMAT is a key of ``FORMATS``)."""
    name, colon, path = spec.partition(":")
    reader = FORMATS.get(name.strip().lower())
    if reader is None or not colon or not path:
        raise ValueError(f"training data {spec!r}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    return reader(Path(path).expanduser())


def _read_all(where: str | None, items) -> TrainingSet:
    """Build ``build(name, *args)`` for each ``(name, build, *args)``, skipping each that raises ``SourceError``;
    ``SourceError`` when nothing is usable and ``where`` names the dataset."""
    result = TrainingSet()
    for name, build, *args in items:
        try:
            result.sequences.append(build(name, *args))
        except SourceError as exc:
            result.skipped.append(f"{name}: {exc}")
    return result if where is None else _usable(result, where)


def _usable(result: TrainingSet, where: str) -> TrainingSet:
    if not result.sequences:
        first = f"; first: {result.skipped[0]}" if result.skipped else ""
        raise SourceError(f"{where} holds no usable sequence ({len(result.skipped)} skipped{first})")
    return result


def _vid_tracks(frames: Sequence[Path], folder: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The boxes of each trackid of a VID snippet (NaN where it is not annotated), and a reason per malformed or
    missing XML file."""
    try:
        xml_names = set(entry_names(folder, directories=False))
    except OSError:
        raise SourceError(f"annotation folder {folder} not found") from None
    boxes: dict[str, np.ndarray] = {}
    reasons = []
    for index, frame in enumerate(frames):
        xml = folder / f"{frame.stem}.xml"
        if xml.name not in xml_names:
            reasons.append(f"no annotation {xml}: frame {index} counted as target absent")
            continue
        try:
            objects = _vid_objects(xml)
        except SourceError as exc:
            reasons.append(f"{exc}: frame {index} counted as target absent")
            continue
        for track, box in objects:
            boxes.setdefault(track, np.full((len(frames), 4), np.nan))[index] = box
    return {track: boxes[track] for track in sorted(boxes, key=natural_name)}, reasons


def _vid_objects(path: Path) -> list[tuple[str, list[float]]]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SourceError(f"malformed XML {path} ({exc})") from None
    objects = []
    for element in root.iter("object"):
        try:
            track = element.findtext("trackid").strip()
            xmin, xmax, ymin, ymax = (float(element.findtext(f"bndbox/{k}")) for k in ("xmin", "xmax", "ymin", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise SourceError(f"malformed XML {path}: an object lacks trackid or a numeric bndbox xmin/xmax/ymin/ymax") from None
        objects.append((track, [xmin, ymin, xmax - xmin, ymax - ymin]))
    return objects


def _snippets(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """Each folder under ``folder`` (itself included) that holds images, with their names; VID train has one more
    level of folders than val, so the depth is found by walking."""
    with os.scandir(folder) as entries:
        entries = list(entries)
    images = [e.name for e in entries if is_image(e)]
    if images:
        yield folder, images
        return
    for name in sorted((e.name for e in entries if e.is_dir() and not e.name.startswith(".")), key=natural_name):
        yield from _snippets(folder / name)


def _coco_images(annotations: Path, first_file: str | None) -> Path:
    parent = annotations.parent
    candidates = [parent / "images", parent]
    if "_" in annotations.stem:
        candidates.append(parent.parent / annotations.stem.rsplit("_", 1)[1])
    if first_file is None:
        return parent
    for folder in candidates:
        if (folder / first_file).is_file():
            return folder
    raise SourceError(
        f"COCO images of {annotations} not found: {first_file} is in none of {', '.join(str(c) for c in candidates)}"
    )
