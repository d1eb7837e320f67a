"""Options that several commands share, and the settings whose defaults the options show.

Every default comes from the settings class that owns it (``aeinspect.config``,
``aeinspect.decision``, a kind's settings), so that it is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aeinspect.data.images import Preprocess
from aeinspect.data.patches import CropConfig
from aeinspect.infer.outputs import DEFAULT_SAVE, SAVE_KINDS
from aeinspect.infer.segmenter import BACKENDS
from aeinspect.infer.torch_backend import PRECISIONS
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.decision import DEFAULT_OPENING
from aeinspect.maps.thresholds import TuneConfig
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.schedule import TrainConfig

CROP = CropConfig()
MODEL = ModelConfig()
PREPROCESS = Preprocess()
SEGMENT = SegmentConfig()
TRAIN = TrainConfig()
TUNE = TuneConfig()

Images = Annotated[
    list[str],
    typer.Argument(help="Image files, folders (searched recursively) or - (paths on stdin)."),
]
ModelPath = Annotated[Path, typer.Option("--model-file", "-m", help="Trained model file.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (auto: CUDA if present).")]
DEFAULT_BACKEND = BACKENDS[0]  # torch
DEFAULT_PRECISION = next(iter(PRECISIONS))  # fp32
BackendOption = Annotated[
    str,
    typer.Option("--backend", help=f"{' or '.join(BACKENDS)}: ONNX Runtime on the CPU, for an "
                 ".onnx file from export (pip install 'aeinspect[onnx]')."),
]  # fmt: skip
Precision = Annotated[
    str,
    typer.Option(help="fp32, or bf16 or fp16 on a CUDA device (residual maps within the "
                 "README's tolerance of fp32)."),
]  # fmt: skip
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Stride = Annotated[int, typer.Option(help="Sliding-window stride s.")]
WindowBatch = Annotated[int, typer.Option("--batch-size", help="Windows per forward call.")]
Opening = Annotated[int, typer.Option(help="Opening diameter D, 0 = none.")]
Resize = Annotated[int | None, typer.Option(help="Down-scale to S x S first.")]
Scale = Annotated[float | None, typer.Option(help="Down-scale by a factor first.")]


def shown(help_text: str, default: object) -> str:
    """Help text that shows a default the option itself does not carry (an option left out
    is None: it means "the stored or derived value"), as Typer shows its own defaults."""
    return f"{help_text}  [default: {default}]"


MODEL_OPENING = f"the model's, else {DEFAULT_OPENING}"

# segment
Threshold = Annotated[
    float | None, typer.Option(help=shown("Residual threshold t.", "the model's"))
]
OpeningOverride = Annotated[
    int | None, typer.Option(help=shown("Opening diameter D, 0 = none.", MODEL_OPENING))
]
MinAreaOverride = Annotated[
    int | None,
    typer.Option(help=shown("Drop regions below this many pixels.", "the model's, else 0")),
]
OutputFolder = Annotated[
    Path | None, typer.Option("--output", "-o", help="Folder for per-image files.")
]
Save = Annotated[
    str | None,
    typer.Option(help=shown(f"Files to write with -o: {','.join(SAVE_KINDS)}.",
                            ",".join(DEFAULT_SAVE))),
]  # fmt: skip
OverwriteFiles = Annotated[
    bool,
    typer.Option("--overwrite", help="Write into an -o folder that holds files, replacing "
                 "those of the same names."),
]  # fmt: skip
SegmentReport = Annotated[
    bool,
    typer.Option("--report", help="With -o: also index.html, every image's input, "
                 "reconstruction, residual and segmentation as thumbnails, flagged first."),
]  # fmt: skip
JsonLines = Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")]
FailOnDefect = Annotated[
    bool, typer.Option("--fail-on-defect", help="Exit 1 when any image is defective.")
]
ShardOption = Annotated[
    str | None,
    typer.Option("--shard", help="i/n: process every n-th image from the i-th (0-based)."),
]
