"""The options of ``train``, one alias each; their defaults are the settings' own (see
``options``), shown in the help of those that are None unless given."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aeinspect.cli.options import CROP, PREPROCESS, shown
from aeinspect.kinds.registry import kind_names

TrainImages = Annotated[
    list[str] | None,
    typer.Argument(
        help="Image files, folders (searched recursively), - (paths on stdin), or one patch "
        "folder written by crop. With --resume: the stored ones unless given.",
        show_default=False,
    ),
]
ModelOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Model file to write.  [required unless --resume; with "
                 "it, default: the resumed file]", show_default=False),
]  # fmt: skip
Kind = Annotated[
    str,
    typer.Option(help=f"Model kind: {', '.join(kind_names())} (blur: the untrained reference)."),
]

# crop options: None unless given (the patch folder's own, or the default shown)
Num = Annotated[
    int | None,
    typer.Option("--num", "--num-patches", help=shown(
        "Random training patches to cut (--num-patches under torchrun, whose own options "
        "--num would abbreviate).", CROP.num_patches)),
]  # fmt: skip
Size = Annotated[
    int | None, typer.Option(help=shown("Patch size P (multiple of 16, >= 32).", CROP.patch_size))
]
Channels = Annotated[
    int | None, typer.Option(help=shown("1 (gray) or 3 (colour).", PREPROCESS.channels))
]
Augment = Annotated[
    bool | None,
    typer.Option("--augment/--no-augment", help=shown("Random rotation and flips.", "augment")),
]

# the model
Latent = Annotated[int, typer.Option(help="Latent size d (100 textures, 500 complex).")]
Window = Annotated[int, typer.Option(help="SSIM window K (odd).")]
Blend = Annotated[str, typer.Option(help="Overlap average: uniform, gaussian or hann.")]
Smooth = Annotated[float, typer.Option(help="Gaussian σ on the residual (0 = none).")]
ResidualScale = Annotated[
    int, typer.Option(help="Compare image and reconstruction reduced F-fold (1 = full size).")
]

Defects = Annotated[
    str | None,
    typer.Option(help="With --synthetic: synthetic defect settings to change, as "
                 "NAME=NUMBER,… (e.g. clean_fraction=0.4,fills.flat=0.3; see the README). "
                 "[default: none changed]", show_default=False),
]  # fmt: skip
Synthetic = Annotated[
    bool,
    typer.Option("--synthetic", help="crop: give the patches synthetic defects as restore, "
                 "draem and unet train on, each with its mask (N_mask.png), to look at."),
]  # fmt: skip

# the schedule
Epochs = Annotated[int, typer.Option(help="Epochs at most.")]
PatchBatch = Annotated[int, typer.Option("--batch-size", help="Patches per step.")]
LearningRate = Annotated[float, typer.Option("--lr", help="Adam learning rate.")]
LearningRateSchedule = Annotated[
    str,
    typer.Option(
        help="constant, or step: × 0.2 after 80 % and 90 % of the epochs or of --max-minutes, "
        "whichever comes first."
    ),
]
WeightDecay = Annotated[float, typer.Option(help="Adam weight decay.")]
ValSplit = Annotated[float, typer.Option(help="Fraction of images held out.")]
FirstImageFpr = Annotated[
    float,
    typer.Option(help="The threshold chosen on the held-out images (tune --method bound): "
                 "about this fraction of new good images flagged."),
]  # fmt: skip
Patience = Annotated[int, typer.Option(help="Stop after N epochs without gain (0=never).")]
MaxMinutes = Annotated[
    float | None, typer.Option(help=shown("Stop after this many minutes.", "no limit"))
]
Seed = Annotated[int, typer.Option(help="Seed of split, patches, weights, order.")]
Resume = Annotated[
    Path | None,
    typer.Option(help="Go on training this model file, into itself unless -o is given: its "
                 "settings, images and state kept (only --epochs, --patience and "
                 "--max-minutes may change)."),
]  # fmt: skip
OverwriteModel = Annotated[bool, typer.Option("--overwrite", help="Replace an existing -o file.")]
OverwriteFolder = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace an -o folder that holds files, once the new one "
                 "is complete."),
]  # fmt: skip
CheckpointMinutes = Annotated[
    float,
    typer.Option(help="Within an epoch, write the model file at most this often (it is "
                 "written at every epoch's end too)."),
]  # fmt: skip
TrainReport = Annotated[
    Path | None,
    typer.Option("--report", help="Folder for index.html about the model once trained: loss "
                 "curves, training patches and synthetic defects, held-out reconstructions "
                 "(as aeinspect report)."),
]  # fmt: skip
