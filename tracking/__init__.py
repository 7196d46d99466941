"""Point tracking with PIPs++: the product's API.

    from tracking import Tracker
    tracker = Tracker.from_checkpoint('./reference_model')
    tracks = tracker('video.mp4', [[0, 320.0, 180.0]]).tracks   # T,N,2 in video pixels

Modules: ``options`` (``TrackOptions`` and the ``INTERACTIVE`` / ``BENCHMARK`` presets),
``queries`` (reading, checking, grids, pixel scales), ``engine`` (the window schedule over
shared features), ``run`` (``track_points``: offline, any video and queries), ``stream``
(``TrackStream``: online), ``tracker`` (``Tracker``), ``model`` (``load_pips``),
``confidence`` (visibility and confidence from training-free signals) and ``outputs``
(the files a tracking run writes).
"""

from tracking.model import load_pips
from tracking.options import BENCHMARK, INTERACTIVE, TrackOptions
from tracking.run import Tracks, track_points
from tracking.stream import TrackStream
from tracking.tracker import Tracker

__all__ = ['BENCHMARK', 'INTERACTIVE', 'TrackOptions', 'TrackStream', 'Tracker', 'Tracks', 'load_pips', 'track_points']
