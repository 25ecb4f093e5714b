"""Input: data sources, the paper's transforms, statistics and tf.data pipelines."""
