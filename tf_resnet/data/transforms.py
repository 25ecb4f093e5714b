"""The paper's image transforms, as TF ops on single images.

(About 650 lines, kept in one module: the training and test views share
the windows and the mean rule below, and are checked against each other.)

Training (section 3.4 for ImageNet, section 4.2 for CIFAR-10) draws every
random choice from a stateless seed, so an example's augmentation depends on
the run's seed and the example's position in the input order only, never on
threading or on how many replicas share the batch.

Testing (section 3.4): a single centre crop; the standard 10-crop; and
multi-scale fully-convolutional views, the whole image with its shorter side
at each of several scales.

Images enter as uint8 [H, W, 3] (or encoded JPEG/PNG bytes, decoded here with
a fused decode-and-crop for JPEGs when only a window is needed) and leave as
float32, mean subtracted by one rule in every mode and in the export:

* The per-pixel mean image (`stats`: the average of the training set's
  224x224 centre crops; CIFAR's 32x32 images) belongs to a crop's frame.
  Every crop subtracts it pixel for pixel, never resized: training crops,
  the centre crop, each of the ten crops, and mirrored crops (unmirrored,
  like a training crop of the mirrored image). So the 10-crop's centre view
  is the centre view. CIFAR's training view takes it off the 32x32 image
  before padding, cropping and flipping (section 4.2).
* A multi-scale view is the whole image, not a crop, and the network slides
  over it: it subtracts the mean image's average colour everywhere (a
  stretched crop-sized mean would give the image's borders the mean of the
  crops' centres).
"""

from typing import Callable, NamedTuple, Optional, Sequence

import tensorflow as tf

from tf_resnet import families

# The paper's choices.
IMAGENET_SCALE_RANGE = (256, 480)  # Shorter side, section 3.4.
IMAGENET_CROP = families.IMAGENET.input_size
IMAGENET_TEST_RESIZE = 256  # Centre crop and 10-crop: shorter side first.
IMAGENET_TEST_SCALES = families.IMAGENET.test_scales
CIFAR_SIZE = families.CIFAR.input_size
CIFAR_PADDING = 4
LIGHTING_STDDEV = 0.1  # Krizhevsky et al.'s alpha ~ N(0, 0.1).

Window = tuple[tf.Tensor, tf.Tensor, tf.Tensor]  # (top, left, side)


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
  """Decodes JPEG or PNG bytes to uint8 RGB; grayscale and alpha become RGB."""
  return tf.io.decode_image(data, channels=3, expand_animations=False)


def _is_jpeg(data: tf.Tensor) -> tf.Tensor:
  return tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")


def decode_window(data: tf.Tensor,
                  window_fn: Callable[[tf.Tensor, tf.Tensor], Window]
                  ) -> tf.Tensor:
  """Decodes only a square window of an encoded image.

  JPEGs are decoded with the fused decode-and-crop, which skips the blocks
  outside the window; PNGs are decoded whole, then cropped.

  Args:
    data: JPEG or PNG bytes.
    window_fn: maps the image's (height, width) to the window's
      (top, left, side).

  Returns:
    The window, uint8 [side, side, 3].
  """
  def jpeg():
    shape = tf.image.extract_jpeg_shape(data)
    top, left, side = window_fn(shape[0], shape[1])
    return tf.image.decode_and_crop_jpeg(data, tf.stack([top, left, side, side]),
                                         channels=3)

  def other():
    image = decode_rgb(data)
    top, left, side = window_fn(tf.shape(image)[0], tf.shape(image)[1])
    return image[top:top + side, left:left + side]

  return tf.cond(_is_jpeg(data), jpeg, other)


def crop_window(image: tf.Tensor, window_fn) -> tf.Tensor:
  """The same window of an already decoded image."""
  shape = tf.shape(image)
  top, left, side = window_fn(shape[0], shape[1])
  return image[top:top + side, left:left + side]


def _window(image, window_fn, encoded: bool) -> tf.Tensor:
  return (decode_window(image, window_fn) if encoded
          else crop_window(image, window_fn))


class ScaleCrop(NamedTuple):
  """One draw of section 3.4's scale augmentation, in the resized image's terms.

  The image is resized (bilinear) to `height` x `width`, its shorter side
  `scale`, and the crop's top-left corner is (`top`, `left`) of that resized
  image. All int32 scalars.
  """

  scale: tf.Tensor
  height: tf.Tensor
  width: tf.Tensor
  top: tf.Tensor
  left: tf.Tensor


