import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tfclf  # noqa: E402,F401  (Keras 2 and oneDNN chosen before TensorFlow loads)
