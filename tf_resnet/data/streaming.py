"""Shuffled training reads of a streamed split that resume from a position, not a saved iterator.

A streamed split (TFDS's ImageNet: 1,024 TFRecord shards, ~140 GB) cannot be
read by example index, and a `shuffle` buffer's state can only be saved by
checkpointing the iterator: the whole buffer of encoded JPEGs plus the
prefetched batches, 1.86 GB per checkpoint for a 16,384-image buffer at
ImageNet's JPEG sizes (measured: benchmarks/stream_checkpoint.py). Instead the order is a pure function of
(seed, position), like the indexed sources' order:

* the split's records, in their stored order, are cut into blocks of
  `block_size` consecutive records (TFDS shuffles examples when it prepares
  a data set, so a block is a random sample of it);
* epoch `e` visits the blocks in a permutation drawn from (seed, e); each
  block, read whole, is permuted by a draw from (seed, its place in the
  sequence of blocks);
* with several input pipelines, pipeline `i` takes every P-th block of that
  sequence, starting with the i-th.

A pipeline that has consumed `position` records resumes by computing which
block holds the next one and reading that block again: at most one block of
reading, and nothing but the step in the checkpoint.

What it costs in randomness: within an epoch the order is a random sequence
of random permutations of blocks, not one permutation of the whole split;
examples of one block always meet within `block_size` positions of each
other, and a batch draws from one block (two at a boundary). With blocks of
8,192 that is the reach of a shuffle buffer of about that size, and less
than the 16,384-image buffer used before (whose order also depended on which
16 shards were open together). Memory: about two blocks of encoded images
(the one being read out and the next, prefetched), like that buffer.
"""

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

BLOCK_SIZE = 8192
# Files of one block read at once; a constant, since it fixes the order in
# which a block's records are gathered before the block is permuted.
_READ_PARALLELISM = 4


@dataclasses.dataclass(frozen=True)
class BlockTable:
  """A split's records as blocks of consecutive records, each a list of file reads.

  Attributes:
    files, skips, takes: one row per (block, file) read, in block order:
      read `takes` records of `files` after skipping `skips`.
    row_splits: block `b`'s rows are `row_splits[b]:row_splits[b + 1]`.
    sizes: records per block.
  """

  files: np.ndarray
  skips: np.ndarray
  takes: np.ndarray
  row_splits: np.ndarray
  sizes: np.ndarray

  @property
  def num_blocks(self) -> int:
    return len(self.sizes)


def block_table(files: Sequence[tuple[str, int, int]],
                block_size: int = BLOCK_SIZE) -> BlockTable:
  """Cuts a split, given as (file, records to skip, records to take) in stored order, into blocks.

  Args:
    files: the split's reads, in order (TFDS's file instructions).
    block_size: records per block (the last block may have fewer).

  Returns:
    The table.

  Raises:
    ValueError: for a non-positive `block_size` or an empty split.
  """
  if block_size < 1:
    raise ValueError(f"`block_size` must be positive, not {block_size}")
  rows, row_splits, sizes = [], [0], []
  filled = 0
  for name, skip, take in files:
    while take > 0:
      part = min(take, block_size - filled)
      rows.append((name, skip, part))
      skip, take, filled = skip + part, take - part, filled + part
      if filled == block_size:
        row_splits.append(len(rows))
        sizes.append(filled)
        filled = 0
  if filled:
    row_splits.append(len(rows))
    sizes.append(filled)
  if not sizes:
    raise ValueError("the split has no records")
  names, skips, takes = zip(*rows)
  return BlockTable(np.array(names), np.array(skips, np.int64),
                    np.array(takes, np.int64),
                    np.array(row_splits, np.int64), np.array(sizes, np.int64))


def _key(seed: int, domain: int, value) -> tf.Tensor:
  """A stateless seed for `value` in one of the order's two uses (block order, block shuffle)."""
  return tf.random.experimental.stateless_fold_in(
      tf.constant([seed, domain], tf.int64), tf.cast(value, tf.int64))


def _blocks_at(places, epoch, seed: int, num_blocks: int) -> tf.Tensor:
  """The blocks at `places` (scalar or vector) of epoch `epoch`'s block order."""
  return tf.random.experimental.index_shuffle(
      tf.cast(places, tf.int64), _key(seed, 0, epoch), num_blocks - 1)


def resume_point(table: BlockTable, seed: int, pipelines: int,
                 pipeline_id: int, position: int) -> tuple[int, int]:
  """Where a pipeline that has consumed `position` records goes on.

  Returns:
    (k, offset): the pipeline's k-th block (sequence number
    `pipeline_id + k * pipelines`) and how many of its records were consumed.
  """
  blocks = table.num_blocks
  k = 0
  while True:
    # The pipeline's blocks in the epoch of its k-th block: a whole epoch is
    # skipped at once (its size depends on where the short last block went).
    first = pipeline_id + k * pipelines
    left_in_epoch = (first // blocks + 1) * blocks - first
    count = -(-left_in_epoch // pipelines)
    sequence = first + np.arange(count, dtype=np.int64) * pipelines
    epoch = first // blocks
    sizes = table.sizes[_blocks_at(sequence - epoch * blocks, epoch, seed,
                                   blocks).numpy()]
    if position >= sizes.sum():
      position -= int(sizes.sum())
      k += count
      continue
    done = int(np.searchsorted(np.cumsum(sizes), position, side="right"))
    return k + done, position - int(sizes[:done].sum())


def records(table: BlockTable, seed: int, pipelines: int = 1,
            pipeline_id: int = 0, position: int = 0) -> tf.data.Dataset:
  """One input pipeline's endless training order of serialized records.

  Args:
    table: the split's blocks.
    seed: the run's seed.
    pipelines: input pipelines (workers) sharing the split.
    pipeline_id: this pipeline.
    position: records this pipeline has consumed already (resumption).

  Returns:
    A dataset of scalar tf.string records, starting at `position`.
  """
  if not 0 <= pipeline_id < pipelines:
    raise ValueError(f"`pipeline_id` must be in [0, {pipelines}), not "
                     f"{pipeline_id}")
  k, offset = resume_point(table, seed, pipelines, pipeline_id, position)
  blocks = table.num_blocks
  block_size = int(table.sizes.max())
  files = tf.constant(table.files)
  skips, takes = tf.constant(table.skips), tf.constant(table.takes)
  row_splits = tf.constant(table.row_splits)

  def read(name, skip, take):
    return tf.data.TFRecordDataset(name).skip(skip).take(take)

  def load_block(k):
    sequence = pipeline_id + k * pipelines
    block = _blocks_at(sequence % blocks, sequence // blocks, seed, blocks)
    rows = slice(row_splits[block], row_splits[block + 1])
    reads = tf.data.Dataset.from_tensor_slices(
        (files[rows], skips[rows], takes[rows]))
    whole = reads.interleave(
        read, cycle_length=_READ_PARALLELISM,
        num_parallel_calls=_READ_PARALLELISM, deterministic=True)
    whole = whole.batch(block_size).get_single_element()
    return tf.random.experimental.stateless_shuffle(
        whole, _key(seed, 1, sequence))

  ds = tf.data.Dataset.range(k, np.iinfo(np.int64).max).map(load_block)
  # The next block is read while this one is consumed.
  ds = ds.prefetch(1).flat_map(tf.data.Dataset.from_tensor_slices)
  return ds.skip(offset)