def resized_shape(height: tf.Tensor, width: tf.Tensor,
                  size) -> tuple[tf.Tensor, tf.Tensor]:
  """The (height, width) `resize_shorter_side` gives an image: shorter side `size`.

  The longer side is rounded to the nearest pixel; the computation is
  `resize_shorter_side`'s own, so the two always agree.
  """
  shape = tf.cast(tf.stack([height, width]), tf.float32)
  shorter = tf.reduce_min(shape)
  new = tf.cast(tf.round(shape * (tf.cast(size, tf.float32) / shorter)),
                tf.int32)
  new = tf.where(shape == shorter, tf.cast(size, tf.int32), new)
  return new[0], new[1]


def scale_augmentation_crop(seed: tf.Tensor, height: tf.Tensor,
                            width: tf.Tensor,
                            scale_range: Sequence[int] = IMAGENET_SCALE_RANGE,
                            crop: int = IMAGENET_CROP) -> ScaleCrop:
  """Draws the paper's scale augmentation for an image of this size.

  "The image is resized with its shorter side randomly sampled in [256, 480]
  for scale augmentation. A 224x224 crop is randomly sampled from an image."
  The shorter side S is uniform over the integers of `scale_range`; the
  crop's corner is uniform over the integer positions of the image resized
  to shorter side S (`resized_shape`). Nothing else is drawn: these are the
  draws of resize-then-crop itself, whichever way the crop is then computed.

  Args:
    seed: a stateless seed, int64 [2].
    height: the original image's height, int32.
    width: its width.
    scale_range: inclusive range of the shorter side S.
    crop: the crop's side in the resized image.

  Returns:
    The draw.
  """
  scale_seed, top_seed, left_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  scale = tf.random.stateless_uniform([], scale_seed, scale_range[0],
                                      scale_range[1] + 1, dtype=tf.int32)
  resized_height, resized_width = resized_shape(height, width, scale)
  top = tf.random.stateless_uniform([], top_seed, 0,
                                    resized_height - crop + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], left_seed, 0,
                                     resized_width - crop + 1, dtype=tf.int32)
  return ScaleCrop(scale, resized_height, resized_width, top, left)


class SourceWindow(NamedTuple):
  """The pixels of the original image a bilinear crop reads, and where it samples.

  Each field holds (rows, columns): the window starts at `start` (int32 [2])
  of the original and has `size` (int32 [2]) pixels; `first` and `last`
  (float32 [2]) are the sampling positions of the crop's first and last row
  and column in the window's coordinates (pixel centres at integers).
  """

  start: tf.Tensor
  size: tf.Tensor
  first: tf.Tensor
  last: tf.Tensor


def source_window(draw: ScaleCrop, height: tf.Tensor, width: tf.Tensor,
                  crop: int = IMAGENET_CROP) -> SourceWindow:
  """Where in the original a crop of the resized image comes from.

  The crop of the resized image is a bilinear resampling of a window of the
  original: its (fractional) side is `crop * original / resized`, which is
  why the window is taken integer-aligned and a little larger (every pixel
  the resize would read, plus one pixel of margin), and the crop is then
  sampled at exactly the resize's positions within it (`resample_window`).

  Args:
    draw: the crop in the resized image's terms.
    height: the original's height, int32.
    width: the original's width.
    crop: the crop's side.

  Returns:
    The window and the sampling positions.
  """
  size = tf.stack([height, width])
  # tf.image.resize (bilinear, half-pixel centres) samples output pixel i of
  # `resized` at source position (i + 0.5) * size / resized - 0.5, in
  # float32, reading the pixels at its floor and ceiling, clamped to the
  # image. Rows and columns are computed together: fewer ops per image.
  step = tf.cast(size, tf.float32) / tf.cast(
      tf.stack([draw.height, draw.width]), tf.float32)
  first = (tf.cast(tf.stack([draw.top, draw.left]), tf.float32) + 0.5) * step
  last = first + (crop - 1) * step - 0.5
  first -= 0.5
  # One pixel of margin either side: the crop's own float arithmetic may
  # round a position across a pixel boundary.
  low = tf.clip_by_value(tf.cast(tf.floor(first), tf.int32) - 1, 0, size - 1)
  high = tf.clip_by_value(tf.cast(tf.math.ceil(last), tf.int32) + 1, 0,
                          size - 1)
  origin = tf.cast(low, tf.float32)
  return SourceWindow(low, high - low + 1, first - origin, last - origin)


