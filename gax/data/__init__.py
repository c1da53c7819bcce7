"""Input data as random-access batch sources.

A source maps a step number to that step's batch, `get(step) -> [n_critic, B, *shape]`,
deterministically from its seed. That makes resuming exact (the restored step fetches the
same batch an uninterrupted run would) and lets the loop prefetch freely.

Labels (for conditional GANs, `gax.models` `conditioning`; ganhacks 12: use labels if you have
them): every source takes `labels: bool = False`. With labels on, `get(step)` returns a dict
`{"x": [n_critic, B, *shape], "y": int32 [n_critic, B]}` whose `y` holds each example's class
in `[0, num_classes)`: the digit for `digits`, the mode index for `ring` and `grid`, the
array named by `labels_key` for `array`. `source.num_classes` is the number of classes (0
with labels off, when `get` returns the bare array exactly as without the option).

Images are kept as uint8 `[N, H, W, C]` on the host and in transit; the train step scales
each batch to [-1, 1] on the device (`gax.steps.to_model_input`), so a batch moves 4x fewer
bytes than float32 would.

Sources registered in `DATASETS`:
  ring:   8 Gaussians on a circle of radius 2, std 0.02 (Metz et al. 2017, Unrolled GAN).
  grid:   25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05 (Lin et al. 2018, PacGAN).
  digits: the UCI handwritten digits shipped inside scikit-learn (1797 real 8x8 images with
          17 grey levels), optionally resized; needs no network. Labels: the digit, 10 classes.
  array:  the user's own uint8 images from a local `.npy` / `.npz` file (labels: an integer
          array of the `.npz`, named by `labels_key`).
  folder: the user's own image files (png, jpg, ...) under a directory, decoded with PIL to
          RGB or grey, optionally center-cropped and resized; labels: one subdirectory per
          class (sorted names). `cache` keeps the decoded array in a `.npz` beside it.
  tfds:   a TFDS dataset by name (`dataset="mnist"`, `fashion_mnist`, `cifar10`, `celeb_a`,
          or one written by `prepare_tfds_from_arrays` / `prepare_tfds_from_folder`) read
          from a local, already prepared `data_dir`. Never downloads: a missing dataset is a
          `FileNotFoundError` that says how to prepare it on a machine with network access.
  stacked_digits: three digits stacked as RGB channels, 1000 modes (the stacked-MNIST
          protocol of Metz et al. 2017 on the sklearn digits), built from the seed; labels
          `100 d_R + 10 d_G + d_B`. `gax.metrics.stacked` counts the modes a generator covers.

`array`, `folder` and `tfds` load the whole split once into host memory as uint8 (N * H * W *
C bytes: MNIST 47 MB, CIFAR-10 154 MB, CelebA train at 64x64 2.0 GB, at its full 218x178 19 GB;
`max_examples` or a TFDS split slice such as `"train[:50000]"` caps it) and draw batches from
it with `ArraySource`, so batches are random access and resuming is exact. `benchmark_source`
measures how fast a source feeds the device.

The package's modules, by what they hold: `core` (the `DATASETS` registry and shared checks),
`mixtures` (ring, grid), `arrays` (`ArraySource` and the user's arrays), `digits` (sklearn's
digits and stacked digits), `mnist` (real MNIST and Stacked MNIST), `files` (folders of
images), `tfds` (TFDS datasets read into memory, and writing local ones), `stream` (TFDS
array_record datasets streamed through Grain, for data larger than host memory) and `pipeline`
(prefetch, throughput). Every public name is also importable from `gax.data`.
"""

from gax.data.core import (LOADERS, REFERENCE_SIZE, STREAM_DEFAULTS, streams, DATASETS, Batch,
                           labelled, check_images, check_labels)
from gax.data.mixtures import MixtureSource, ring_centers, grid_centers, ring, grid
from gax.data.arrays import (
    ArraySource, resize_images, class_fraction, load_array_images, load_array_labels, array,
    fit_image, fit_array)
from gax.data.digits import (
    load_digits_images, DIGITS_CLASSES, digits, STACKED_DIGITS_MODES, stacked_digits_images,
    stack_triples, stacked_digits)
from gax.data.mnist import (
    MNIST_PACKAGE_FILE, MNIST_CLASSES, MNIST_SPLITS, MNIST_TRAIN_PER_CLASS, mnist_file,
    load_mnist_csv, mnist_split, fit_mnist, load_mnist, mnist, STACKED_MNIST_MODES,
    stacked_mnist_images, stacked_mnist)
from gax.data.files import (IMAGE_EXTENSIONS, list_image_files, check_channels,
                            load_folder_images, folder)
from gax.data.tfds import (
    tfds_prepare_instructions, tfds_builder, raw_records, check_tfds_image_feature,
    tfds_label_classes, load_tfds_images, tfds_dataset, prepare_tfds_from_arrays,
    prepare_tfds_from_folder)
from gax.data.stream import GrainSource, tfds_grain, folder_grain
from gax.data.pipeline import benchmark_source, fetch_size, prefetch

__all__ = [
    "DATASETS", "Batch", "labelled", "check_images", "check_labels", "MixtureSource",
    "ring_centers", "grid_centers", "ring", "grid", "ArraySource", "resize_images",
    "class_fraction", "load_array_images", "load_array_labels", "array", "fit_image", "fit_array",
    "load_digits_images", "DIGITS_CLASSES", "digits", "STACKED_DIGITS_MODES",
    "stacked_digits_images", "stack_triples", "stacked_digits", "MNIST_PACKAGE_FILE",
    "MNIST_CLASSES", "MNIST_SPLITS", "MNIST_TRAIN_PER_CLASS", "mnist_file", "load_mnist_csv",
    "mnist_split", "fit_mnist", "load_mnist", "mnist", "STACKED_MNIST_MODES",
    "stacked_mnist_images", "stacked_mnist", "IMAGE_EXTENSIONS", "list_image_files",
    "load_folder_images", "folder", "tfds_prepare_instructions", "tfds_builder",
    "load_tfds_images", "tfds_dataset", "prepare_tfds_from_arrays", "prepare_tfds_from_folder",
    "check_channels", "raw_records", "STREAM_DEFAULTS", "streams", "LOADERS",
    "check_tfds_image_feature", "tfds_label_classes", "REFERENCE_SIZE", "GrainSource",
    "tfds_grain", "folder_grain",
    "benchmark_source", "fetch_size", "prefetch",
]
