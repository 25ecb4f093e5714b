"""A server that speaks TensorFlow Serving's gRPC protocol, and its client.

`python -m tf_resnet.serving.server` serves the export directories that
`tf_resnet.export` writes, with tensorflow_model_server's flag names, so a
deployment can move to the real server by changing the binary's name.
"""
