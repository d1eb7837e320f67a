"""Scoring a model on a labelled MVTec-layout set: the pixel, region and image metrics,
the evidence collected image by image, ``evaluate`` and ``tune`` as library calls, and the
paper's Table 2 grid (which trains a model per setting)."""
