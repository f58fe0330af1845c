"""tfclf: train small image classifiers with TensorFlow/Keras and ship them to phones.

Importing the package selects the Keras 2 API (``tf_keras``) for TensorFlow, which
TF-MOT requires, before TensorFlow itself is imported anywhere.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
