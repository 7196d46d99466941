"""torch.hub entry point: a ready PIPs++ tracker in one line.

    tracker = torch.hub.load('<owner>/<repo>', 'pips2', pretrained=True)        # from GitHub
    tracker = torch.hub.load('/path/to/this/repo', 'pips2', source='local')     # a local copy
    tracks = tracker('video.mp4', [[0, 320.0, 180.0]]).tracks                    # T,N,2 pixels

The reference checkpoint is downloaded once into torch hub's cache
(``tracking/reference.py``); ``pretrained=False`` gives untrained weights.
"""

from tracking import Tracker, load_pips
from tracking.reference import cached_reference_model

dependencies = ['torch', 'numpy', 'av', 'cv2', 'tqdm']  # what importing the tracker needs


def pips2(pretrained=True, device=None, **settings):
    """A ``tracking.Tracker`` with the reference weights (``pretrained``) or untrained ones,
    on ``device`` (default: CUDA when available). ``settings`` change the interactive
    options (``S=16``, ``iters=8``, ``image_size=(384, 512)``, ``precision='bf16'``, ...).
    Without network and no cached checkpoint it raises ``CheckpointError`` saying what to do."""
    init_dir = cached_reference_model() if pretrained else ''
    return Tracker(load_pips(init_dir, device), **settings)
