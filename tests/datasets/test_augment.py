"""The photometric recipe: albumentations 2.x drawing the original's 1.x distributions."""

import albumentations as A
import numpy as np

from datasets import augment


def one_transform(transform, seed):
    """A ReplayCompose of just ``transform`` (always applied), seeded."""
    compose = A.ReplayCompose([transform], p=1.0)
    augment.sample_rng(seed, 0, compose)
    return compose


def test_noise_variance_is_uniform_in_10_to_50():
    flat = np.full((64, 64, 3), 128, np.uint8)
    compose = one_transform(augment.VarianceGaussNoise(p=1.0), seed=0)
    variances = np.array([(compose(image=flat)['image'].astype(float) - 128).var() for _ in range(400)])
    assert variances.min() > 9 and variances.max() < 52
    # uniform variance: a quarter below 20; a uniform standard deviation (2.x's way) would put a third there
    assert abs(np.mean(variances < 20) - 0.25) < 0.05 and abs(variances.mean() - 30) < 1.5


def test_the_noise_pattern_repeats_on_every_frame():
    frames = [np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 140, np.uint8)]
    compose = one_transform(augment.VarianceGaussNoise(p=1.0), seed=1)
    first, second = augment.augment_video(compose, frames)
    noise = first.astype(int) - 100
    assert noise.std() > 2 and (second.astype(int) - 140 == noise).all()


def test_motion_blur_kernels_are_1x_lines():
    blur = augment.LineMotionBlur(blur_limit=(3, 7), p=1.0)
    one_transform(blur, seed=2)
    sizes = set()
    for _ in range(300):
        kernel = blur.get_params()['kernel']
        size = len(kernel)
        sizes.add(size)
        cells = kernel[kernel > 0]
        assert kernel.shape == (size, size) and np.isclose(kernel.sum(), 1)
        assert np.allclose(cells, cells[0])  # a one-pixel line of equal weights
        ys, xs = np.nonzero(kernel)
        assert len(cells) == max(np.ptp(xs), np.ptp(ys)) + 1  # from one end to the other, no gaps
    assert sizes == {3, 5, 7}


def test_recipe_keeps_the_originals_ranges():
    transforms = augment.color_augmenter().transforms
    recipe = {type(t).__name__: t for t in transforms}
    blurs = {type(t).__name__: t for t in transforms[1].transforms}
    assert isinstance(recipe['VarianceGaussNoise'], A.GaussNoise) and recipe['VarianceGaussNoise'].p == 0.2
    assert blurs['LineMotionBlur'].blur_limit == (3, 7) and blurs['MedianBlur'].blur_limit == (3, 3)
    assert recipe['ImageCompression'].quality_range == (50, 100)
    assert recipe['RGBShift'].r_shift_limit == (-20, 20) and recipe['HueSaturationValue'].sat_shift_limit == (-30, 30)


def test_bgr_pass_treats_red_as_blue():
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 255
    gray = augment.augment_video_bgr(A.ReplayCompose([A.ToGray(p=1.0)]), red)
    assert gray.shape == red.shape and abs(int(gray[0, 0, 0, 0]) - round(0.114 * 255)) <= 1