def resample_window(pixels: tf.Tensor, window: SourceWindow,
                    crop: int = IMAGENET_CROP,
                    flip: Optional[tf.Tensor] = None) -> tf.Tensor:
  """The crop, from the decoded window: equal to resize-then-crop to float rounding.

  `tf.image.crop_and_resize` samples the box whose corners are the first and
  last sampling positions, bilinearly, at `crop` evenly spaced positions:
  the resize's own positions, since they are evenly spaced too. A position
  outside the image (a crop at the border of an enlarged image) reads the
  edge pixel in the resize; such a window is padded by one replicated pixel
  on every side, which gives the same values.

  Args:
    pixels: the window, uint8 [rows, columns, 3] as `window.size` says.
    window: from `source_window`.
    crop: the crop's side.
    flip: a bool scalar: mirror the crop left-right (sampling the box from
      right to left, which costs nothing).

  Returns:
    float32 [crop, crop, 3].
  """
  def sample(image, offset):
    span = tf.cast(tf.shape(image)[:2] - 1, tf.float32)
    first, last = (window.first + offset) / span, (window.last + offset) / span
    if flip is not None:
      first, last = (tf.where([False, flip], last, first),
                     tf.where([False, flip], first, last))
    box = tf.concat([first, last], axis=0)
    return tf.image.crop_and_resize(image[None], box[None], [0],
                                    [crop, crop])[0]

  # crop_and_resize converts the four pixels it reads for every output
  # value; converting the window once costs a third of that (the training
  # pipeline gains a tenth), and gives the same float32 values.
  pixels = tf.cast(pixels, tf.float32)

  def padded():
    image = tf.concat([pixels[:1], pixels, pixels[-1:]], axis=0)
    image = tf.concat([image[:, :1], image, image[:, -1:]], axis=1)
    return sample(image, 1.0)

  # Padding copies the window (a tenth of the pipeline's time): only when a
  # position falls outside it, or on its edge.
  return tf.cond(_reads_edge(window), padded, lambda: sample(pixels, 0.0))


# How close to a window's edge (in pixels) a sampling position must come for
# the window to be padded. crop_and_resize recomputes the positions from the
# normalized box, in float32, and can land a few ulps beyond a position on
# the edge; beyond it, it writes its extrapolation value (0) instead of the
# edge pixel. That happens for a crop whose first or last position is the
# window's edge exactly (the shorter side drawn equal to the image's, the
# crop at the border: for windows of 275 or 311 pixels, for instance): a
# black last row or column. A few ulps are far below 0.01 pixel at any
# image size TensorFlow decodes.
_EDGE_MARGIN = 0.01


def _reads_edge(window: SourceWindow) -> tf.Tensor:
  """Whether a sampling position lies outside `window` or within _EDGE_MARGIN of its edge."""
  return tf.logical_or(
      tf.reduce_any(window.first < _EDGE_MARGIN),
      tf.reduce_any(window.last > tf.cast(window.size - 1, tf.float32)
                    - _EDGE_MARGIN))


def sampling_box(pixels: tf.Tensor, window: SourceWindow,
                 flip: Optional[tf.Tensor] = None
                 ) -> tuple[tf.Tensor, tf.Tensor]:
  """`resample_window`'s work before the resampling: the window and where to sample it.

  For resampling elsewhere (`resample_windows`, on the accelerator): the
  window is padded by one replicated pixel on every side exactly when
  `resample_window` pads it, and the positions move with it.

  Args:
    pixels: the window, uint8 [rows, columns, 3] as `window.size` says.
    window: from `source_window`.
    flip: a bool scalar: mirror the crop left-right.

  Returns:
    The window, uint8 (padded or not), and the sampling box in its pixel
    coordinates, float32 [4]: the first row's and column's positions, then
    the last row's and column's (the columns swapped when flipped).
  """

  def padded():
    image = tf.concat([pixels[:1], pixels, pixels[-1:]], axis=0)
    image = tf.concat([image[:, :1], image, image[:, -1:]], axis=1)
    return image, window.first + 1.0, window.last + 1.0

  pixels, first, last = tf.cond(_reads_edge(window), padded,
                                lambda: (pixels, window.first, window.last))
  if flip is not None:
    first, last = (tf.where([False, flip], last, first),
                   tf.where([False, flip], first, last))
  return pixels, tf.concat([first, last], axis=0)


