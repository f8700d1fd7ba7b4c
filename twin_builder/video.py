"""Video input: find the videos among the inputs, decode them once, split shots and windows.

Inputs are video files (anything OpenCV's FFmpeg backend decodes), folders of videos, and folders
of frames. A folder is a *frame folder* when it directly holds image files (its frames are the
images sorted by file name); any other folder is scanned recursively for video files.

A video that cannot give a single tracking window raises :class:`VideoInputError`, which names
the file and carries a machine-readable :class:`SkipReason`; the builder skips such a video and
lists it in the store manifest.

File names need not be valid UTF-8 (Linux allows any bytes; Python keeps the undecodable ones as
lone surrogates). OpenCV crashes on such a name, so frames are decoded from bytes read by Python and
videos are opened through a temporary link with an ASCII name.
"""

from __future__ import annotations

import enum
import hashlib
import os
import queue
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".avi",
        ".mov",
        ".mkv",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".ogv",
        ".3gp",
        ".ts",
    }
)

# Shot cut: mean |grey_t - grey_{t-1}| (grey levels 0-255) above this. bikes.mp4 peaks at 84 at its
# cuts against a median of 8 (MI_TRACKING_DATA.md section 2).
DEFAULT_CUT_THRESHOLD = 30.0
# All-black: at least 99% of the pixels of every BRIGHTNESS_SAMPLE_EVERY-th frame are at most this
# grey level.
BLACK_LEVEL = 12
BRIGHTNESS_SAMPLE_EVERY = 4
# Static: in no pair of consecutive frames do more than STATIC_CHANGED_FRACTION of the pixels
# change by more than STATIC_PIXEL_CHANGE grey levels (compression noise stays below both).
STATIC_PIXEL_CHANGE = 12
STATIC_CHANGED_FRACTION = 1e-3
# Bytes of frames decoded ahead of the analysis in a thread (at least one frame): 24 frames of
# 1280 x 720, a whole 120-frame 176 x 144 clip. Small frames decode faster than a window is
# analysed, so the next window is decoded meanwhile (8 frames ahead left that for afterwards).
DECODE_AHEAD_BYTES = 64 << 20
# The lone surrogates by which Python's file-system decoding keeps bytes that are not UTF-8.
UNDECODABLE_BYTE = re.compile("[\udc80-\udcff]")


class SkipReason(str, enum.Enum):
    """Why a video gives no tracking window (recorded in the manifest as the value)."""

    UNREADABLE = "unreadable"
    CORRUPT = "corrupt"
    EMPTY = "empty"
    ONE_FRAME = "one_frame"
    TOO_FEW_FRAMES = "too_few_frames"
    STATIC = "static"
    ALL_BLACK = "all_black"
    TOO_SMALL = "too_small"


class VideoInputError(Exception):
    """A video that cannot be used, with the file and the reason.

    Attributes:
        path: the offending video file or frame folder.
        reason: the machine-readable reason.
        detail: a human-readable explanation.
    """

    def __init__(self, path: Path, reason: SkipReason, detail: str) -> None:
        super().__init__(f"{path}: {reason.value}: {detail}")
        self.path = path
        self.reason = reason
        self.detail = detail


class InputDiscoveryError(Exception):
    """An input path given on the command line that does not exist or holds no video at all."""


@dataclass(frozen=True)
class VideoSource:
    """One input video before decoding.

    Attributes:
        path: the video file, or the frame folder.
        is_frame_folder: True when ``path`` is a folder of frames.
        name: the name shown to users and written to the manifest (the path as given, see
            :func:`printable_path`).
        size_bytes: file size (sum over frames for a frame folder), 0 when unreadable.
        sha256: hex digest of the content (of the sorted frame names and bytes for a frame folder);
            of the path text when the content cannot be read.
        readable: False when the content could not be read (the decoder will report why).
    """

    path: Path
    is_frame_folder: bool
    name: str
    size_bytes: int
    sha256: str
    readable: bool

    @property
    def video_id(self) -> str:
        """The id used in the store: ``<stem>-<first 8 hex digits of sha256>``.

        Bytes of the stem that are not UTF-8 become ``_`` (the hash keeps the id unique), so the id
        can be written into text files and file names.
        """
        return f"{UNDECODABLE_BYTE.sub('_', self.path.stem)}-{self.sha256[:8]}"


