"""Training: the loop (``trainer``), its phases, callbacks and learning-rate schedules."""
