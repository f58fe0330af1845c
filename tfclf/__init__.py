"""tfclf: train small image classifiers with TensorFlow/Keras and ship them to phones.

Importing the package, before TensorFlow is imported anywhere:
- selects the Keras 2 API (``tf_keras``) for TensorFlow, which TF-MOT requires;
- turns on TensorFlow's oneDNN kernels on every x86 CPU. TensorFlow enables them by default
  only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (``DefaultOneDnnPolicy``,
  tensorflow/core/util/port.cc) and runs slower Eigen kernels elsewhere: on the AVX2-only
  machines here float32 training was about 2x slower without them (docs/decisions/onednn.md). A value the user set is kept.
"""

import os
import platform

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ONEDNN_SET_BY_USER = "TF_ENABLE_ONEDNN_OPTS" in os.environ
if not ONEDNN_SET_BY_USER and platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"

__version__ = "0.3.0"
