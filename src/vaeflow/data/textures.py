"""Grey-level texture patches cut from photographs bundled with scikit-image.

Source: ``skimage.data.brick/grass/gravel/camera/coins/moon()`` (uint8 2-D images,
shipped inside scikit-image; no download). Each image's rows are cut into three
horizontal bands (:func:`vaeflow.data.splits.band_bounds`): train patches come from
the top band on a ``stride`` grid, val and test patches from the middle and bottom
bands on a non-overlapping grid, so no val/test patch shares a pixel with a train patch.
The label of a patch is the index of its source image in ``images``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vaeflow.data.splits import band_bounds, check_fractions, grid_origins
from vaeflow.data.store import SPLITS, PreparedDataset, fill_options, int_option

NAME = "textures"
LEVELS = 256
IMAGES: tuple[str, ...] = ("brick", "grass", "gravel", "camera", "coins", "moon")
#: (height, width) of each photograph (checked when it is loaded), so split sizes are known without loading
IMAGE_SHAPES: dict[str, tuple[int, int]] = {
    "brick": (512, 512),
    "grass": (512, 512),
    "gravel": (512, 512),
    "camera": (512, 512),
    "coins": (303, 384),
    "moon": (512, 512),
}
DEFAULTS: dict[str, Any] = {
    "patch": 16,
    "stride": 8,
    "images": list(IMAGES),
    "val_fraction": 0.1,
    "test_fraction": 0.2,
}


def check_images(images: Any) -> list[str]:
    """Validate the ``images`` option: a non-empty list of distinct names from :data:`IMAGES`."""
    if isinstance(images, str) or not isinstance(images, (list, tuple)) or not images:
        raise ValueError(
            f"dataset {NAME!r}: option images must be a non-empty list of names from {', '.join(IMAGES)}; got "
            f"{images!r}"
        )
    unknown = [name for name in images if name not in IMAGES]
    if unknown:
        raise ValueError(
            f"dataset {NAME!r}: unknown image(s) {', '.join(map(repr, unknown))} in option images; "
            f"allowed: {', '.join(IMAGES)} (all bundled with scikit-image)"
        )
    if len(set(images)) != len(images):
        raise ValueError(f"dataset {NAME!r}: option images lists an image twice: {list(images)}")
    return list(images)


def load_image(name: str) -> np.ndarray:
    """The scikit-image photograph ``name`` as a uint8 2-D array."""
    import skimage.data  # deferred: keeps `import vaeflow.data` light

    check_images([name])
    image = getattr(skimage.data, name)()
    if image.dtype != np.uint8 or image.shape != IMAGE_SHAPES[name]:
        raise ValueError(
            f"skimage.data.{name}() returned {image.dtype} {image.shape}, expected a uint8 grey image "
            f"of shape {IMAGE_SHAPES[name]}; update IMAGE_SHAPES in {__name__}"
        )
    return image


def patch_origins(
    name: str, shape: tuple[int, int], patch: int, stride: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Top-left ``(row, col)`` of every train/val/test patch of an image of ``shape``.

    Train patches lie on a ``stride`` grid inside the train band, val/test patches on a
    ``patch`` grid (non-overlapping) inside their bands; no patch crosses a band boundary.
    """
    height, width = shape
    bands = band_bounds(height, val_fraction, test_fraction)
    origins = {}
    for split, (start, stop) in bands.items():
        if stop - start < patch or width < patch:
            raise ValueError(
                f"dataset {NAME!r}: the {split} band of image {name!r} is rows {start}..{stop} "
                f"({stop - start} x {width} pixels), too small for patch={patch}; "
                + (
                    "lower patch, or lower val_fraction and test_fraction (train gets the rows they leave)"
                    if split == "train"
                    else f"lower patch or raise {split}_fraction"
                )
            )
        origins[split] = grid_origins(start, stop, width, patch, stride if split == "train" else patch)
    return origins


def cut_patches(image: np.ndarray, origins: np.ndarray, patch: int) -> np.ndarray:
    """The ``patch×patch`` windows of ``image`` at ``origins`` as uint8 ``(n, 1, patch, patch)``."""
    windows = sliding_window_view(image, (patch, patch))
    return np.ascontiguousarray(windows[origins[:, 0], origins[:, 1]][:, None, :, :])


def _checked_options(options: dict[str, Any] | None) -> dict[str, Any]:
    opts = fill_options(NAME, options, DEFAULTS)
    opts["patch"] = int_option(NAME, "patch", opts["patch"], 2)
    opts["stride"] = int_option(NAME, "stride", opts["stride"], 1)
    opts["images"] = check_images(opts["images"])
    opts["val_fraction"], opts["test_fraction"] = check_fractions(NAME, opts["val_fraction"], opts["test_fraction"])
    return opts


def example_shape(options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one example, ``(1, patch, patch)``, known without loading the data."""
    patch = _checked_options(options)["patch"]
    return (1, patch, patch)


def split_sizes(options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits :func:`build` makes, known without loading the data."""
    opts = _checked_options(options)
    sizes = dict.fromkeys(SPLITS, 0)
    for name in opts["images"]:
        origins = patch_origins(
            name, IMAGE_SHAPES[name], opts["patch"], opts["stride"], opts["val_fraction"], opts["test_fraction"]
        )
        for split, found in origins.items():
            sizes[split] += len(found)
    return sizes


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """Patches from disjoint row bands of each image; each split is shuffled with ``seed``."""
    opts = _checked_options(options)
    patch, stride, images = opts["patch"], opts["stride"], opts["images"]
    val_fraction, test_fraction = opts["val_fraction"], opts["test_fraction"]

    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    labels: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for index, name in enumerate(images):
        image = load_image(name)
        for split, origins in patch_origins(name, image.shape, patch, stride, val_fraction, test_fraction).items():
            parts[split].append(cut_patches(image, origins, patch))
            labels[split].append(np.full(len(origins), index, dtype=np.int64))

    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, y = np.concatenate(parts[split]), np.concatenate(labels[split])
        order = rng.permutation(len(x))
        arrays[split], arrays[f"{split}_labels"] = x[order], y[order]

    import skimage

    return PreparedDataset(
        name=NAME,
        levels=LEVELS,
        **arrays,
        options=opts,
        seed=int(seed),
        source=(
            f"scikit-image {skimage.__version__}: skimage.data.{'(), '.join(images)}() "
            f"({patch}x{patch} patches from disjoint row bands)"
        ),
    )
