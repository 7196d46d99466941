"""What the dataset loaders share: their error type and frame reading."""

import cv2


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or not in the expected form."""


def read_rgb(path):
    """One image file as H,W,3 uint8 RGB; DatasetError naming the file if unreadable."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f'{path}: missing or not a readable image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
