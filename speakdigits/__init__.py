"""speakdigits: the domain code of the spoken-digit VAE pipeline.

Plain functions over numpy arrays and files; the thin entry points that DVC
runs live in ``stages/``.
"""