def resample_windows(windows: tf.Tensor, boxes: tf.Tensor,
                     crop: int = IMAGENET_CROP) -> tf.Tensor:
  """`resample_window` on a batch of windows, in one `crop_and_resize` call.

  Each window sits at the top left of the batch's canvas (zeros beyond it,
  as `padded_batch` leaves them), and its box is expressed in the canvas's
  normalized coordinates. crop_and_resize multiplies a normalized box back
  by the image's size minus one, in float32: by the canvas's here, by the
  window's in `resample_window`. So the positions, and the crops, agree
  with `resample_window`'s to float32 rounding (a few ulps of a position),
  not bit for bit; `sampling_box` keeps every position at least
  _EDGE_MARGIN inside the window, so no rounding reads the canvas's zeros.

  Args:
    windows: uint8 or float32 [B, rows, columns, 3], from `sampling_box`,
      padded at the bottom and right to one size.
    boxes: their boxes, float32 [B, 4].
    crop: the crops' side.

  Returns:
    float32 [B, crop, crop, 3].
  """
  windows = tf.cast(windows, tf.float32)
  # Divided in float64, then rounded: the correctly rounded float32 quotient
  # whether or not grappler, knowing the canvas's size, turns the division
  # into a multiplication by the reciprocal (so a tf.function traced for one
  # canvas size computes what eager does).
  span = tf.cast(tf.shape(windows)[1:3] - 1, tf.float64)
  boxes = tf.cast(tf.cast(boxes, tf.float64) / tf.tile(span, [2]),
                  tf.float32)
  return tf.image.crop_and_resize(windows, boxes,
                                  tf.range(tf.shape(windows)[0]),
                                  [crop, crop])


def scale_augmented_window(image: tf.Tensor, seed: tf.Tensor, *,
                           encoded: bool,
                           scale_range: Sequence[int] = IMAGENET_SCALE_RANGE,
                           crop: int = IMAGENET_CROP
                           ) -> tuple[tf.Tensor, SourceWindow]:
  """Draws section 3.4's crop and decodes only the window of the original it reads.

  A JPEG decodes just that window (`tf.image.decode_and_crop_jpeg`); other
  images are decoded whole and sliced. `resample_window` then makes the crop.

  Args:
    image: uint8 [H, W, 3], or JPEG/PNG bytes when `encoded`.
    seed: the draw's stateless seed (`scale_augmentation_crop`), int64 [2].
    encoded: whether `image` is encoded bytes.
    scale_range: inclusive range of the resized shorter side.
    crop: the crop's side in the resized image.

  Returns:
    The window's pixels, uint8 [rows, columns, 3], and the window.
  """

  def window_of(height, width):
    draw = scale_augmentation_crop(seed, height, width, scale_range, crop)
    return source_window(draw, height, width, crop)

  def sliced(pixels):
    shape = tf.shape(pixels)
    window = window_of(shape[0], shape[1])
    return tf.slice(pixels, tf.concat([window.start, [0]], 0),
                    tf.concat([window.size, [3]], 0)), window

  if not encoded:
    return sliced(image)

  def jpeg():
    shape = tf.image.extract_jpeg_shape(image)
    window = window_of(shape[0], shape[1])
    return tf.image.decode_and_crop_jpeg(
        image, tf.concat([window.start, window.size], 0), channels=3), window

  return tf.cond(_is_jpeg(image), jpeg, lambda: sliced(decode_rgb(image)))


def center_window(resize: int = IMAGENET_TEST_RESIZE,
                  crop: int = IMAGENET_CROP):
  """The centre crop after resizing the shorter side, as a window in the original."""

  def window_fn(height, width):
    shorter = tf.minimum(height, width)
    side = tf.cast(tf.round(crop * tf.cast(shorter, tf.float32) / resize),
                   tf.int32)
    side = tf.clip_by_value(side, 1, shorter)
    return (height - side) // 2, (width - side) // 2, side

  return window_fn


