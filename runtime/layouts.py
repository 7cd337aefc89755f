"""Benchmark dataset layouts: GOT-10k, LaSOT, TrackingNet and UAV123, one reader each, shared by ``edgetrack eval``
and training (``distill.data.readers``), plus the OTB/VOT folders and videos of ``datasets``.

Layouts (``<root>`` is the path given):

- ``otb``: an OTB or VOT sequence folder, a folder of them or a video (``datasets.load_otb``).
- ``got10k``: ``<root>/list.txt`` naming one sequence folder per line (or ``<root>/<split>/list.txt``), each with
  ``00000001.jpg ...``, ``groundtruth.txt`` and optional ``absence.label`` (1 = absent) and ``cover.label``
  (0 = fully covered, counted as absent).
- ``lasot``: ``<root>/<class>/<class>-<n>/`` (or a single ``<class>`` folder as root) with ``img/00000001.jpg ...``,
  ``groundtruth.txt`` and optional ``full_occlusion.txt`` / ``out_of_view.txt`` (comma-separated 0/1 on one line);
  either flag makes a frame absent.
- ``trackingnet``: ``<root>/frames/<video>/0.jpg ...`` and ``<root>/anno/<video>.txt``, or the same under chunks
  ``<root>/TRAIN_<k>/`` and ``<root>/TEST/``.
- ``uav123``: ``<root>/anno/UAV123/<name>.txt`` and ``<root>/data_seq/UAV123/<folder>/000001.jpg ...``; the
  sequences in ``UAV123_RANGES`` are frame ranges of a shared folder, every other one is its folder whole; NaN rows
  mark an absent target.

Ground truth has one row per frame, except that GOT-10k and TrackingNet test sequences give only the first frame's
box: such a sequence is read with NaN rows after the first and ``scored=False``, so it can be tracked and its result
file written, but not scored. A first-row-only file is accepted in those two layouts only; anywhere else, or with
another row count, it is an error.

Frame paths are listed, never read, and kept as ``NumberedFrames`` (computed on demand) when they are numbered
contiguously, so millions of training frames hold no path object each. Every bad input is one ``SourceError`` line
naming the file; evaluation stops on it, training skips the sequence with that line as the reason.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import re
from collections.abc import Callable
from collections.abc import Sequence as PathSequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetrack.defaults import DATASET_LAYOUT, DATASET_LAYOUTS

from .datasets import Dataset, Sequence, load_otb, read_groundtruth
from .errors import SourceError
from .sources import IMAGE_SUFFIXES, natural_key

#: The ``layout`` values of ``load_layout`` (and ``edgetrack eval --layout``); ``auto`` detects the layout.
LAYOUTS = DATASET_LAYOUTS

#: UAV123's sequences that are frame ranges of a shared image folder: name -> (folder, first frame, last frame), both
#: inclusive, as in the UAV123 toolkit's ``configSeqs.m``. Every other sequence is its folder whole.
UAV123_RANGES = {
    "bird1_1": ("bird1", 1, 253),
    "bird1_2": ("bird1", 775, 1477),
    "bird1_3": ("bird1", 1573, 2437),
    "car1_1": ("car1", 1, 751),
    "car1_2": ("car1", 751, 1627),
    "car1_3": ("car1", 1627, 2629),
    "car6_1": ("car6", 1, 487),
    "car6_2": ("car6", 487, 1807),
    "car6_3": ("car6", 1807, 2953),
    "car6_4": ("car6", 2953, 3925),
    "car6_5": ("car6", 3925, 4861),
    "car8_1": ("car8", 1, 1357),
    "car8_2": ("car8", 1357, 2575),
    "car16_1": ("car16", 1, 415),
    "car16_2": ("car16", 415, 1993),
    "group1_1": ("group1", 1, 1333),
    "group1_2": ("group1", 1333, 2515),
    "group1_3": ("group1", 2515, 3925),
    "group1_4": ("group1", 3925, 4873),
    "group2_1": ("group2", 1, 907),
    "group2_2": ("group2", 907, 1771),
    "group2_3": ("group2", 1771, 2683),
    "group3_1": ("group3", 1, 1567),
    "group3_2": ("group3", 1567, 2827),
    "group3_3": ("group3", 2827, 4369),
    "group3_4": ("group3", 4369, 5527),
    "person2_1": ("person2", 1, 1189),
    "person2_2": ("person2", 1189, 2623),
    "person4_1": ("person4", 1, 1501),
    "person4_2": ("person4", 1501, 2743),
    "person5_1": ("person5", 1, 877),
    "person5_2": ("person5", 877, 2101),
    "person7_1": ("person7", 1, 1249),
    "person7_2": ("person7", 1249, 2065),
    "person8_1": ("person8", 1, 1075),
    "person8_2": ("person8", 1075, 1525),
    "person12_1": ("person12", 1, 601),
    "person12_2": ("person12", 601, 1621),
    "person14_1": ("person14", 1, 847),
    "person14_2": ("person14", 847, 1813),
    "person14_3": ("person14", 1813, 2923),
    "person17_1": ("person17", 1, 1501),
    "person17_2": ("person17", 1501, 2347),
    "person19_1": ("person19", 1, 1243),
    "person19_2": ("person19", 1243, 2791),
    "person19_3": ("person19", 2791, 4357),
    "truck4_1": ("truck4", 1, 577),
    "truck4_2": ("truck4", 577, 1261),
    "uav1_1": ("uav1", 1, 1555),
    "uav1_2": ("uav1", 1555, 2377),
    "uav1_3": ("uav1", 2473, 3469),
}

GOT10K_EXPECTED = "<root>/list.txt (or <root>/<split>/list.txt) naming folders with 00000001.jpg ... and groundtruth.txt"
LASOT_EXPECTED = "<root>/<class>/<class>-<n>/img/00000001.jpg ... and groundtruth.txt"
TRACKINGNET_EXPECTED = "<root>/frames/<video>/0.jpg ... and <root>/anno/<video>.txt, or both under <root>/TRAIN_<k> or <root>/TEST"
UAV123_EXPECTED = "<root>/anno/UAV123/<name>.txt and <root>/data_seq/UAV123/<name>/000001.jpg ..."

#: Files of a GOT-10k sequence folder that no other layout has (train and val; test folders have none).
GOT10K_OWN_FILES = ("meta_info.ini", "absence.label", "cover.label")

_NUMBERED = re.compile(r"(\d+)(\.\w+)")
_TRACKINGNET_CHUNK = re.compile(r"TRAIN_\d+|TEST")


# ------------------------------------------------------------------------------------------------ frame listing


@dataclass(frozen=True)
class NumberedFrames(PathSequence):
    """The paths ``folder / pattern.format(first + i)``, made when asked for. Millions of frames then hold no Python
    object each, which would cost gigabytes and be copied into every data-loader worker as reference counts change."""

    folder: Path
    pattern: str
    first: int
    count: int

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        index = operator.index(index)
        if not -self.count <= index < self.count:
            raise IndexError(f"frame {index} of {self.count} in {self.folder}")
        return self.folder / self.pattern.format(self.first + index % self.count)


def list_frames(folder: Path) -> PathSequence[Path]:
    """The image files of ``folder`` (``NumberedFrames`` when numbered contiguously); ``SourceError`` when none."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if is_image(e)]
    except OSError:
        names = []
    if not names:
        raise SourceError(f"no frames ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return frames_of(Path(folder), names)


def frames_of(folder: Path, names: list[str]) -> PathSequence[Path]:
    """``NumberedFrames`` when ``names`` are exactly first..first+n-1 with one width and suffix (every dataset here),
    else the paths in natural order."""
    match = _NUMBERED.fullmatch(min(names, key=lambda name: (len(name), name)))  # the smallest number, padded or not
    if match:
        digits, suffix = match.groups()
        # The width of the smallest number pads every name when it is zero-padded, and changes nothing when not.
        frames = NumberedFrames(folder, f"{{:0{len(digits)}d}}{suffix}", int(digits), len(names))
        if set(names) == {frames.pattern.format(frames.first + i) for i in range(len(names))}:
            return frames
    return tuple(sorted((folder / name for name in names), key=natural_key))


# DirEntry.is_dir/is_file answer from the directory listing itself, so listing costs no stat per file.
def entry_names(folder: Path, directories: bool) -> list[str]:
    """Names of the sub-folders (or else the files) of ``folder`` in natural order, hidden ones left out."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if not e.name.startswith(".") and e.is_dir() == directories]
    return sorted(names, key=natural_name)


def is_image(entry: os.DirEntry) -> bool:
    return os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file()


def natural_name(name: str) -> list:
    return natural_key(Path(name))


def read_flags(path: Path, count: int) -> np.ndarray | None:
    """The integer flags of ``path`` (comma, space or line separated), one per frame, or None when there is no such
    file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in re.split(r"[,\s]+", line.strip()):
            if token:
                try:
                    values.append(int(token))
                except ValueError:
                    raise SourceError(f"{path} line {number}: expected integer flags, got {token[:20]!r}") from None
    if len(values) != count:
        raise SourceError(f"{path} has {len(values)} flags for {count} frames; give one per frame")
    return np.array(values)


def _annotated(name: str, groundtruth: Path, frames: PathSequence[Path], first_row_only: bool) -> tuple[np.ndarray, bool]:
    """The boxes of ``groundtruth``, one per frame, and whether they can be scored: a file with only the first
    frame's box (``first_row_only`` layouts) is padded with NaN rows and cannot."""
    boxes = read_groundtruth(groundtruth)
    if len(boxes) == len(frames):
        return boxes, True
    if first_row_only and len(boxes) == 1:
        padded = np.full((len(frames), 4), np.nan)
        padded[0] = boxes[0]
        return padded, False
    raise SourceError(
        f"sequence {name}: ground truth {groundtruth} has {len(boxes)} rows but there are {len(frames)} frames in "
        f"{frames[0].parent}; give one row per frame"
    )


def _folder(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise SourceError(f"{what} folder {folder} not found")
    return folder


# ----------------------------------------------------------------------------------------------------- GOT-10k


def got10k_folder(root: Path, split: str | None = None) -> Path:
    """The GOT-10k folder that holds the sequences: ``<root>/<split>`` when ``split`` is given, else ``root`` when it
    has a list.txt, else its one sub-folder that has one."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"GOT-10k root {root} not found: expected {GOT10K_EXPECTED}")
    if split is not None:
        return _folder(root / split, "GOT-10k split")
    if (root / "list.txt").is_file():
        return root
    splits = [name for name in entry_names(root, directories=True) if (root / name / "list.txt").is_file()]
    if len(splits) > 1:
        raise SourceError(f"GOT-10k root {root} holds the splits {', '.join(splits)}: give one of them, e.g. {root / splits[0]}")
    if not splits:
        raise SourceError(f"no list.txt in GOT-10k root {root}: expected {GOT10K_EXPECTED}")
    return root / splits[0]


def got10k_names(folder: Path, require_list: bool = True) -> list[str]:
    """The sequences ``folder/list.txt`` names; without a list.txt every sub-folder unless ``require_list``."""
    listing = Path(folder) / "list.txt"
    if listing.is_file():
        text = listing.read_text(encoding="utf-8", errors="replace")
        names = [line.strip() for line in text.splitlines() if line.strip()]
    elif require_list:
        raise SourceError(f"no {listing}: expected {GOT10K_EXPECTED}")
    else:
        names = entry_names(folder, directories=True)
    if not names:
        raise SourceError(f"GOT-10k folder {folder} holds no sequences: expected {GOT10K_EXPECTED}")
    return names


def read_got10k_sequence(folder: Path) -> Sequence:
    """One GOT-10k sequence folder; a test sequence (first row only) is read unscored."""
    folder = _folder(Path(folder), "GOT-10k sequence")
    frames = list_frames(folder)
    boxes, scored = _annotated(folder.name, folder / "groundtruth.txt", frames, first_row_only=True)
    absent = np.zeros(len(frames), dtype=bool)
    absence = read_flags(folder / "absence.label", len(frames))
    cover = read_flags(folder / "cover.label", len(frames))
    if absence is not None:
        absent |= absence == 1
    if cover is not None:
        absent |= cover == 0
    return Sequence(folder.name, boxes, frame_paths=frames, absent=absent, scored=scored)


def read_got10k(root: Path, split: str | None = None) -> Dataset:
    folder = got10k_folder(root, split)
    return Dataset([read_got10k_sequence(folder / name) for name in got10k_names(folder)])


# ------------------------------------------------------------------------------------------------------- LaSOT


def lasot_folders(root: Path) -> list[Path]:
    """The sequence folders of a LaSOT root (``<class>/<class>-<n>``), or of a single class folder given as root."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"LaSOT root {root} not found: expected {LASOT_EXPECTED}")
    folders = _class_members(root)
    if not folders:
        folders = [root / c / s for c in entry_names(root, directories=True) for s in entry_names(root / c, directories=True)]
    if not folders:
        raise SourceError(f"LaSOT root {root} holds no sequences: expected {LASOT_EXPECTED}")
    return folders


def _class_members(folder: Path) -> list[Path]:
    """The sub-folders named ``<folder name>-<n>``: the sequences of a LaSOT class folder."""
    member = re.compile(re.escape(folder.name) + r"-\d+")
    return [folder / name for name in entry_names(folder, directories=True) if member.fullmatch(name)]


def read_lasot_sequence(folder: Path) -> Sequence:
    folder = _folder(Path(folder), "LaSOT sequence")
    frames = list_frames(folder / "img")
    boxes, _ = _annotated(folder.name, folder / "groundtruth.txt", frames, first_row_only=False)
    absent = np.zeros(len(frames), dtype=bool)
    for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
        flags = read_flags(folder / flag_file, len(frames))
        if flags is not None:
            absent |= flags != 0
    return Sequence(folder.name, boxes, frame_paths=frames, absent=absent)


def read_lasot(root: Path) -> Dataset:
    return Dataset([read_lasot_sequence(folder) for folder in lasot_folders(root)])


# ------------------------------------------------------------------------------------------------- TrackingNet


def trackingnet_chunks(root: Path) -> list[Path]:
    """``root`` when it holds ``frames/`` or ``anno/`` itself, else its ``TRAIN_<k>`` and ``TEST`` chunks."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"TrackingNet root {root} not found: expected {TRACKINGNET_EXPECTED}")
    if _is_trackingnet_chunk(root):
        return [root]
    chunks = [root / name for name in entry_names(root, directories=True) if _TRACKINGNET_CHUNK.fullmatch(name)]
    chunks = [chunk for chunk in chunks if _is_trackingnet_chunk(chunk)]
    if not chunks:
        raise SourceError(f"TrackingNet root {root} holds no frames/ and anno/ folders: expected {TRACKINGNET_EXPECTED}")
    return chunks


def _is_trackingnet_chunk(folder: Path) -> bool:
    return (folder / "anno").is_dir() or (folder / "frames").is_dir()


def trackingnet_videos(chunk: Path) -> list[str]:
    """The videos of a chunk: every ``anno/<video>.txt`` and every ``frames/<video>/`` folder, in natural order."""
    videos = set()
    for folder, directories in ((chunk / "anno", False), (chunk / "frames", True)):
        if folder.is_dir():
            names = entry_names(folder, directories)
            videos.update(names if directories else (n[: -len(".txt")] for n in names if n.endswith(".txt")))
    return sorted(videos, key=natural_name)


def read_trackingnet_sequence(chunk: Path, video: str) -> Sequence:
    """One TrackingNet video; a test video (first row only) is read unscored."""
    anno = Path(chunk) / "anno" / f"{video}.txt"
    if not anno.is_file():
        raise SourceError(f"missing annotation {anno} for the frames in {Path(chunk) / 'frames' / video}")
    frames = list_frames(Path(chunk) / "frames" / video)
    boxes, scored = _annotated(video, anno, frames, first_row_only=True)
    return Sequence(video, boxes, frame_paths=frames, scored=scored)


def read_trackingnet(root: Path) -> Dataset:
    return Dataset([read_trackingnet_sequence(chunk, video) for chunk in trackingnet_chunks(root) for video in trackingnet_videos(chunk)])


# ------------------------------------------------------------------------------------------------------ UAV123


def uav123_names(root: Path) -> list[str]:
    """The sequences of a UAV123 root: one per ``anno/UAV123/<name>.txt``, in natural order."""
    root = Path(root)
    anno = root / "anno" / "UAV123"
    if not root.is_dir():
        raise SourceError(f"UAV123 root {root} not found: expected {UAV123_EXPECTED}")
    if not anno.is_dir():
        raise SourceError(f"UAV123 annotation folder {anno} not found: expected {UAV123_EXPECTED}")
    names = [name[: -len(".txt")] for name in entry_names(anno, directories=False) if name.endswith(".txt")]
    if not names:
        raise SourceError(f"UAV123 annotation folder {anno} holds no <name>.txt: expected {UAV123_EXPECTED}")
    return names


def read_uav123_sequence(root: Path, name: str) -> Sequence:
    """UAV123 sequence ``name``: its range of a shared folder (``UAV123_RANGES``) or its folder whole."""
    folder_name, first, last = UAV123_RANGES.get(name, (name, None, None))
    folder = Path(root) / "data_seq" / "UAV123" / folder_name
    frames = list_frames(folder)
    if first is not None:
        if not (isinstance(frames, NumberedFrames) and frames.first <= first and last < frames.first + frames.count):
            raise SourceError(f"UAV123 sequence {name} is frames {first}-{last} of {folder}, which does not hold them all")
        frames = NumberedFrames(folder, frames.pattern, first, last - first + 1)
    boxes, _ = _annotated(name, Path(root) / "anno" / "UAV123" / f"{name}.txt", frames, first_row_only=False)
    return Sequence(name, boxes, frame_paths=frames)


def read_uav123(root: Path) -> Dataset:
    return Dataset([read_uav123_sequence(root, name) for name in uav123_names(root)])


# ------------------------------------------------------------------------------------------------ dispatching

READERS: dict[str, Callable[[Path], Dataset]] = {
    "got10k": read_got10k,
    "lasot": read_lasot,
    "trackingnet": read_trackingnet,
    "uav123": read_uav123,
}
#: What ``detect_layout`` looks for, for the error when it finds nothing.
LOOKED_FOR = (
    "nor a GOT-10k root (list.txt naming GOT-10k_* folders or folders with meta_info.ini), a LaSOT root (<class>/<class>-<n>/img/), "
    "a TrackingNet root (frames/ and anno/, or TRAIN_<k>/ or TEST/ with them) or a UAV123 root (anno/UAV123/ and data_seq/UAV123/)"
)


def detect_layout(path: Path) -> str:
    """The layout of ``path`` from its content; ``otb`` (sequence folders and videos) when no other one fits."""
    path = Path(path)
    if not path.is_dir():
        return "otb"
    if (path / "anno" / "UAV123").is_dir() and (path / "data_seq" / "UAV123").is_dir():
        return "uav123"
    if (path / "anno").is_dir() and (path / "frames").is_dir():
        return "trackingnet"
    children = [path / name for name in entry_names(path, directories=True)]
    if any(_TRACKINGNET_CHUNK.fullmatch(c.name) and (c / "anno").is_dir() and (c / "frames").is_dir() for c in children):
        return "trackingnet"
    if _is_got10k_split(path) or any(_is_got10k_split(c) for c in children):
        return "got10k"
    if _class_members(path) or any(_class_members(c) for c in children):
        return "lasot"
    return "otb"


def _is_got10k_split(folder: Path) -> bool:
    """A list.txt whose first sequence is named GOT-10k_... or has GOT-10k's own files: a VOT root has a list.txt too,
    and the test split's folders hold only frames and groundtruth.txt."""
    try:
        first = next(line.strip() for line in (folder / "list.txt").read_text(errors="replace").splitlines() if line.strip())
    except (OSError, StopIteration):
        return False
    return first.startswith("GOT-10k_") or any((folder / first / name).is_file() for name in GOT10K_OWN_FILES)


def load_layout(path: Path, groundtruth: Path | None = None, layout: str = DATASET_LAYOUT) -> Dataset:
    """Read ``path`` in ``layout`` (one of ``LAYOUTS``); ``auto`` detects it. ``groundtruth`` is for an OTB/VOT
    video or frame folder only. Two sequences of one name are an error: their result files would collide."""
    if layout not in LAYOUTS:
        raise SourceError(f"unknown dataset layout {layout!r}: give one of {', '.join(LAYOUTS)}")
    path = Path(path)
    detected = detect_layout(path) if layout == "auto" and groundtruth is None else layout
    if detected in ("auto", "otb"):
        return load_otb(path, groundtruth, LOOKED_FOR if layout == "auto" else "")
    if groundtruth is not None:
        raise SourceError(f"a ground-truth file is for a video or a single frame folder; a {layout} dataset carries its own annotations")
    dataset = dataclasses.replace(READERS[detected](path), layout=detected)
    _check_unique(dataset.sequences)
    return dataset


def _check_unique(sequences: list[Sequence]) -> None:
    seen: dict[str, Sequence] = {}
    for sequence in sequences:
        other = seen.setdefault(sequence.name, sequence)
        if other is not sequence:
            raise SourceError(
                f"two sequences are named {sequence.name} ({other.frame_paths[0].parent} and "
                f"{sequence.frame_paths[0].parent}); evaluate their folders one at a time"
            )
