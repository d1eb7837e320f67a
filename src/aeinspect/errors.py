"""One exception family; the CLI turns each into an ``Error: …`` line and exit code 2."""


class AeinspectError(Exception):
    """A user's input or request cannot be carried out; the message says why."""


class InputError(AeinspectError):
    """An image, folder, path list or option value is unusable."""


class ModelFileError(AeinspectError):
    """A model file is missing, unreadable, foreign or of an unknown format version."""


class DeviceError(AeinspectError):
    """The requested compute device does not exist on this machine."""


class TrainingError(AeinspectError):
    """Training cannot go on, e.g. the loss diverged."""
