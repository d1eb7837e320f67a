"""From a preprocessed image to a residual map, and from a map to a verdict: the sliding
windows and their stitching, SSIM, the residuals, the map makers (one class per way of
making a map, naming the network parts it calls), masks, operating points and the rules
that choose them. NumPy, SciPy and OpenCV only, no torch, so that ONNX Runtime runs exactly
what torch runs."""
