"""Crops, scales, flips and colour noise against hand-computed expectations."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.data import transforms


def _seed(i: int) -> tf.Tensor:
  return tf.constant([7, i], tf.int64)


def _gradient_image(height: int, width: int) -> tf.Tensor:
  """uint8 image whose red channel is the row, green the column, blue 100."""
  rows = np.repeat(np.arange(height)[:, None], width, axis=1)
  cols = np.repeat(np.arange(width)[None, :], height, axis=0)
  return tf.constant(np.stack([rows % 256, cols % 256,
                               np.full_like(rows, 100)], -1).astype(np.uint8))


def _random_mean(size: int) -> np.ndarray:
  """A mean image that differs at every pixel, float32 [size, size, 3]."""
  return np.random.RandomState(size).uniform(
      60, 180, [size, size, 3]).astype(np.float32)


def _chi_square_z(counts: np.ndarray, expected: np.ndarray) -> float:
  """How many standard deviations a chi-square statistic lies above its mean.

  With k cells the statistic has mean k - 1 and variance 2 (k - 1) under the
  null; the expected counts here are all large, so this normal reading of it
  is sound.
  """
  statistic = float(np.sum((counts - expected) ** 2 / expected))
  dof = len(counts) - 1
  return (statistic - dof) / np.sqrt(2 * dof)


def _lighting_components() -> tuple[tf.Tensor, tf.Tensor]:
  """Eigenvalues and orthonormal eigenvectors for the colour noise's tests."""
  return (tf.constant([0.2, 0.02, 0.002]),
          tf.constant(np.linalg.qr(np.random.RandomState(1).randn(3, 3))[0],
                      tf.float32))