@dataclass
class WindowFrames:
    """The frames of one tracking window.

    Attributes:
        start: index of the window's first frame in the video.
        frames: T (H, W, 3) uint8 BGR frames, downscaled so that max(H, W) <= max_side.
        grays: T (H, W) uint8 grey versions of ``frames``.
    """

    start: int
    frames: list[np.ndarray]
    grays: list[np.ndarray]


def _hash_files(paths: list[Path], with_names: bool) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in paths:
        if with_names:
            digest.update(os.fsencode(path.name) + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def printable_path(path: Path) -> str:
    """``path`` as text that can be printed and written anywhere: bytes that are not UTF-8 are
    shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def describe_source(path: Path, name: str | None = None) -> VideoSource:
    """Hashes a video file or frame folder into a :class:`VideoSource` (reads it in full once).

    Args:
        path: a video file or a frame folder.
        name: the name to show; ``str(path)`` when None.

    Returns:
        The source record; ``readable`` is False when the content could not be read.
    """
    is_frame_folder = path.is_dir()
    try:
        files = frame_files(path) if is_frame_folder else [path]
        sha256, size = _hash_files(files, with_names=is_frame_folder)
        readable = True
    except OSError:
        sha256, size, readable = hashlib.sha256(os.fsencode(path)).hexdigest(), 0, False
    return VideoSource(path, is_frame_folder, name or printable_path(path), size, sha256, readable)


def frame_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by file name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def discover_inputs(inputs: list[Path], exclude: Sequence[Path] = ()) -> list[VideoSource]:
    """Expands the command-line inputs into video sources, sorted by video id.

    Inputs with the same content (the same file given twice, or copies under other names) are
    built once, under the first video id in sorted order.

    Args:
        inputs: video files, folders of videos (searched recursively) and folders of frames.
        exclude: folders never read, with everything under them (the store being built, which may
            lie inside an input folder).

    Returns:
        One :class:`VideoSource` per distinct video content.

    Raises:
        InputDiscoveryError: an input does not exist, or a folder holds neither frames nor videos.
    """
    excluded = [folder.resolve() for folder in exclude]

    def kept(path: Path) -> bool:
        resolved = path.resolve()
        return not any(resolved.is_relative_to(folder) for folder in excluded)

    sources: list[VideoSource] = []
    for given in inputs:
        if not given.exists():
            raise InputDiscoveryError(f"{given}: no such file or folder")
        if not kept(given):
            raise InputDiscoveryError(f"{given}: lies inside the output folder, never read")
        if given.is_file() or frame_files(given):
            candidates = [given]
        else:
            candidates = sorted(
                p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
            )
            candidates += sorted(p for p in given.rglob("*") if p.is_dir() and frame_files(p))
            if not candidates:
                raise InputDiscoveryError(f"{given}: folder holds no frames and no video files")
        sources += [describe_source(path) for path in candidates if kept(path)]
    by_content: dict[str, VideoSource] = {}
    for source in sorted(sources, key=lambda s: s.video_id):
        by_content.setdefault(source.sha256, source)
    return sorted(by_content.values(), key=lambda s: s.video_id)


def _downscale(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    height, width = frame.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return frame, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def _read_image(path: Path) -> np.ndarray | None:
    """Decodes an image file (any file name); None when it is not a decodable image."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


@contextmanager
def _opencv_name(path: Path) -> Iterator[str]:
    """A name under which OpenCV can open ``path``: its own, or a temporary ASCII-named link to it
    when the name is not valid UTF-8 (OpenCV crashes on such a name)."""
    if not UNDECODABLE_BYTE.search(str(path)):
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="twin-builder-") as folder:
        link = Path(folder) / f"video{UNDECODABLE_BYTE.sub('_', path.suffix)}"
        link.symlink_to(path.absolute())
        yield str(link)


