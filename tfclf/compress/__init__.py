"""Compression: pruning, clustering and quantisation-aware training as training phases
(``methods``), and the pipeline from a finished run to verified ``.tflite`` files with a
byte-budget pick (``pipeline``; CLI ``python -m tfclf.compress``)."""
