"""aeinspect: unsupervised defect segmentation with SSIM autoencoders."""

__version__ = "0.1.0"