def subtract_mean(image: tf.Tensor, mean_image: tf.Tensor) -> tf.Tensor:
  """Subtracts the per-pixel mean from crops of its size, never resized or mirrored.

  Args:
    image: float32 [..., S, S, 3], one crop or a stack of crops.
    mean_image: float32 [S, S, 3].

  Returns:
    `image - mean_image`, float32.

  Raises:
    ValueError: if the crop and the mean differ in size (when known while
      tracing; otherwise the subtraction fails when it runs).
  """
  image = tf.convert_to_tensor(image, tf.float32)
  mean_image = tf.convert_to_tensor(mean_image, tf.float32)
  size, mean_size = image.shape[-3:-1], mean_image.shape[:2]
  if (size.is_fully_defined() and mean_size.is_fully_defined()
      and size != mean_size):
    raise ValueError(f"a {size[0]}x{size[1]} crop cannot take the "
                     f"{mean_size[0]}x{mean_size[1]} per-pixel mean; crops "
                     "and the mean must have one size")
  return image - mean_image


def mean_colour(mean_image: tf.Tensor) -> tf.Tensor:
  """The mean image's average over positions, float32 [3]: the whole-image views' mean.

  Summed in float64: a float32 sum of 224 x 224 values drifts by about 1e-3
  (a constant mean image of 123.68 would come back as 123.681), which a
  converted model's logits notice.
  """
  mean = tf.convert_to_tensor(mean_image)
  return tf.cast(tf.reduce_mean(tf.cast(mean, tf.float64), axis=[0, 1]),
                 tf.float32)


def pca_lighting(image: tf.Tensor, seed: tf.Tensor, eigenvalues: tf.Tensor,
                 eigenvectors: tf.Tensor,
                 stddev: float = LIGHTING_STDDEV) -> tf.Tensor:
  """Krizhevsky et al.'s colour augmentation: noise along the RGB principal components.

  Adds `eigenvectors @ (alpha * eigenvalues)` to every pixel, with
  alpha ~ N(0, stddev) drawn once per image. Eigenvalues are those of the
  covariance of RGB values scaled to [0, 1]; images are on [0, 255], so the
  shift is scaled by 255.

  Args:
    image: float32 [H, W, 3] on the [0, 255] scale (mean subtracted or not).
    seed: a stateless seed, int64 [2].
    eigenvalues: [3].
    eigenvectors: [3, 3], one eigenvector per column.
    stddev: standard deviation of alpha.

  Returns:
    The shifted image.
  """
  return add_colour(image, lighting_shift(seed, eigenvalues, eigenvectors,
                                          stddev))


def lighting_shift(seed: tf.Tensor, eigenvalues: tf.Tensor,
                   eigenvectors: tf.Tensor,
                   stddev: float = LIGHTING_STDDEV) -> tf.Tensor:
  """The colour `pca_lighting` adds to an image with this seed, float32 [3]."""
  alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
  shift = tf.linalg.matvec(tf.cast(eigenvectors, tf.float32),
                           alpha * tf.cast(eigenvalues, tf.float32))
  return 255.0 * shift


def add_colour(image: tf.Tensor, colour: tf.Tensor) -> tf.Tensor:
  """`image + colour` for float32 [..., H, W, 3] and [3], the same sums, faster.

  TensorFlow's CPU kernels broadcast 3 values over an image several times
  more slowly than they add two images (as slowly as resampling the whole
  crop); broadcasting one image row of colours over the rows is as fast.

  Args:
    image: float32 [..., H, W, 3].
    colour: [3], added to every image; or [B, 3], one per image of a batch
      `image` [B, H, W, 3].

  Returns:
    The sum, float32, shaped as `image`.
  """
  image = tf.convert_to_tensor(image, tf.float32)
  colour = tf.cast(colour, tf.float32)
  shape = tf.shape(image)
  # One row of colours per image: [3] -> [1, W * 3], [B, 3] -> [B, 1, W * 3].
  row = tf.tile(colour, tf.concat(
      [tf.ones([tf.rank(colour) - 1], tf.int32), shape[-2:-1]], 0))
  rows = tf.reshape(image, tf.concat([shape[:-2], [shape[-2] * 3]], 0))
  return tf.reshape(rows + tf.expand_dims(row, -2), shape)


def _flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  return tf.image.stateless_random_flip_left_right(image, seed)


def flip_draw(seed: tf.Tensor) -> tf.Tensor:
  """Whether to mirror, with probability 1/2: `tf.image`'s stateless flip's own draw."""
  return tf.random.stateless_uniform([], seed, 0, 1.0) < 0.5


