"""Model kinds, one module each (``ssim``, ``l2``, ``vae``, ``fm``, ``blur``, ``restore``,
``draem``, ``unet``): what a model is made of, how it learns and how it makes its map.
``registry`` finds them by name, ``config`` holds ``ModelConfig``, ``base`` what every kind
provides; a kind is a module with a ``KIND``. Above the networks (``nets``) and the maps
(``maps``); below the model file (``model``)."""
