"""Training: what a model trains on (images or a patch folder, the held-out images), the
Adam loop with its sessions, steps and records, torchrun, ``--resume``, and the fit path of
the kinds that are fitted in one pass instead. Writes model files (``aeinspect.model``) and
chooses the first operating point through ``aeinspect.infer``."""
