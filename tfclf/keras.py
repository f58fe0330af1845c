"""The one import point for Keras in tfclf.

TF-MOT (pruning, clustering, QAT) only accepts models built with ``tf_keras``, the
Keras 2 API. Every module imports Keras from here; nothing imports ``keras`` (Keras 3)
or ``tf.keras`` directly, so tf_keras and Keras 3 objects never mix.
"""

import tf_keras as keras
from tf_keras import layers

import tfclf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

__all__ = ["keras", "layers"]
