"""speakdigits: the domain code of the spoken-digit VAE pipeline.

Plain functions over numpy arrays and files; the thin entry points that DVC
runs live in ``stages/``.
"""

import os

# TensorFlow's oneDNN kernels on every x86 CPU: TensorFlow turns them on by default only on
# some Intel CPUs, and without them a training step of the VAE took 1.5-1.9 times as long on
# the 2-core AMD reference machine (its single-channel output convolution above all). Capped at
# AVX2, so that a CPU with AVX-512 runs the same kernels as this one. Set here because TensorFlow
# reads both once, when it loads, and every entry point (the stages, the tests through conftest,
# the benchmarks) imports this package before TensorFlow; a value already in the environment wins.
TENSORFLOW_KERNELS = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}
for _name, _value in TENSORFLOW_KERNELS.items():
    os.environ.setdefault(_name, _value)