def _iter_bgr_frames(source: VideoSource) -> Iterator[np.ndarray]:
    """Yields the BGR frames of a source; raises VideoInputError when nothing can be decoded."""
    if source.is_frame_folder:
        for path in frame_files(source.path):
            frame = _read_image(path)
            if frame is None:
                raise VideoInputError(
                    source.path, SkipReason.CORRUPT, f"frame {path.name} does not decode"
                )
            yield frame
        return
    with _opencv_name(source.path) as name:
        capture = cv2.VideoCapture(name)
        if not capture.isOpened():
            raise VideoInputError(
                source.path, SkipReason.CORRUPT, "OpenCV/FFmpeg cannot open it as a video"
            )
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield frame
        finally:
            capture.release()


def decode_ahead(
    frames: Iterator[np.ndarray], max_bytes: int = DECODE_AHEAD_BYTES
) -> Iterator[np.ndarray]:
    """Runs ``frames`` in a thread, up to ``max_bytes`` of frames ahead of the consumer.

    OpenCV's decoding and the tracking and MI kernels release the GIL, so the next frames are
    decoded while the current window is analysed; the frames and their order are unchanged.
    An exception of ``frames`` is raised here, where the frame it stopped at would have come.

    Args:
        frames: the frame iterator (run in the thread after its first frame, which sizes the
            queue).
        max_bytes: most bytes of frames decoded ahead, counted in frames of the first one's size
            (at least one frame).

    Yields:
        The frames of ``frames``, in order.
    """
    first = next(frames, None)
    if first is None:
        return
    ready: queue.Queue = queue.Queue(maxsize=max(1, max_bytes // first.nbytes))
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        ready.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item: object = end
        except BaseException as error:  # handed to the consumer, raised there
            item = error
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="decode-ahead", daemon=True)
    thread.start()
    try:
        yield first
        while (item := ready.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(frames, "close", None)
        if close is not None:
            close()


class VideoReader:
    """Decodes a video once, front to back, and hands out its tracking windows as soon as their
    frames are in, keeping only the frames a pending window still needs (memory stays at about one
    window whatever the video's length).

    Shots are cut where the mean absolute grey-level difference between consecutive frames
    exceeds ``cut_threshold``; windows of ``window`` frames start every ``stride`` frames from each
    shot's first frame and never cross a cut. While decoding, the reader also gathers what
    :meth:`check_content` needs (frame count, brightness, any motion at all).

    Args:
        source: the video.
        max_side: longest side of the processed frames in pixels; None keeps the original size.
        cut_threshold: shot cut threshold in grey levels (0-255).

    Attributes (filled while decoding):
        frame_count: frames decoded so far.
        shots: finished shots as half-open frame ranges (the last one is added at the end).
        scale: processed pixels per original pixel (<= 1).
        original_size: (width, height) of the original frames in pixels.
        size: (width, height) of the processed frames in pixels.
    """

    def __init__(
        self,
        source: VideoSource,
        max_side: int | None,
        cut_threshold: float = DEFAULT_CUT_THRESHOLD,
    ) -> None:
        self.source = source
        self.max_side = max_side
        self.cut_threshold = cut_threshold
        self.frame_count = 0
        self.shots: list[tuple[int, int]] = []
        self.scale = 1.0
        self.original_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        self._windows_given = 0
        self._bright_pixels = 0
        self._sampled_pixels = 0
        self._moving = False

    def frames(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yields ``(index, bgr, gray)`` for every frame, downscaled, updating the statistics.

        Raises:
            VideoInputError: unreadable, empty (0 bytes), corrupt (cannot be opened, a frame that
                does not decode, frames of differing sizes).
        """
        source = self.source
        if not source.readable:
            raise VideoInputError(source.path, SkipReason.UNREADABLE, "cannot read the file")
        if source.size_bytes == 0:
            raise VideoInputError(
                source.path, SkipReason.EMPTY, "no content (0 bytes or no frames)"
            )
        previous = None
        for bgr in decode_ahead(_iter_bgr_frames(source)):
            size = (bgr.shape[1], bgr.shape[0])
            if self.original_size is None:
                self.original_size = size
            elif size != self.original_size:
                raise VideoInputError(
                    source.path,
                    SkipReason.CORRUPT,
                    f"frame {self.frame_count} is {size}, the first is {self.original_size}",
                )
            small, self.scale = _downscale(bgr, self.max_side)
            gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            self.size = (gray.shape[1], gray.shape[0])
            if self.frame_count % BRIGHTNESS_SAMPLE_EVERY == 0:
                self._bright_pixels += np.count_nonzero(gray > BLACK_LEVEL)
                self._sampled_pixels += gray.size
            if previous is not None and not self._moving:
                changed = np.count_nonzero(cv2.absdiff(gray, previous) > STATIC_PIXEL_CHANGE)
                self._moving = changed > STATIC_CHANGED_FRACTION * gray.size
            previous = gray
            yield self.frame_count, small, gray
            self.frame_count += 1

    def windows(self, window: int, stride: int) -> Iterator[WindowFrames]:
        """Yields the video's tracking windows in order, each as soon as its last frame is decoded.

        Args:
            window: frames per window (T).
            stride: frames between consecutive window starts in a shot.

        Yields:
            :class:`WindowFrames`.

        Raises:
            VideoInputError: as :meth:`frames`.
        """
        kept_frames: list[np.ndarray] = []
        kept_grays: list[np.ndarray] = []
        kept_from = shot_start = next_start = 0
        previous = None
        for index, frame, gray in self.frames():
            # Mean absolute difference as an L1 norm: no difference image and no numpy float
            # reduction, a twentieth of the time of absdiff().mean().
            if (
                previous is not None
                and cv2.norm(gray, previous, cv2.NORM_L1) / gray.size > self.cut_threshold
            ):
                self.shots.append((shot_start, index))
                kept_frames, kept_grays = [], []
                shot_start = next_start = index
            previous = gray
            if index < next_start:
                continue  # between windows (stride > window): never needed
            if not kept_grays:
                kept_from = index
            kept_frames.append(frame)
            kept_grays.append(gray)
            while next_start + window <= index + 1:
                offset = next_start - kept_from
                yield WindowFrames(
                    next_start,
                    kept_frames[offset : offset + window],
                    kept_grays[offset : offset + window],
                )
                self._windows_given += 1
                next_start += stride
                # Frames before the next window's start are never needed again.
                drop = min(next_start - kept_from, len(kept_grays))
                del kept_frames[:drop], kept_grays[:drop]
                kept_from += drop
        if self.frame_count:
            self.shots.append((shot_start, self.frame_count))

    def check_content(self, window: int) -> None:
        """Rejects a video, once read, that could not give useful tracking windows.

        Args:
            window: frames per window (for the message).

        Raises:
            VideoInputError: no frame decoded (empty or corrupt), a single frame, all black,
                static, or no shot long enough for one window.
        """
        path = self.source.path
        if self.frame_count == 0:
            reason = SkipReason.EMPTY if self.source.is_frame_folder else SkipReason.CORRUPT
            raise VideoInputError(path, reason, "no frame could be decoded")
        if self.frame_count == 1:
            raise VideoInputError(path, SkipReason.ONE_FRAME, "a single frame has no motion")
        if self._bright_pixels <= 0.01 * self._sampled_pixels:
            raise VideoInputError(
                path, SkipReason.ALL_BLACK, f"99% of pixels are <= {BLACK_LEVEL} grey levels"
            )
        if not self._moving:
            raise VideoInputError(path, SkipReason.STATIC, "no pixel changes between frames")
        if self._windows_given == 0:
            raise VideoInputError(
                path,
                SkipReason.TOO_FEW_FRAMES,
                f"{self.frame_count} frames, no shot holds a window of {window} frames",
            )