def _train_draws(image, seed, eigenvalues, eigenvectors, *, encoded,
                 scale_range, crop):
  """The training view's draws from one seed, and the window they decode.

  Shared by `imagenet_train_crop` and `imagenet_train_window`, so that both
  paths draw alike. Returns the window's pixels, the window, whether to
  mirror, and the colour shift (zeros without eigenvalues).
  """
  window_seed, flip_seed, light_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  pixels, window = scale_augmented_window(image, window_seed, encoded=encoded,
                                         scale_range=scale_range, crop=crop)
  shift = (tf.zeros([3]) if eigenvalues is None
           else lighting_shift(light_seed, eigenvalues, eigenvectors))
  return pixels, window, flip_draw(flip_seed), shift


def imagenet_train_crop(image: tf.Tensor, seed: tf.Tensor,
                        eigenvalues: Optional[tf.Tensor],
                        eigenvectors: Optional[tf.Tensor], *, encoded: bool,
                        scale_range: Sequence[int] = IMAGENET_SCALE_RANGE,
                        crop: int = IMAGENET_CROP
                        ) -> tuple[tf.Tensor, tf.Tensor]:
  """`imagenet_train`'s random part: the crop, flipped or not, and its colour shift.

  `imagenet_train_finish` completes the view, on one image or, cheaper per
  image, on a batch of them.

  Args:
    image: uint8 [H, W, 3], or JPEG/PNG bytes when `encoded`.
    seed: stateless seed of this example, int64 [2].
    eigenvalues: RGB PCA eigenvalues for the lighting noise; None for none.
    eigenvectors: RGB PCA eigenvectors (columns).
    encoded: whether `image` is encoded bytes.
    scale_range: inclusive range of the resized shorter side.
    crop: output side.

  Returns:
    The crop, float32 [crop, crop, 3] on [0, 255], and the colour
    `pca_lighting` adds to it, float32 [3] (zeros without eigenvalues).
  """
  pixels, window, flip, shift = _train_draws(
      image, seed, eigenvalues, eigenvectors, encoded=encoded,
      scale_range=scale_range, crop=crop)
  view = resample_window(pixels, window, crop, flip)
  return tf.ensure_shape(view, [crop, crop, 3]), shift


