"""Export: SavedModels with TensorFlow-Serving signatures, written atomically by version.

The binary that drives it is `tf_resnet.export` (`tf_resnet/export.py`).
"""
