"""The networks, in torch: the paper's Table 1 autoencoder, the U-Net, AlexNet's first
layers, the SSIM loss with its gradient. They know nothing of files, kinds or maps: a kind
(``aeinspect.kinds``) builds them from its settings."""
