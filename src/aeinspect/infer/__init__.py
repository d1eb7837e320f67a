"""Segmenting: the segmenter that runs a model's map maker over an image through a backend
(torch, or ONNX Runtime with no torch), the export to ONNX, the per-image output files, and
the choice of an operating point on good images. Above the model file; below training,
which chooses its first operating point here."""