class ScaleAugmentationTest(parameterized.TestCase, tf.test.TestCase):
  """Section 3.4 computed from a window equals section 3.4 as written."""

  @parameterized.product(
      shorter=[57, 224, 375, 600],  # Enlarged 4-8x, ..., shrunk up to 2.3x.
      aspect=["landscape", "portrait"],
      scale=[256, 367, 480])
  def test_window_crop_equals_resize_then_crop(self, shorter, aspect, scale):
    longer = shorter * 4 // 3 + 1
    height, width = ((shorter, longer) if aspect == "landscape"
                     else (longer, shorter))
    # Noise: every pixel differs from its neighbours, the hardest case for
    # a sampling position that is off.
    image = tf.constant(np.random.RandomState(shorter).randint(
        0, 256, [height, width, 3]).astype(np.uint8))
    resized_height, resized_width = transforms.resized_shape(height, width,
                                                             scale)
    self.assertEqual(min(int(resized_height), int(resized_width)), scale)
    reference = tf.image.resize(image, [resized_height, resized_width],
                                method="bilinear")
    self.assertAllEqual(tf.shape(reference)[:2],
                        tf.shape(transforms.resize_shorter_side(image,
                                                                scale))[:2])
    last_top, last_left = int(resized_height) - 224, int(resized_width) - 224
    for top, left in [(0, 0), (0, last_left), (last_top, 0),
                      (last_top, last_left), (last_top // 3, last_left // 2)]:
      for flip in (False, True):
        draw = transforms.ScaleCrop(tf.constant(scale), resized_height,
                                    resized_width, tf.constant(top),
                                    tf.constant(left))
        window = transforms.source_window(draw, height, width)
        (top_row, left_col), (rows, cols) = window.start, window.size
        pixels = image[top_row:top_row + rows, left_col:left_col + cols]
        crop = transforms.resample_window(pixels, window,
                                          flip=tf.constant(flip))
        expected = reference[top:top + 224, left:left + 224]
        if flip:
          expected = expected[:, ::-1]
        # Equal up to float32 rounding of the sampling positions (noise
        # images change by up to 255 per pixel: 0.05 is a 1/5000 pixel
        # shift at most).
        self.assertAllClose(crop, expected, atol=0.05, rtol=0,
                            msg=f"top={top} left={left} flip={flip}")
        # The window is the part that is read, and only a little more.
        self.assertLessEqual(int(rows), int(np.ceil(
            224 * height / int(resized_height))) + 4)
        self.assertLessEqual(int(cols), int(np.ceil(
            224 * width / int(resized_width))) + 4)

  def test_crop_on_the_window_edge_reads_the_edge(self):
    # A crop whose first or last sampling position is the window's edge
    # exactly: the resampling's float32 arithmetic lands such positions a
    # few ulps outside windows of these sizes (found by a search over
    # sizes), where crop_and_resize would write 0, a black row or column.
    # Unscaled, so the crop is the window's own pixels.
    rng = np.random.RandomState(3)
    for side in (275, 311):
      pixels = tf.constant(rng.randint(1, 256, [side, side, 3]).astype(
          np.uint8))
      size = tf.constant([side, side])
      for first, flip in ((0, True), (side - 224, False)):
        window = transforms.SourceWindow(
            tf.zeros([2], tf.int32), size, tf.fill([2], float(first)),
            tf.fill([2], float(first + 223)))
        crop = transforms.resample_window(pixels, window,
                                          flip=tf.constant(flip))
        expected = tf.cast(pixels[first:first + 224, first:first + 224],
                           tf.float32)
        if flip:
          expected = expected[:, ::-1]
        self.assertAllClose(crop, expected, atol=0.05, rtol=0,
                            msg=f"side={side} first={first} flip={flip}")

  def test_windows_resampled_in_one_batch_equal_the_single_crops(self):
    # The training input's other path: the host decodes windows
    # (`sampling_box`), a batch of them is padded to its largest and
    # resampled in one call (`resample_windows`, on the accelerator).
    rng = np.random.RandomState(6)
    windows, boxes, crops, padded = [], [], [], 0
    # Enlarged (crops at its border read past it) and shrunk images.
    for height, width in ((180, 230), (230, 180), (375, 500), (500, 375)):
      image = tf.constant(rng.randint(0, 256, [height, width, 3]).astype(
          np.uint8))
      for i in range(6):
        seed = tf.constant([height, i], tf.int64)
        # Narrow scale ranges put many crops at the border.
        pixels, window = transforms.scale_augmented_window(
            image, seed, encoded=False,
            scale_range=(224, 225) if i % 2 else (256, 480))
        flip = tf.constant(i % 3 == 0)
        crops.append(transforms.resample_window(pixels, window, flip=flip))
        window_pixels, box = transforms.sampling_box(pixels, window, flip)
        if window_pixels.shape[0] != pixels.shape[0]:
          padded += 1
          self.assertEqual(window_pixels.shape[:2],
                           (pixels.shape[0] + 2, pixels.shape[1] + 2))
          self.assertAllEqual(window_pixels[1:-1, 1:-1], pixels)
          self.assertAllEqual(window_pixels[0, 1:-1], pixels[0])
        windows.append(window_pixels)
        boxes.append(box)
        # Alone, the window is its own canvas: crop_and_resize then
        # recomputes the positions from the same normalized box, and the
        # crop is the single path's bit for bit.
        self.assertAllEqual(transforms.resample_windows(
            window_pixels[None], box[None])[0], crops[-1])
    self.assertGreaterEqual(padded, 4)
    rows = max(w.shape[0] for w in windows)
    cols = max(w.shape[1] for w in windows)
    canvas = tf.stack([tf.pad(w, [[0, rows - w.shape[0]],
                                  [0, cols - w.shape[1]], [0, 0]])
                       for w in windows])
    batch = transforms.resample_windows(canvas, tf.stack(boxes))
    # On the shared canvas the normalized boxes are multiplied back by its
    # size, not the window's: positions differ by float32 rounding (a few
    # ulps), values of these noise images by up to 255 times that.
    self.assertAllClose(batch, tf.stack(crops), atol=0.05, rtol=0)
    self.assertGreater(np.mean(batch.numpy() == tf.stack(crops).numpy()),
                       0.25)

  def test_jpeg_window_decode_equals_whole_decode_then_crop(self):
    # The end-to-end view: the fused JPEG path against decoding the whole
    # file and resizing it whole, with the draws the view's seed makes.
    rng = np.random.RandomState(5)
    coarse = rng.uniform(0, 255, [12, 16, 3])
    image = tf.cast(tf.image.resize(coarse[None], [300, 400], "bicubic")[0]
                    + rng.normal(0, 8, [300, 400, 3]), tf.float32)
    image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
    jpeg = tf.io.encode_jpeg(image, quality=95)
    decoded = tf.io.decode_jpeg(jpeg, channels=3)
    mean = tf.zeros([224, 224, 3])
    for i in range(12):
      view = transforms.imagenet_train(jpeg, _seed(i), mean, None, None,
                                       encoded=True)
      window_seed, flip_seed, _ = tf.unstack(
          tf.random.experimental.stateless_split(_seed(i), 3))
      draw = transforms.scale_augmentation_crop(window_seed, 300, 400)
      expected = tf.image.resize(decoded, [draw.height, draw.width])[
          draw.top:draw.top + 224, draw.left:draw.left + 224]
      if transforms.flip_draw(flip_seed):
        expected = expected[:, ::-1]
      # libjpeg's cropped decode may round chroma differently at the
      # window's edges: within 2 levels, as its own test allows.
      self.assertAllClose(view, expected, atol=2.0, rtol=0)
      self.assertAllClose(
          view, transforms.imagenet_train(decoded, _seed(i), mean, None, None,
                                          encoded=False), atol=2.0, rtol=0)

  def test_draws_are_the_papers_distribution(self):
    # S uniform over the integers of [256, 480]; the crop's corner uniform
    # over the resized image's positions; a flip with probability 1/2. A
    # 375x500 image and its portrait twin, 4,500 draws each, fixed seeds.
    n = 4500
    for height, width in ((375, 500), (500, 375)):
      draws = tf.data.Dataset.range(n).map(
          lambda i: tuple(transforms.scale_augmentation_crop(
              tf.stack([tf.constant(11, tf.int64), i]), height, width))
          + (transforms.flip_draw(tf.stack([tf.constant(12, tf.int64), i])),))
      scale, rows, cols, top, left, flip = (
          np.concatenate(column) for column in zip(*draws.batch(n)))
      self.assertAllEqual(np.minimum(rows, cols), scale)
      self.assertEqual((scale.min(), scale.max()), (256, 480))
      self.assertLess(_chi_square_z(np.bincount(scale - 256, minlength=225),
                                    np.full(225, n / 225)), 4.0)
      for corner, size in ((top, rows), (left, cols)):
        positions = size - 224 + 1
        self.assertTrue(np.all((corner >= 0) & (corner < positions)))
        # Where the corner falls along the resized image, in 8 bins;
        # expected counts exactly from each draw's own number of positions.
        bins = np.minimum(corner * 8 // positions, 7)
        expected = np.zeros(8)
        for m in np.unique(positions):
          per_bin = np.bincount(np.minimum(np.arange(m) * 8 // m, 7),
                                minlength=8) / m
          expected += per_bin * np.sum(positions == m)
        self.assertLess(_chi_square_z(np.bincount(bins, minlength=8),
                                      expected), 4.0)
        # The last position is reachable: a crop at the far edge.
        self.assertTrue(np.any(corner == positions - 1))
      self.assertLess(abs(flip.mean() - 0.5), 4 * np.sqrt(0.25 / n))


class WindowTest(tf.test.TestCase):

  def test_center_window(self):
    # 500x375: side round(224 * 375 / 256) = 328, centred.
    top, left, side = transforms.center_window()(500, 375)
    self.assertEqual((int(top), int(left), int(side)), (86, 23, 328))

  def test_fused_jpeg_crop_equals_decode_then_crop(self):
    image = _gradient_image(120, 90)
    window_fn = lambda h, w: (tf.constant(17), tf.constant(9), tf.constant(64))
    jpeg = tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False)
    fused = transforms.decode_window(jpeg, window_fn)
    whole = tf.io.decode_jpeg(jpeg)[17:17 + 64, 9:9 + 64]
    self.assertEqual(fused.shape, [64, 64, 3])
    self.assertAllClose(tf.cast(fused, tf.float32), tf.cast(whole, tf.float32),
                        atol=2.0)
    png = transforms.decode_window(tf.io.encode_png(image), window_fn)
    self.assertAllEqual(png, image[17:17 + 64, 9:9 + 64])


class ImageNetViewsTest(tf.test.TestCase):

  def test_train_view_shape_flip_and_mean(self):
    image = _gradient_image(300, 400)
    mean = _random_mean(224)
    flipped = 0
    for i in range(20):
      view = transforms.imagenet_train(image, _seed(i), tf.constant(mean),
                                       None, None, encoded=False)
      self.assertEqual(view.shape, [224, 224, 3])
      # Blue is 100 everywhere and resizing keeps constants: the view's blue
      # is 100 minus the mean's blue at the same pixel, mirrored view or not
      # (the mean is subtracted from the crop of the mirrored image).
      self.assertAllClose(view[..., 2], 100.0 - mean[..., 2], atol=1e-3)
      # Green (the column) minus the mean grows with the column unless the
      # view is mirrored.
      green = view[..., 1] + mean[..., 1]
      flipped += int(green[0, 0] > green[0, -1])
    self.assertBetween(flipped, 3, 17)

  def test_encoded_and_decoded_inputs_agree(self):
    image = _gradient_image(256, 300)
    mean = tf.zeros([224, 224, 3])
    png = tf.io.encode_png(image)
    self.assertAllClose(
        transforms.imagenet_train(png, _seed(1), mean, None, None,
                                  encoded=True),
        transforms.imagenet_train(image, _seed(1), mean, None, None,
                                  encoded=False))

  def test_center_view(self):
    image = _gradient_image(256, 256)  # Shorter side already 256.
    mean = _random_mean(224)
    view = transforms.imagenet_center(image, tf.constant(mean), encoded=False)
    # Window of side 224 at (16, 16): no resampling, exact pixels.
    self.assertAllClose(view, image.numpy()[16:240, 16:240] - mean,
                        atol=1e-4)

  def test_ten_crop_offsets(self):
    # A 256x341 resized image: corners and centre of 224x224 crops.
    self.assertAllEqual(transforms.ten_crop_offsets(256, 341),
                        [[0, 0], [0, 117], [32, 0], [32, 117], [16, 58]])

  def test_ten_crop_views_take_the_mean_pixel_for_pixel(self):
    # Shorter side already 256, so the crops are exact pixels; the mean is
    # not constant, so a resized or mirrored mean would show.
    image = _gradient_image(256, 341)
    mean = _random_mean(224)
    crops = transforms.imagenet_ten_crop(image, tf.constant(mean),
                                         encoded=False)
    self.assertEqual(crops.shape, [10, 224, 224, 3])
    source = image.numpy().astype(np.float32)
    for i, (top, left) in enumerate([(0, 0), (0, 117), (32, 0), (32, 117),
                                     (16, 58)]):
      window = source[top:top + 224, left:left + 224]
      self.assertAllClose(crops[i], window - mean, atol=1e-3)
      self.assertAllClose(crops[i + 5], window[:, ::-1] - mean, atol=1e-3)

  def test_ten_crop_centre_view_is_the_center_view(self):
    # Centre window of a 256x341 image: rows 16-239, columns 58-281.
    image = _gradient_image(256, 341)
    mean = _random_mean(224)
    expected = image.numpy()[16:240, 58:282].astype(np.float32) - mean
    center = transforms.imagenet_center(image, tf.constant(mean),
                                        encoded=False)
    crops = transforms.imagenet_ten_crop(image, tf.constant(mean),
                                         encoded=False)
    self.assertAllClose(center, expected, atol=1e-3)
    self.assertAllClose(crops[4], expected, atol=1e-3)

  def test_crops_and_mean_must_have_one_size(self):
    with self.assertRaisesRegex(ValueError, "a 256x256 crop cannot take the "
                                "224x224 per-pixel mean"):
      transforms.subtract_mean(tf.zeros([256, 256, 3]), tf.zeros([224, 224, 3]))

  def test_multiscale_sizes(self):
    image = _gradient_image(300, 400)
    views = transforms.multiscale_views(image, tf.zeros([224, 224, 3]),
                                        encoded=False, flip=True)
    # Shorter side to each scale, longer side 400 * s / 300 rounded.
    self.assertEqual([tuple(v.shape) for v in views],
                     [(2, 224, 299, 3), (2, 256, 341, 3), (2, 384, 512, 3),
                      (2, 480, 640, 3), (2, 640, 853, 3)])
    self.assertAllEqual(views[0][1], views[0][0][:, ::-1])

  def test_mean_colour_of_a_flat_mean_is_exact(self):
    # Caffe's per-channel mean (a converted model's): a float32 sum over
    # 224 x 224 positions would drift by ~1e-3.
    flat = np.broadcast_to(np.float32([123.68, 116.779, 103.939]),
                           [224, 224, 3])
    self.assertAllEqual(transforms.mean_colour(flat),
                        np.float32([123.68, 116.779, 103.939]))

  def test_whole_image_views_subtract_the_mean_colour(self):
    # A constant image stays constant when resized; the view subtracts the
    # mean image's average colour at every position, mirrored or not.
    mean = _random_mean(224)
    views = transforms.multiscale_views(tf.fill([40, 60, 3], tf.uint8.max),
                                        tf.constant(mean), encoded=False,
                                        scales=(64,), flip=True)
    colour = mean.reshape(-1, 3).mean(axis=0)
    self.assertAllClose(views[0],
                        np.broadcast_to(255.0 - colour, [2, 64, 96, 3]),
                        atol=1e-3)


class LightingTest(tf.test.TestCase):

  def test_add_colour_is_the_broadcast_sum(self):
    colour = tf.constant([1.5, -20.25, 7.0])
    for shape in ([5, 7, 3], [2, 5, 7, 3]):
      image = tf.random.stateless_uniform(shape, [1, 2], 0, 255)
      self.assertAllEqual(transforms.add_colour(image, colour),
                          image + colour)

  def test_add_colour_per_image_of_a_batch(self):
    colours = tf.constant([[1.5, -20.25, 7.0], [0.0, 3.0, -4.5]])
    images = tf.random.stateless_uniform([2, 5, 7, 3], [1, 2], 0, 255)
    self.assertAllEqual(transforms.add_colour(images, colours),
                        images + colours[:, None, None, :])

  def test_batch_finish_is_the_single_image_view(self):
    # imagenet_train_finish on a batch of crops gives, bit for bit, each
    # image's imagenet_train (the training pipeline's batch-level path).
    mean = tf.constant(_random_mean(224))
    values, vectors = _lighting_components()
    image = tf.constant(np.random.RandomState(2).randint(
        0, 256, [260, 330, 3]).astype(np.uint8))
    crops, shifts = zip(*[transforms.imagenet_train_crop(
        image, _seed(i), values, vectors, encoded=False) for i in range(3)])
    batch = transforms.imagenet_train_finish(tf.stack(crops),
                                             tf.stack(shifts), mean)
    for i in range(3):
      self.assertAllEqual(batch[i], transforms.imagenet_train(
          image, _seed(i), mean, values, vectors, encoded=False))
      self.assertAllEqual(shifts[i], transforms.pca_lighting(
          tf.zeros([1, 1, 3]), tf.random.experimental.stateless_split(
              _seed(i), 3)[2], values, vectors)[0, 0])

  def test_views_from_windows_are_the_single_image_views(self):
    # imagenet_train_window per image, imagenet_train_from_windows per
    # batch: imagenet_train's views, the same draws, to float rounding.
    mean = tf.constant(_random_mean(224))
    values, vectors = _lighting_components()
    image = tf.constant(np.random.RandomState(2).randint(
        0, 256, [240, 320, 3]).astype(np.uint8))
    for colour in (True, False):
      eigenvalues = values if colour else None
      windows, boxes, shifts = zip(*[transforms.imagenet_train_window(
          image, _seed(i), eigenvalues, vectors, encoded=False)
                                     for i in range(3)])
      rows = max(w.shape[0] for w in windows)
      cols = max(w.shape[1] for w in windows)
      canvas = tf.stack([tf.pad(w, [[0, rows - w.shape[0]],
                                    [0, cols - w.shape[1]], [0, 0]])
                         for w in windows])
      views = transforms.imagenet_train_from_windows(
          canvas, tf.stack(boxes), tf.stack(shifts) if colour else None, mean)
      for i in range(3):
        self.assertAllClose(views[i], transforms.imagenet_train(
            image, _seed(i), mean, eigenvalues, vectors, encoded=False),
                            atol=0.05, rtol=0)

  def test_shift_is_per_image_along_the_components(self):
    values = tf.constant([0.2, 0.02, 0.002])
    vectors = tf.constant(np.linalg.qr(np.random.RandomState(0).randn(3, 3))[0],
                          tf.float32)
    image = tf.zeros([4, 5, 3])
    shifts = []
    for i in range(2000):
      shifted = transforms.pca_lighting(image, _seed(i), values, vectors)
      self.assertAllClose(shifted, tf.broadcast_to(shifted[0, 0], [4, 5, 3]))
      shifts.append(shifted[0, 0].numpy())
    # Coordinates along each eigenvector: 255 * alpha_i * lambda_i, with
    # alpha ~ N(0, 0.1).
    coords = np.array(shifts) @ vectors.numpy()
    self.assertAllClose(coords.std(axis=0), 255 * 0.1 * values.numpy(),
                        rtol=0.1)
    self.assertAllClose(coords.mean(axis=0), [0, 0, 0],
                        atol=0.1 * 255 * 0.1 * 0.2)


class CifarViewsTest(tf.test.TestCase):

  def test_train_view_is_a_window_of_the_padded_centred_image(self):
    image = tf.constant(np.random.RandomState(0).randint(
        0, 256, [32, 32, 3]).astype(np.uint8))
    # The mean comes off the 32x32 image before padding (section 4.2), so
    # the padding is zeros and a mirrored crop mirrors the centred image.
    mean = tf.constant(_random_mean(32))
    padded = np.pad(image.numpy().astype(np.float32) - mean.numpy(),
                    [(4, 4), (4, 4), (0, 0)])
    offsets = set()
    for i in range(60):
      view = transforms.cifar_train(image, _seed(i), mean, encoded=False).numpy()
      match = [(y, x, f) for y in range(9) for x in range(9) for f in (0, 1)
               if np.array_equal(view, padded[y:y + 32, x:x + 32][:, ::-1]
                                 if f else padded[y:y + 32, x:x + 32])]
      self.assertLen(match, 1)
      offsets.add(match[0])
    self.assertGreater(len(offsets), 20)

  def test_test_view_and_resizing(self):
    image = tf.constant(np.random.RandomState(3).randint(
        0, 256, [32, 32, 3]).astype(np.uint8))
    mean = _random_mean(32)
    self.assertAllClose(transforms.cifar_test(image, tf.constant(mean),
                                              encoded=False),
                        image.numpy() - mean)
    small = tf.io.encode_png(tf.fill([8, 8, 1], tf.constant(200, tf.uint8)))
    resized = transforms.to_cifar_size(small, encoded=True)
    self.assertAllEqual(resized, tf.fill([32, 32, 3], tf.constant(200,
                                                                   tf.uint8)))


class DecodeTest(tf.test.TestCase):

  def test_grayscale_and_alpha_become_rgb(self):
    gray = tf.io.encode_png(tf.fill([4, 4, 1], tf.constant(9, tf.uint8)))
    rgba = tf.io.encode_png(tf.concat(
        [tf.fill([4, 4, 3], tf.constant(9, tf.uint8)),
         tf.fill([4, 4, 1], tf.constant(128, tf.uint8))], axis=-1))
    gray_jpeg = tf.io.encode_jpeg(tf.fill([8, 8, 1], tf.constant(9, tf.uint8)))
    for data in (gray, rgba, gray_jpeg):
      decoded = transforms.decode_rgb(data)
      self.assertEqual(decoded.shape[-1], 3)
      self.assertAllClose(tf.cast(decoded, tf.float32),
                          tf.fill(decoded.shape, 9.0), atol=1.0)


if __name__ == "__main__":
  tf.test.main()
