"""Thin DVC stage entry points: read params, call the library, write outputs."""

import os

# Quiet most of TensorFlow's C++ logging, which hides the stage's own output (a few
# start-up notices print before absl reads this); errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
