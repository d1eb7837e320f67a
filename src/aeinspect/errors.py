"""One exception family, turned by the CLI into an ``Error: …`` line and exit code 2, and the
notes the core leaves for the user (``warnings.warn(Note(...))``), printed as ``Note: …``."""


class AeinspectError(Exception):
    """A user's input or request cannot be carried out; the message says why."""


class InputError(AeinspectError):
    """An image, folder, path list or option value is unusable."""


class OutputError(AeinspectError):
    """An output path cannot be written: a file where a folder belongs, a folder that is not
    empty, no permission, no space."""


class ModelFileError(AeinspectError):
    """A model file is missing, unreadable, foreign or of an unknown format version."""


class DeviceError(AeinspectError):
    """The requested compute device does not exist on this machine."""


class TrainingError(AeinspectError):
    """Training cannot go on, e.g. the loss diverged."""


class Interrupted(AeinspectError):
    """A long verb was stopped by a signal (Ctrl-C, SIGTERM) before it finished, and nothing
    of it is kept: a fit, which has no state to go on from."""


class Note(UserWarning):
    """Something the user should know that is not an error: an image converted to the
    model's channels (``label`` "Note"), an image so large it takes minutes and gigabytes
    ("Warning"). ``key`` names the kind of note: the CLI prints the first note of each key
    and no more, so that a folder of colour images gives one line, not thousands."""

    def __init__(self, message: str, *, key: str, label: str = "Note") -> None:
        super().__init__(message)
        self.key = key
        self.label = label
