"""Building TensorFlow Serving requests for images."""

from typing import Optional

from tensorflow_serving.apis import classification_pb2

IMAGE_FEATURE = "image/encoded"


def classify_request(images: list[bytes], model_name: str, signature: str,
                     version: Optional[int] = None
                     ) -> classification_pb2.ClassificationRequest:
  """A Classify request with one tf.Example (`image/encoded`) per image."""
  request = classification_pb2.ClassificationRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  for data in images:
    example = request.input.example_list.examples.add()
    example.features.feature[IMAGE_FEATURE].bytes_list.value.append(data)
  return request