def imagenet_train_window(image: tf.Tensor, seed: tf.Tensor,
                          eigenvalues: Optional[tf.Tensor],
                          eigenvectors: Optional[tf.Tensor], *, encoded: bool,
                          scale_range: Sequence[int] = IMAGENET_SCALE_RANGE,
                          crop: int = IMAGENET_CROP
                          ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """`imagenet_train_crop` up to the resampling, which `imagenet_train_from_windows` does.

  The draws are `imagenet_train_crop`'s, from the same seed: the input can
  decode on the host and resample on the accelerator (as NVIDIA DALI
  does), and the views are `imagenet_train`'s to float rounding.

  Args:
    image: uint8 [H, W, 3], or JPEG/PNG bytes when `encoded`.
    seed: stateless seed of this example, int64 [2].
    eigenvalues: RGB PCA eigenvalues for the lighting noise; None for none.
    eigenvectors: RGB PCA eigenvectors (columns).
    encoded: whether `image` is encoded bytes.
    scale_range: inclusive range of the resized shorter side.
    crop: output side.

  Returns:
    The decoded window, uint8 [rows, columns, 3]; its sampling box, float32
    [4] (`sampling_box`; the flip is in it); and the colour shift, float32
    [3] (zeros without eigenvalues).
  """
  pixels, window, flip, shift = _train_draws(
      image, seed, eigenvalues, eigenvectors, encoded=encoded,
      scale_range=scale_range, crop=crop)
  pixels, box = sampling_box(pixels, window, flip)
  return pixels, box, shift


def imagenet_train_from_windows(windows: tf.Tensor, boxes: tf.Tensor,
                                shifts: Optional[tf.Tensor],
                                mean_image: tf.Tensor,
                                crop: int = IMAGENET_CROP) -> tf.Tensor:
  """ImageNet training views from a batch of `imagenet_train_window`'s outputs.

  The resampling, the flip (in the boxes), the mean and the colour noise,
  on whole batches: what the training step runs on the accelerator when the
  host only decodes.

  Args:
    windows: uint8 [B, rows, columns, 3], padded at the bottom and right to
      one size (`tf.data.Dataset.padded_batch`).
    boxes: float32 [B, 4].
    shifts: float32 [B, 3]; None for no colour noise.
    mean_image: per-pixel mean, float32 [crop, crop, 3].
    crop: output side.

  Returns:
    float32 [B, crop, crop, 3].
  """
  return imagenet_train_finish(resample_windows(windows, boxes, crop), shifts,
                               mean_image)


def imagenet_train_finish(views: tf.Tensor, shifts: Optional[tf.Tensor],
                          mean_image: tf.Tensor) -> tf.Tensor:
  """Subtracts the per-pixel mean, then adds each view's colour shift.

  Args:
    views: from `imagenet_train_crop`: float32 [crop, crop, 3], or a batch
      [B, crop, crop, 3].
    shifts: their colour shifts, [3] or [B, 3]; None for no colour noise.
    mean_image: per-pixel mean, float32 [crop, crop, 3].

  Returns:
    float32, shaped as `views`.
  """
  views = subtract_mean(views, mean_image)
  return views if shifts is None else add_colour(views, shifts)


def imagenet_train(image: tf.Tensor, seed: tf.Tensor, mean_image: tf.Tensor,
                   eigenvalues: Optional[tf.Tensor],
                   eigenvectors: Optional[tf.Tensor], *, encoded: bool,
                   scale_range: Sequence[int] = IMAGENET_SCALE_RANGE,
                   crop: int = IMAGENET_CROP) -> tf.Tensor:
  """ImageNet training view (section 3.4): scale augmentation, crop, flip, mean, lighting.

  The crop is the 224x224 crop at `scale_augmentation_crop`'s position of
  the image resized bilinearly (half-pixel centres, no antialiasing, as
  `tf.image.resize` does by default) to its drawn shorter side, computed
  from only the window of the original it reads: a JPEG decodes just that
  window. Resizing by less than 2x (every ImageNet-sized image: at most
  500 / 256) reads every source pixel; larger originals alias a little, as
  the reference implementations' non-antialiased training crops do.

  This is `imagenet_train_crop` then `imagenet_train_finish` on one image;
  the training pipeline runs the second on whole batches.

  Args:
    image: uint8 [H, W, 3], or JPEG/PNG bytes when `encoded`.
    seed: stateless seed of this example, int64 [2].
    mean_image: per-pixel mean, float32 [crop, crop, 3].
    eigenvalues: RGB PCA eigenvalues for the lighting noise; None for none.
    eigenvectors: RGB PCA eigenvectors (columns).
    encoded: whether `image` is encoded bytes.
    scale_range: inclusive range of the resized shorter side.
    crop: output side.

  Returns:
    float32 [crop, crop, 3].
  """
  view, shift = imagenet_train_crop(image, seed, eigenvalues, eigenvectors,
                                    encoded=encoded, scale_range=scale_range,
                                    crop=crop)
  return imagenet_train_finish(view, None if eigenvalues is None else shift,
                               mean_image)


def to_cifar_size(image: tf.Tensor, encoded: bool) -> tf.Tensor:
  """A CIFAR-family image as uint8 32x32x3 (decoded and resized if needed)."""
  if encoded:
    image = decode_rgb(image)
  shape = tf.shape(image)
  image = tf.cond(
      tf.logical_and(tf.equal(shape[0], CIFAR_SIZE),
                     tf.equal(shape[1], CIFAR_SIZE)),
      lambda: image,
      lambda: tf.cast(tf.round(tf.clip_by_value(tf.image.resize(
          image, [CIFAR_SIZE, CIFAR_SIZE], antialias=True), 0, 255)),
                      tf.uint8))
  return tf.ensure_shape(image, [CIFAR_SIZE, CIFAR_SIZE, 3])


def cifar_train(image: tf.Tensor, seed: tf.Tensor, mean_image: tf.Tensor, *,
                encoded: bool, padding: int = CIFAR_PADDING) -> tf.Tensor:
  """CIFAR-10 training view (section 4.2): mean, 4-pixel zero padding, random 32x32 crop, flip.

  The mean is subtracted first, so the padding is zeros of the centred
  image, as in the paper.
  """
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  view = subtract_mean(tf.cast(to_cifar_size(image, encoded), tf.float32),
                       mean_image)
  view = tf.pad(view, [[padding, padding], [padding, padding], [0, 0]])
  view = tf.image.stateless_random_crop(view, [CIFAR_SIZE, CIFAR_SIZE, 3],
                                        crop_seed)
  return _flip(view, flip_seed)


def cifar_test(image: tf.Tensor, mean_image: tf.Tensor, *,
               encoded: bool) -> tf.Tensor:
  """CIFAR-10 test view: the original 32x32 image, mean subtracted."""
  return subtract_mean(tf.cast(to_cifar_size(image, encoded), tf.float32),
                       mean_image)


def imagenet_center(image: tf.Tensor, mean_image: tf.Tensor, *, encoded: bool,
                    resize: int = IMAGENET_TEST_RESIZE,
                    crop: int = IMAGENET_CROP) -> tf.Tensor:
  """Single centre crop: shorter side to 256, the central 224x224, mean subtracted."""
  window = _window(image, center_window(resize, crop), encoded)
  view = tf.image.resize(window, [crop, crop], method="bilinear",
                         antialias=True)
  return tf.ensure_shape(subtract_mean(view, mean_image), [crop, crop, 3])


def single_view(image: tf.Tensor, mean_image: tf.Tensor, family: str, *,
                encoded: bool) -> tf.Tensor:
  """A family's one-view test input (`families.Family.single_view`), mean subtracted.

  ImageNet: the centre crop (`imagenet_center`); CIFAR: the original image
  (`cifar_test`).
  """
  view = _SINGLE_VIEWS[families.get(family).single_view]
  return view(image, mean_image, encoded=encoded)


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resizes (bilinear, antialiased) so the shorter side is `size`; float32.

  The longer side is rounded to the nearest pixel (`resized_shape`).
  """
  shape = tf.shape(image)
  new = resized_shape(shape[0], shape[1], size)
  return tf.image.resize(image, tf.stack(new), method="bilinear",
                         antialias=True)


def ten_crop_offsets(height: tf.Tensor, width: tf.Tensor,
                     crop: int = IMAGENET_CROP) -> tf.Tensor:
  """(top, left) of the four corner crops and the centre crop, int32 [5, 2]."""
  bottom, right = height - crop, width - crop
  return tf.stack([[0, 0], [0, right], [bottom, 0], [bottom, right],
                   [bottom // 2, right // 2]])


def imagenet_ten_crop(image: tf.Tensor, mean_image: tf.Tensor, *,
                      encoded: bool, resize: int = IMAGENET_TEST_RESIZE,
                      crop: int = IMAGENET_CROP) -> tf.Tensor:
  """The standard 10-crop: corners and centre of the 256-resized image, and their flips.

  Each crop, mirrored or not, subtracts the mean image pixel for pixel, so
  the centre crop is the `imagenet_center` view.

  Returns:
    float32 [10, crop, crop, 3]: the five crops, then the same five flipped.
  """
  if encoded:
    image = decode_rgb(image)
  resized = resize_shorter_side(image, resize)
  shape = tf.shape(resized)
  offsets = ten_crop_offsets(shape[0], shape[1], crop)
  crops = tf.stack([resized[offsets[i, 0]:offsets[i, 0] + crop,
                            offsets[i, 1]:offsets[i, 1] + crop]
                    for i in range(5)])
  crops = tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)
  crops = tf.ensure_shape(crops, [10, crop, crop, 3])
  return subtract_mean(crops, mean_image)


def multiscale_views(image: tf.Tensor, mean_image: tf.Tensor, *,
                     encoded: bool,
                     scales: Sequence[int] = IMAGENET_TEST_SCALES,
                     flip: bool = False) -> tuple[tf.Tensor, ...]:
  """The whole image at each test scale, for fully-convolutional testing.

  Args:
    image: uint8 [H, W, 3], or bytes when `encoded`.
    mean_image: per-pixel mean [S, S, 3]; its average colour
      (`mean_colour`) is subtracted at every position.
    encoded: whether `image` is encoded bytes.
    scales: shorter sides of the views.
    flip: also return each view mirrored.

  Returns:
    One float32 [V, h_s, w_s, 3] per scale, V = 2 with `flip` (the view, then
    its mirror), else 1. Each view keeps its own size: views of different
    images are never padded into each other.
  """
  if encoded:
    image = decode_rgb(image)
  colour = mean_colour(mean_image)
  views = []
  for scale in scales:
    view = add_colour(resize_shorter_side(image, scale), -colour)[None]
    if flip:
      view = tf.concat([view, tf.reverse(view, axis=[2])], axis=0)
    views.append(view)
  return tuple(views)


_SINGLE_VIEWS = {"center_crop": imagenet_center, "original": cifar_test}
