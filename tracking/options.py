"""How PIPs++ tracks: one set of options, and the two presets every entry point uses.

``BENCHMARK`` is the original evaluation schedule that defines the published numbers
(``test_on_*.py``): windows of 128 frames, the last one shifted back to end on the last
frame, no beautify. ``INTERACTIVE`` is what a person tracking a video gets (``Tracker``,
``TrackStream``, ``demo.py``, ``track_videos.py``): the original demo's windows of 48
frames with beautify, and a shorter last window so that no frame is tracked twice (as
online tracking must). Any field can be changed with ``options.replace(S=16)``.

``confidence`` adds a visibility and a confidence to every point and frame from signals
the engine computes on the features it already shares (``tracking.confidence``); it never
changes the tracks. ``BENCHMARK`` leaves it off (the test scripts that report predicted
visibility turn it on); ``consistency`` adds the forward-backward check to it.
"""

import dataclasses
import math

from nets.pips2 import MIN_SIZE
from nets.precision import check_precision
from utils.checks import check_choice, check_count, check_flag, check_size
from utils.errors import SettingsError

LAST_WINDOW_RULES = ('shift', 'short')
OUT_OF_MEMORY = 'out of GPU memory (try a smaller --image_size, --S or fewer queries)'


@dataclasses.dataclass(frozen=True)
class TrackOptions:
    """The settings that decide the tracks (checked when made; a bad one raises
    ``SettingsError`` naming it)."""

    S: int = 48  # frames per window (windows overlap by one frame)
    iters: int = 16  # refinement iterations per window
    image_size: tuple | None = (512, 896)  # H, W the model runs at; None: the video's own size
    beautify: bool = True  # halve the updates of the last quarter of the iterations
    last_window: str = 'short'  # 'shift': the original's last window, shifted back; 'short': nothing twice
    precision: str = 'fp32'  # 'bf16' / 'fp16': autocast of the matrix products (nets/precision.py)
    point_chunk: int = 2048  # points per pass through a window (bounds memory for dense grids)
    spill_dir: str | None = None  # folder of the temporary feature file (None: the system's)
    confidence: bool = True  # visibility and confidence per point and frame (appearance, correlation peak)
    consistency: bool = True  # with confidence: the forward-backward check (every frame's features spilled)

    def __post_init__(self):
        check_count('S', self.S, minimum=2)
        check_count('iters', self.iters, minimum=1)
        check_count('point_chunk', self.point_chunk, minimum=1)
        for name in ('beautify', 'confidence', 'consistency'):
            object.__setattr__(self, name, check_flag(name, getattr(self, name)))
        if self.image_size is not None:
            object.__setattr__(self, 'image_size', check_size('image_size', self.image_size, minimum=MIN_SIZE))
        check_choice('last_window', self.last_window, LAST_WINDOW_RULES)
        try:
            check_precision(self.precision)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc

    def replace(self, **changes):
        """A copy with ``changes`` (checked)."""
        return dataclasses.replace(self, **changes)

    def model_size(self, video_size):
        """(H, W) the model runs at for a video of ``video_size`` (H, W): ``image_size``, or
        the video's own size when that is None; SettingsError when the model cannot run at
        it (each side at least ``MIN_SIZE``), so that it is found before any tracking."""
        H, W = video_size
        if self.image_size is not None:
            return self.image_size
        if H < MIN_SIZE or W < MIN_SIZE:
            scale = MIN_SIZE / max(min(H, W), 1)
            raise SettingsError(f'the video is {W}x{H} but the model runs on frames of at least {MIN_SIZE}x{MIN_SIZE} '
                                "and image_size=None keeps the video's size: set image_size (--image_size=H,W) to "
                                f'resize the frames, e.g. {math.ceil(H * scale)},{math.ceil(W * scale)}')
        return H, W


INTERACTIVE = TrackOptions()
BENCHMARK = TrackOptions(S=128, iters=16, image_size=(512, 896), beautify=False, last_window='shift',
                         confidence=False)
