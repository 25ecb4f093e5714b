"""Tests of the residual and plain networks against the paper and closed forms."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.analysis import cost
from tf_resnet.analysis import paper
from tf_resnet.model import blocks
from tf_resnet.model import resnet


def _cifar_params(n: int) -> int:
  """Trainable parameters of the 6n+2 CIFAR ResNet, option A, in closed form.

  Stem 3x3x3x16; stage widths 16/32/64 with 2n 3x3 convolutions each (the
  first one of stages 2 and 3 takes half as many input channels); two BN
  parameters per channel after every convolution; a 64x10 classifier.
  """
  stem = 3 * 3 * 3 * 16 + 2 * 16
  total = stem
  for width, in_width in ((16, 16), (32, 16), (64, 32)):
    convs = 9 * in_width * width + (2 * n - 1) * 9 * width * width
    total += convs + 2 * n * 2 * width
  return total + 64 * 10 + 10


def _cifar_multiply_adds(n: int) -> int:
  """Multiply-adds of the 6n+2 CIFAR network for one 32x32 image, in closed form."""
  total = 32 * 32 * 16 * 27
  for size, width, in_width in ((32, 16, 16), (16, 32, 16), (8, 64, 32)):
    total += size * size * width * 9 * (in_width + (2 * n - 1) * width)
  return total + 64 * 10


class ParametersAndCostTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(20, 32, 44, 56, 110)
  def test_cifar_params_match_table_6(self, depth):
    net = resnet.cifar_resnet(depth)
    params = cost.count_params(net)
    self.assertEqual(params, _cifar_params((depth - 2) // 6))
    papers = paper.CIFAR_PARAMS[depth]
    self.assertTrue(paper.agrees(params, papers), f"{params} vs {papers}")

  def test_cifar_1202_params_match_table_6(self):
    params = cost.count_params(resnet.resnet1202())
    self.assertEqual(params, _cifar_params(200))
    self.assertTrue(paper.agrees(params, 19.4e6), params)

  @parameterized.parameters(1, 3, 9)
  def test_cifar_multiply_adds_closed_form(self, n):
    prof = cost.profile(resnet.cifar_resnet(6 * n + 2), (32, 32, 3))
    self.assertEqual(prof.multiply_adds, _cifar_multiply_adds(n))

  @parameterized.parameters(18, 34, 50, 101, 152)
  def test_imagenet_multiply_adds_match_table_1(self, depth):
    prof = cost.profile(resnet.imagenet_resnet(depth), (224, 224, 3))
    papers = paper.IMAGENET_MULTIPLY_ADDS[("resnet", depth)]
    self.assertTrue(paper.agrees(prof.multiply_adds, papers),
                    f"ResNet-{depth}: {prof.multiply_adds:,} vs {papers:,}")

  def test_plain_34_multiply_adds_match_fig_3(self):
    prof = cost.profile(resnet.plain34(), (224, 224, 3))
    self.assertTrue(paper.agrees(prof.multiply_adds, 3.6e9),
                    prof.multiply_adds)

  @parameterized.parameters(
      # torchvision's published figures for its models (ResNet-50/101/152
      # there put the bottleneck stride on the 3x3, "v1.5"): parameters
      # exactly, GFLOPS (multiply-adds) to two decimals.
      (18, False, 11_689_512, 1.81),
      (34, False, 21_797_672, 3.66),
      (50, True, 25_557_032, 4.09),
      (101, True, 44_549_160, 7.80),
      (152, True, 60_192_808, 11.51),
  )
  def test_matches_torchvision_published_counts(self, depth, v15, params,
                                                giga_multiply_adds):
    net = resnet.imagenet_resnet(depth, stride_on_3x3=v15)
    prof = cost.profile(net, (224, 224, 3))
    self.assertEqual(prof.params, params)
    self.assertEqual(round(prof.multiply_adds / 1e9, 2), giga_multiply_adds)

  def test_paper_stride_placement_is_cheaper_than_v1_5(self):
    v1 = cost.profile(resnet.resnet50(), (224, 224, 3)).multiply_adds
    v15 = cost.profile(resnet.resnet50(stride_on_3x3=True),
                       (224, 224, 3)).multiply_adds
    self.assertEqual(round(v1 / 1e9, 1), 3.9)
    self.assertGreater(v15, v1)


class ShortcutTest(tf.test.TestCase, parameterized.TestCase):

  def _shortcuts(self, net):
    return [b.shortcut for s in net.stages for b in s.blocks]

  def test_option_a_adds_no_parameters(self):
    self.assertEqual(cost.count_params(resnet.resnet34(shortcut="A")),
                     cost.count_params(resnet.plain34()))
    self.assertEqual(cost.count_params(resnet.resnet20()),
                     cost.count_params(resnet.cifar_plain(20)))

  def test_option_b_projects_where_dimensions_grow(self):
    # ResNet-34: projections 64->128, 128->256, 256->512 (1x1 kernel + BN).
    extra = sum(cin * cout + 2 * cout
                for cin, cout in ((64, 128), (128, 256), (256, 512)))
    self.assertEqual(
        cost.count_params(resnet.resnet34(shortcut="B"))
        - cost.count_params(resnet.resnet34(shortcut="A")), extra)
    kinds = [type(s).__name__ for s in self._shortcuts(resnet.resnet34())]
    first_blocks = {0, 3, 3 + 4, 3 + 4 + 6}
    for i, kind in enumerate(kinds):
      expected = ("ProjectionShortcut" if i in first_blocks - {0}
                  else "IdentityShortcut")
      self.assertEqual(kind, expected, f"block {i}")

  def test_option_b_projects_the_first_bottleneck(self):
    # 64 -> 256 channels without a stride: dimensions grow, so B projects.
    net = resnet.resnet50()
    self.assertIsInstance(net.stages[0].blocks[0].shortcut,
                          blocks.ProjectionShortcut)
    self.assertIsInstance(net.stages[0].blocks[1].shortcut,
                          blocks.IdentityShortcut)

  def test_option_c_projects_everywhere(self):
    shortcuts = self._shortcuts(resnet.resnet34(shortcut="C"))
    self.assertLen(shortcuts, 16)
    for s in shortcuts:
      self.assertIsInstance(s, blocks.ProjectionShortcut)
    extra_c = cost.count_params(resnet.resnet34(shortcut="C")) - \
        cost.count_params(resnet.resnet34(shortcut="A"))
    widths = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    ins = [64] + widths[:-1]
    self.assertEqual(extra_c, sum(i * o + 2 * o for i, o in zip(ins, widths)))

  def test_plain_twins_have_no_shortcut(self):
    for net in (resnet.plain18(), resnet.cifar_plain(8)):
      self.assertTrue(all(s is None for s in self._shortcuts(net)))
      self.assertTrue(net.name.startswith(("plain", "cifar_plain")), net.name)

  def test_option_a_subsamples_and_zero_pads(self):
    shortcut = blocks.IdentityShortcut(2, 5, stride=2)
    x = tf.reshape(tf.range(2 * 4 * 4 * 2, dtype=tf.float32), [2, 4, 4, 2])
    y = shortcut(x, is_training=True)
    self.assertEqual(y.shape, [2, 2, 2, 5])
    self.assertAllEqual(y[..., :2], x.numpy()[:, ::2, ::2, :])
    self.assertAllEqual(y[..., 2:], np.zeros([2, 2, 2, 3]))

  @parameterized.product(dtype=("float32", "bfloat16"), size=(7, 8),
                         stride=(2, 3))
  def test_option_a_takes_the_strided_convolutions_centres(self, dtype, size,
                                                           stride):
    # Exactly x[:, ::s, ::s] (the centres of a 3x3, pad-1 convolution with
    # stride s), forward and backward, in both precisions and on odd sizes.
    shortcut = blocks.IdentityShortcut(3, 3, stride=stride)
    x = tf.cast(tf.random.stateless_normal([2, size, size, 3], seed=[1, 2]),
                dtype)
    weights = tf.random.stateless_normal(
        [2, -(-size // stride), -(-size // stride), 3], seed=[3, 4])
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = shortcut(x, is_training=True)
      loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
    expected_y = x.numpy()[:, ::stride, ::stride, :]
    self.assertEqual(y.dtype, x.dtype)
    self.assertAllEqual(tf.cast(y, tf.float32), expected_y.astype(np.float32))
    expected_grad = np.zeros([2, size, size, 3], np.float32)
    expected_grad[:, ::stride, ::stride, :] = weights.numpy()
    self.assertAllEqual(tf.cast(tape.gradient(loss, x), tf.float32),
                        tf.cast(tf.cast(expected_grad, dtype), tf.float32))

  def test_residual_block_adds_its_input(self):
    # With its last BN's scale and offset at zero, a residual block's branch
    # outputs zero and the block is ReLU(identity); the plain block outputs 0.
    x = tf.random.normal([2, 8, 8, 16])
    for shortcut, expected in (("A", tf.nn.relu(x)), (None, tf.zeros_like(x))):
      block = blocks.BasicBlock(16, 16, stride=1, shortcut=shortcut)
      block.bns[-1].scale.assign(tf.zeros([16]))
      self.assertAllClose(block(x, is_training=False), expected, atol=1e-6)

  def test_zero_init_last_bn_starts_blocks_as_identity(self):
    self.assertAllEqual(
        resnet.resnet50(zero_init_last_bn=True).stages[0].blocks[1].bns[-1]
        .scale, tf.zeros([256]))
    self.assertAllEqual(resnet.resnet50().stages[0].blocks[1].bns[-1].scale,
                        tf.ones([256]))


class StructureTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(18, 34, 50, 101, 152)
  def test_imagenet_depth_counts_weight_layers(self, depth):
    self.assertEqual(resnet.imagenet_resnet(depth).depth, depth)

  @parameterized.parameters(8, 20, 56)
  def test_cifar_depth_counts_weight_layers(self, depth):
    self.assertEqual(resnet.cifar_resnet(depth).depth, depth)

  def test_bottleneck_stride_on_first_1x1_by_default(self):
    block = resnet.resnet50().stages[1].blocks[0]
    self.assertEqual([c.stride for c in block.convs], [2, 1, 1])
    self.assertEqual([c.kernel_size for c in block.convs], [1, 3, 1])
    v15 = resnet.resnet50(stride_on_3x3=True).stages[1].blocks[0]
    self.assertEqual([c.stride for c in v15.convs], [1, 2, 1])

  def test_stage_resolutions_follow_table_1(self):
    prof = cost.profile(resnet.resnet18(), (224, 224, 3))
    self.assertEqual([r.output_shape for r in prof.find("stage")],
                     [(56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512)])

  def test_cifar_feature_maps_follow_section_4_2(self):
    prof = cost.profile(resnet.resnet20(), (32, 32, 3))
    self.assertEqual([r.output_shape for r in prof.find("stage")],
                     [(32, 32, 16), (16, 16, 32), (8, 8, 64)])

  def test_variable_names_are_readable(self):
    names = {v.name for v in resnet.cifar_resnet(8, shortcut="B").variables}
    for name in ("cifar_resnet8/stem/conv/kernel:0",
                 "cifar_resnet8/stage_2/block_0/conv_1/kernel:0",
                 "cifar_resnet8/stage_2/block_0/bn_1/moving_variance:0",
                 "cifar_resnet8/stage_3/block_0/shortcut/conv/kernel:0",
                 "cifar_resnet8/head/fc/kernel:0"):
      self.assertIn(name, names)

  def test_no_bias_before_batch_norm(self):
    for v in resnet.resnet18().trainable_variables:
      if "conv" in v.name:
        self.assertTrue(v.name.endswith("kernel:0"), v.name)

  def test_invalid_depths_list_the_valid_ones(self):
    with self.assertRaisesRegex(ValueError,
                                "valid depths are 18, 34, 50, 101, 152"):
      resnet.imagenet_resnet(42)
    with self.assertRaisesRegex(ValueError, r"depth 6n\+2 .* not 21"):
      resnet.cifar_resnet(21)
    with self.assertRaisesRegex(ValueError, "`shortcut` must be one of"):
      resnet.cifar_resnet(20, shortcut="D")


# Every network, tiny: the ImageNet nets at full width on 32x32 images.
_NETWORKS = (
    ("cifar_resnet8_A", lambda: resnet.cifar_resnet(8), 32),
    ("cifar_resnet8_B", lambda: resnet.cifar_resnet(8, shortcut="B"), 32),
    ("cifar_resnet8_C", lambda: resnet.cifar_resnet(8, shortcut="C"), 32),
    ("cifar_plain8", lambda: resnet.cifar_plain(8), 32),
    ("resnet18", resnet.resnet18, 32),
    ("resnet34_A", lambda: resnet.resnet34(shortcut="A"), 32),
    ("resnet50", resnet.resnet50, 32),
    ("resnet101", resnet.resnet101, 32),
    ("resnet152", resnet.resnet152, 32),
    ("resnet50_v15", lambda: resnet.resnet50(stride_on_3x3=True), 32),
    ("plain34", resnet.plain34, 32),
)


class ForwardTest(tf.test.TestCase, parameterized.TestCase):

  def assertSameUpToRounding(self, actual, expected):
    # At initialisation, inference-mode logits of a deep net reach 1e4, and
    # float32 rounding differs between kernels (eager or graph, pool-then-FC
    # or FC-then-pool), so compare relative to the output's norm.
    actual, expected = np.asarray(actual), np.asarray(expected)
    self.assertLess(np.linalg.norm(actual - expected),
                    1e-5 * np.linalg.norm(expected) + 1e-6)

  @parameterized.named_parameters(*_NETWORKS)
  def test_eager_equals_function(self, make, size):
    net = make()
    images = tf.random.normal([2, size, size, 3])
    forward = tf.function(lambda x, t: net(x, is_training=t))
    for is_training in (False, True):
      eager = net(images, is_training=is_training)
      self.assertEqual(eager.shape, [2, net.num_classes])
      self.assertSameUpToRounding(forward(images, is_training), eager)

  def test_training_updates_moving_statistics_same_in_both_modes(self):
    nets = [resnet.cifar_resnet(8) for _ in range(2)]
    for v_to, v_from in zip(nets[1].variables, nets[0].variables):
      v_to.assign(v_from)
    images = tf.random.normal([4, 32, 32, 3])
    nets[0](images, is_training=True)
    tf.function(lambda x: nets[1](x, is_training=True))(images)
    for a, b in zip(nets[0].variables, nets[1].variables):
      self.assertAllClose(a, b, atol=1e-5)
    moving = nets[0].stages[0].blocks[0].bns[0].moving_mean
    self.assertNotAllClose(moving, tf.zeros_like(moving))

  @parameterized.parameters(
      (lambda: resnet.cifar_resnet(8), (64, 48)),
      (resnet.resnet18, (256, 320)),
  )
  def test_larger_images_give_positionally_averaged_logits(self, make, size):
    net = make()
    images = tf.random.normal([2, *size, 3])
    features = net.features(images, is_training=False)
    self.assertGreater(features.shape[1] * features.shape[2], 1)
    per_position = net.head.fc(features)  # The classifier at every position.
    self.assertSameUpToRounding(net(images, is_training=False),
                                tf.reduce_mean(per_position, axis=(1, 2)))

  def test_checkpoint_round_trip_gives_identical_outputs(self):
    net = resnet.cifar_resnet(8, shortcut="B")
    images = tf.random.normal([2, 32, 32, 3])
    net(images, is_training=True)  # Moves the BN statistics off their init.
    expected = net(images, is_training=False)
    path = tf.train.Checkpoint(model=net).write(
        os.path.join(self.get_temp_dir(), "ckpt"))
    restored = resnet.cifar_resnet(8, shortcut="B")
    self.assertNotAllClose(restored(images, is_training=False), expected)
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    self.assertAllEqual(restored(images, is_training=False), expected)

  def test_saved_model_round_trip(self):
    net = resnet.cifar_resnet(8)
    images = tf.random.normal([2, 32, 32, 3])
    net.serve = tf.function(
        lambda x: net(x, is_training=False),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    path = os.path.join(self.get_temp_dir(), "saved_model")
    tf.saved_model.save(net, path)
    loaded = tf.saved_model.load(path)
    self.assertAllClose(loaded.serve(images), net(images, is_training=False),
                        atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
