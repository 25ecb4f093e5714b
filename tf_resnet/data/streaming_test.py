"""Block-shuffled reads of record files: permutations, blocks, resumption, pipelines."""

import os

import numpy as np
import tensorflow as tf

from tf_resnet.data import streaming


class StreamingTest(tf.test.TestCase):

  def _files(self, counts, first_skip: int = 0):
    """Record files whose records are their global numbers: 0, 1, 2, ..."""
    files, number = [], 0
    for f, count in enumerate(counts):
      path = os.path.join(self.get_temp_dir(), f"part-{f}.tfrecord")
      with tf.io.TFRecordWriter(path) as writer:
        for _ in range(count):
          writer.write(str(number).encode())
          number += 1
      skip = first_skip if f == 0 else 0
      files.append((path, skip, count - skip))
    return files

  def _read(self, table, count, **kwargs):
    ds = streaming.records(table, seed=kwargs.pop("seed", 3), **kwargs)
    return [int(r) for r in ds.take(count).as_numpy_iterator()]

  def test_block_table_cuts_consecutive_records(self):
    files = self._files([7, 5, 9], first_skip=2)  # Records 2..20.
    table = streaming.block_table(files, block_size=4)
    names = [os.path.basename(f) for f in table.files]
    rows = list(zip(names, table.skips.tolist(), table.takes.tolist()))
    self.assertEqual(rows, [
        ("part-0.tfrecord", 2, 4),  # Records 2-5.
        ("part-0.tfrecord", 6, 1), ("part-1.tfrecord", 0, 3),  # 6-9.
        ("part-1.tfrecord", 3, 2), ("part-2.tfrecord", 0, 2),  # 10-13.
        ("part-2.tfrecord", 2, 4),  # 14-17.
        ("part-2.tfrecord", 6, 3)])  # 18-20.
    self.assertEqual(table.row_splits.tolist(), [0, 1, 3, 5, 6, 7])
    self.assertEqual(table.sizes.tolist(), [4, 4, 4, 4, 3])
    with self.assertRaisesRegex(ValueError, "`block_size` must be positive"):
      streaming.block_table(files, block_size=0)

  def test_epochs_are_permutations_of_shuffled_blocks(self):
    table = streaming.block_table(self._files([7, 5, 9]), block_size=4)
    order = self._read(table, 63)  # Three epochs of 21 records.
    blocks = [set(range(b, min(b + 4, 21))) for b in range(0, 21, 4)]
    for epoch in range(3):
      records = order[epoch * 21:(epoch + 1) * 21]
      self.assertCountEqual(records, range(21))
      # Cut where each block ends, the epoch is its blocks, each whole.
      cuts, begin = [], 0
      while begin < 21:
        block = next(b for b in blocks if records[begin] in b)
        cuts.append(set(records[begin:begin + len(block)]))
        self.assertEqual(cuts[-1], block)
        begin += len(block)
    epochs = [order[e * 21:(e + 1) * 21] for e in range(3)]
    self.assertNotEqual(epochs[0], epochs[1])
    self.assertNotEqual(epochs[0], sorted(epochs[0]))
    self.assertNotEqual(self._read(table, 21, seed=4), epochs[0])
    self.assertEqual(self._read(table, 21), epochs[0])

  def test_resuming_at_any_position_continues_the_order(self):
    table = streaming.block_table(self._files([7, 5, 9]), block_size=4)
    order = self._read(table, 60)
    for position in (1, 3, 4, 5, 16, 20, 21, 22, 41, 42, 50):
      self.assertEqual(self._read(table, 5, position=position),
                       order[position:position + 5], f"at {position}")

  def test_pipelines_share_every_epoch(self):
    # 24 records in 6 blocks of 4: each of two pipelines takes every other
    # block of the sequence, 3 per epoch, and they never overlap.
    table = streaming.block_table(self._files([10, 14]), block_size=4)
    first = self._read(table, 24, pipelines=2, pipeline_id=0)
    second = self._read(table, 24, pipelines=2, pipeline_id=1)
    self.assertCountEqual(first[:12] + second[:12], range(24))
    self.assertCountEqual(first[12:] + second[12:], range(24))
    self.assertEqual(self._read(table, 6, pipelines=2, pipeline_id=1,
                                position=9), second[9:15])
    with self.assertRaisesRegex(ValueError, r"`pipeline_id` must be in"):
      self._read(table, 1, pipelines=2, pipeline_id=2)

  def test_resume_point_skips_whole_epochs(self):
    # A million records in blocks of 8,192 (123 blocks, the last short): far
    # positions resolve without reading anything.
    table = streaming.BlockTable(
        files=np.array(["f"] * 123), skips=np.zeros(123, np.int64),
        takes=np.array([8192] * 122 + [1_000_000 - 122 * 8192], np.int64),
        row_splits=np.arange(124, dtype=np.int64),
        sizes=np.array([8192] * 122 + [1_000_000 - 122 * 8192], np.int64))
    k, offset = streaming.resume_point(table, 0, 1, 0, 40 * 1_000_000 + 5)
    self.assertEqual((k, offset), (40 * 123, 5))


if __name__ == "__main__":
  tf.test.main()
