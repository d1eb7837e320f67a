"""``make bench``: aeinspect's segment and training speed against baselines measured in the
same run, and against this machine's fp32 matrix-multiply rate.

    python benchmarks/bench.py [--json bench.json] [--repeats 5] [--device cpu|cuda]

Every figure is the median of several timed runs after warm-up. Every timed run of aeinspect
follows a run of its baseline and a measurement of the matmul rate, and the ratios are medians
over those triples: on a shared machine the rate drifts by ±20 % within minutes, and the
baseline with it. Peak memory is measured
in child processes (their maximum resident set size), one per task. The process sets glibc's
malloc up as the ``aeinspect`` command does (``runtime.keep_freed_memory``), for both
aeinspect and the baselines.

With ``--device cuda`` everything (matmul, baselines, aeinspect) runs on the GPU, each timed
run ending in a synchronisation; peak GPU memory is reported beside the host's RSS. PyTorch
runs cuDNN convolutions in TF32 by default but fp32 matrix products in full fp32, so on a GPU
the "ratio to the matmul rate" compares against a rate the network is not bound by.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeinspect.data.images import Preprocess
from aeinspect.data.sources import ImageSource
from aeinspect.infer.outputs import DEFAULT_SAVE, write_outputs
from aeinspect.infer.segment import segment_images
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.base import TrainingBatch, get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.decision import Decision
from aeinspect.maps.windows import SegmentConfig, coverage, window_positions
from aeinspect.model.file import ModelFile, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets.autoencoder import Autoencoder
from aeinspect.nets.ssim_loss import C1, C2, gaussian_kernel
from aeinspect.nets.unet import focal_loss
from aeinspect.runtime import keep_freed_memory
from aeinspect.train.step import CPU_MICRO_BATCH, new_model, train_step
from fit_scaling import fit_scaling, print_fit_scaling
from patchcore_bench import patchcore_speed, print_patchcore
from scaling import gloo_processes, onnx_against_torch, print_scaling, shard_processes
from unattended import large_image_segment, print_unattended, thread_scaling

PATCH, LATENT, STRIDE = 128, 100, 30
SIZES = {"1024x700": (700, 1024), "512x512": (512, 512)}


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_MATRICES: list[torch.Tensor] = []
DEVICE = torch.device("cpu")  # set once by main from --device


def synchronise() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def matmul_gflops_now() -> float:
    """This moment's fp32 matmul rate in GFLOP/s: the best of three products of 2048² (CPU)
    or 8192² (GPU) matrices."""
    side = 2048 if DEVICE.type == "cpu" else 8192
    if not _MATRICES:
        _MATRICES.extend(torch.randn(side, side, device=DEVICE) for _ in range(2))
    a, b = _MATRICES

    def product() -> None:
        a @ b
        synchronise()

    return 2 * side**3 / min(median_seconds(product, 1, warmup=1) for _ in range(3)) / 1e9


@dataclass(frozen=True)
class PairedTiming:
    """Times of a task and, measured just before each run, the machine's matmul rate and
    the baseline's time.

    On a shared machine the rate drifts by ±20 % within minutes, and the baseline's time
    (single-window calls, sensitive to the second core's availability) swings between about
    2.4 and 3.8 s on the same machine; pairing each run with the rate and the baseline of
    that moment keeps the ratios honest.
    """

    seconds: list[float]
    matmul_gflops: list[float]
    baseline_seconds: list[float]

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def speedup(self) -> float:
        """Median over runs of (the baseline's time) / (the run's time)."""
        return statistics.median(
            base / ours for base, ours in zip(self.baseline_seconds, self.seconds, strict=True)
        )

    def work_fraction(self, gflop: float) -> float:
        """Median over runs of (gflop at that moment's matmul rate) / (the run's time)."""
        return statistics.median(
            gflop / rate / seconds
            for seconds, rate in zip(self.seconds, self.matmul_gflops, strict=True)
        )


def paired_timing(
    run: Callable[[], object], baseline: Callable[[], object], repeats: int, warmup: int = 2
) -> PairedTiming:
    """Time ``run`` ``repeats`` times, each run just after a run of ``baseline`` and a
    measurement of the matmul rate."""
    for _ in range(warmup):
        baseline()
        run()
    seconds, rates, baseline_seconds = [], [], []
    for _ in range(repeats):
        baseline_seconds.append(median_seconds(baseline, 1, warmup=0))
        rates.append(matmul_gflops_now())
        seconds.append(median_seconds(run, 1, warmup=0))
    return PairedTiming(seconds, rates, baseline_seconds)


def network_gflop(model: nn.Module, patch: int) -> float:
    """Forward multiply-adds × 2 of one patch, counted from the layers' shapes."""
    flops = 0
    hooks = []

    def count(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal flops
        cin, cout = layer.in_channels, layer.out_channels
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        positions = inputs[0][0, 0].numel() if isinstance(layer, nn.ConvTranspose2d) else (
            output[0, 0].numel()
        )  # fmt: skip
        flops += 2 * cin * cout * kernel * positions

    for layer in model.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            hooks.append(layer.register_forward_hook(count))
    with torch.inference_mode():
        model(torch.rand(1, model.channels, patch, patch, device=DEVICE))
    for hook in hooks:
        hook.remove()
    return flops / 1e9


def plain_network() -> nn.Module:
    """Table 1 built from stock torch layers only (the output layer a plain ConvTranspose2d,
    not aeinspect's faster inference form of it), NCHW, in eval mode."""
    network = Autoencoder(PATCH, latent=LATENT).eval()
    fast = network.decoder[-1]
    stock = nn.ConvTranspose2d(fast.in_channels, fast.out_channels, 4, stride=2, padding=1)
    stock.load_state_dict(fast.state_dict())
    network.decoder[-1] = stock
    return network.to(DEVICE)


def baseline_ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """The straightforward SSIM: five separate 2-D convolutions, reflect-101 padding."""
    g = torch.as_tensor(gaussian_kernel(window), dtype=x.dtype, device=x.device)
    kernel = torch.outer(g, g)[None, None]
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), kernel)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))


def baseline_segment(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """A per-patch loop: one forward call per window (batch 1), summed overlaps, one SSIM."""
    _, height, width = image.shape
    total = torch.zeros_like(image)
    ys, xs = window_positions(height, PATCH, STRIDE), window_positions(width, PATCH, STRIDE)
    with torch.inference_mode():
        for y in ys:
            for x in xs:
                window = image[None, :, y : y + PATCH, x : x + PATCH]
                total[:, y : y + PATCH, x : x + PATCH] += model(window)[0]
        counts = np.outer(coverage(height, ys, PATCH), coverage(width, xs, PATCH))
        recon = total / torch.from_numpy(counts).to(image)
        residual = 1 - baseline_ssim_map(image[None], recon[None])
        synchronise()
        return residual


def segment_files(model_path: Path, image_path: Path, out: Path) -> None:
    """aeinspect's segment path end to end: read, segment, write mask/residual/overlay."""
    from aeinspect.model.file import load_model

    segmenter = Segmenter(load_model(model_path), DEVICE)
    source = ImageSource(image_path, Path(image_path.stem))
    decision = Decision(threshold=0.5)
    for result in segment_images([source], segmenter, SegmentConfig(), decision):
        write_outputs(result, out, DEFAULT_SAVE)


def train_steps(batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """aeinspect's training step on a batch of random patches (``training.train_step``, as
    ``train`` runs it) and the baseline's: one NCHW pass with the five-convolution SSIM.
    Each has its own model and optimizer."""
    patches = torch.rand(batch, 1, PATCH, PATCH, device=DEVICE)
    micro_batch = CPU_MICRO_BATCH if DEVICE.type == "cpu" else batch  # as fit() chooses
    batch_of_patches = TrainingBatch.clean(patches)
    noise = torch.Generator().manual_seed(0)

    def model_and_optimizer(fast: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = new_model(ModelConfig(patch_size=PATCH, latent=LATENT), seed=0).to(DEVICE)
        if fast:
            model = model.to(memory_format=torch.channels_last)
        return model, torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)

    ours, ours_optimizer = model_and_optimizer(fast=True)
    plain, plain_optimizer = model_and_optimizer(fast=False)

    def step() -> None:
        train_step(ours, ours_optimizer, batch_of_patches, noise, micro_batch=micro_batch)

    def baseline_step() -> None:
        loss = (1 - baseline_ssim_map(plain(patches), patches)).mean()
        plain_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        plain_optimizer.step()
        synchronise()

    return step, baseline_step


# --- the kinds trained on synthetic defects (draem, unet), at the patch size of their recipe

SYNTHETIC_KINDS = ("draem", "unet")
KIND_PATCH = 64


def kind_config(kind: str) -> ModelConfig:
    return ModelConfig(kind=kind, patch_size=KIND_PATCH, latent=LATENT)


def conv_gflop(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Forward multiply-adds × 2 of ``module(*inputs)`` over its convolutions."""
    flops = 0

    def count(layer: nn.Module, given: tuple, output: torch.Tensor) -> None:
        nonlocal flops
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        transposed = isinstance(layer, nn.ConvTranspose2d)
        positions = (given[0] if transposed else output)[0, 0].numel()
        flops += 2 * layer.in_channels * layer.out_channels * kernel * positions // layer.groups

    hooks = [layer.register_forward_hook(count) for layer in module.modules()
             if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d)]  # fmt: skip
    with torch.inference_mode():
        module(*inputs)
    for hook in hooks:
        hook.remove()
    return flops / 1e9


def kind_gflop_per_patch(kind: str) -> float:
    """Forward GFLOP of one P×P patch through a kind's networks."""
    network = new_model(kind_config(kind), seed=0).to(DEVICE).eval()
    patch = torch.rand(1, 1, KIND_PATCH, KIND_PATCH, device=DEVICE)
    if kind == "unet":
        return conv_gflop(network.discriminator, patch)
    pair = torch.cat([patch, patch], dim=1)
    return conv_gflop(network.restorer, patch) + conv_gflop(network.discriminator, pair)


def plain_kind_loss(kind: str, network: nn.Module, batch: TrainingBatch) -> torch.Tensor:
    """The kind's loss written plainly: one pass, SSIM by five convolutions, NCHW (the focal
    loss is aeinspect's: a few elementwise operations)."""
    gamma = network.config.settings.focal_gamma
    if kind == "unet":
        logits = network.discriminator(batch.inputs)[:, 0]
        return focal_loss(logits, batch.masks, gamma)
    recon = network.restorer(batch.inputs)
    restore = F.mse_loss(recon, batch.targets)
    restore = restore + (1 - baseline_ssim_map(recon, batch.targets)).mean()
    logits = network.discriminator(torch.cat([batch.inputs, recon], dim=1))[:, 0]
    return restore + focal_loss(logits, batch.masks, gamma)


def kind_train_steps(kind: str, batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step of ``kind`` as ``train`` runs it (synthetic defects drawn on the CPU,
    channels-last, micro-batches) and the plain one (the same defects and networks, one
    NCHW pass, the plain loss); each with its own network and optimizer."""
    config = kind_config(kind)
    patches = torch.rand(batch, 1, KIND_PATCH, KIND_PATCH)
    micro_batch = CPU_MICRO_BATCH if DEVICE.type == "cpu" else batch
    noise, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)

    def network_and_optimizer(fast: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
        network = new_model(config, seed=0).to(DEVICE)
        if fast:
            network = network.to(memory_format=torch.channels_last)
        return network, torch.optim.Adam(network.parameters(), lr=1e-3)

    ours, ours_optimizer = network_and_optimizer(fast=True)
    plain, plain_optimizer = network_and_optimizer(fast=False)

    def step() -> None:
        prepared = get_kind(kind).training_batch(patches, rng, config).to(DEVICE)
        train_step(ours, ours_optimizer, prepared, noise, micro_batch=micro_batch)

    def baseline_step() -> None:
        prepared = get_kind(kind).training_batch(patches, rng, config).to(DEVICE)
        loss = plain_kind_loss(kind, plain, prepared)
        plain_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        plain_optimizer.step()
        synchronise()

    return step, baseline_step


def plain_kind_segment(kind: str, network: nn.Module, image: torch.Tensor) -> np.ndarray:
    """The kind's map written plainly: for draem a per-patch loop over the windows, then the
    U-Net over the whole (padded) image, the sigmoid and any smoothing."""
    with torch.inference_mode():
        planes = image
        if kind == "draem":
            total = torch.zeros_like(image)
            height, width = image.shape[1:]
            ys = window_positions(height, KIND_PATCH, STRIDE)
            xs = window_positions(width, KIND_PATCH, STRIDE)
            for y in ys:
                for x in xs:
                    window = image[None, :, y : y + KIND_PATCH, x : x + KIND_PATCH]
                    total[:, y : y + KIND_PATCH, x : x + KIND_PATCH] += network.restorer(window)[0]
            counts = np.outer(coverage(height, ys, KIND_PATCH), coverage(width, xs, KIND_PATCH))
            planes = torch.cat([image, total / torch.from_numpy(counts).to(image)])
        height, width = planes.shape[1:]
        multiple = network.discriminator.multiple
        padded = F.pad(planes[None], (0, (-width) % multiple, 0, (-height) % multiple),
                       mode="replicate")  # fmt: skip
        logits = network.discriminator(padded)[0, 0, :height, :width]
        probability = torch.sigmoid(logits).cpu().numpy()
        synchronise()
    sigma = network.config.settings.map_sigma
    if not sigma:
        return probability
    return cv2.GaussianBlur(probability, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def bench_kind(kind: str, folder: Path, image_path: Path, repeats: int) -> dict:
    """Training at batch 32 and segmenting the 1024×700 image, each against its plain form."""
    config = kind_config(kind)
    network = new_model(config, seed=0)
    model_path = folder / f"{kind}.pt"
    save_model(model_path, ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                                     state_dict=network.state_dict()))  # fmt: skip
    step, baseline_step = kind_train_steps(kind, 32)
    trained = paired_timing(step, baseline_step, repeats, warmup=2)
    plain = network.to(DEVICE).eval()
    image = torch.from_numpy(cv2.imread(str(image_path), 0).astype(np.float32) / 255)[None]
    image = image.to(DEVICE)
    segmented = paired_timing(
        lambda: segment_files(model_path, image_path, folder / "out"),
        lambda: plain_kind_segment(kind, plain, image), repeats, warmup=1,
    )  # fmt: skip
    padded = torch.zeros(1, 2 if kind == "draem" else 1, 704, 1024, device=DEVICE)
    segment_gflop = conv_gflop(plain.discriminator, padded)
    if kind == "draem":
        windows = len(window_positions(700, KIND_PATCH, STRIDE)) * len(
            window_positions(1024, KIND_PATCH, STRIDE)
        )
        segment_gflop += windows * conv_gflop(plain.restorer, image[None, :, :64, :64])
    gflop = kind_gflop_per_patch(kind)
    return {
        "gflop_per_patch": gflop,
        "train_patches_per_second": 32 / trained.median_seconds,
        "train_baseline_patches_per_second": 32 / statistics.median(trained.baseline_seconds),
        "train_speedup": trained.speedup,
        "train_fraction_of_matmul": trained.work_fraction(32 * 3 * gflop),
        "segment_seconds": segmented.median_seconds,
        "segment_baseline_seconds": statistics.median(segmented.baseline_seconds),
        "segment_speedup": segmented.speedup,
        "segment_ratio_to_matmul_bound": 1 / segmented.work_fraction(segment_gflop),
        "matmul_gflops": statistics.median(trained.matmul_gflops + segmented.matmul_gflops),
    }


def peak_memory_mb(task: str, *args: str) -> dict[str, float]:
    """Peak memory of a fresh child process running ``task`` once, in MB: "rss" (maximum
    resident set size) and, on a GPU, "gpu" (most GPU memory held by tensors)."""
    child_run = subprocess.run(
        [sys.executable, __file__, "--device", str(DEVICE), "--child", task, *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {line.split()[0]: float(line.split()[1]) for line in child_run.stdout.splitlines()}


def child(task: str, args: list[str]) -> None:
    """Run one task and print its peak memory in MB, a "name value" line per figure."""
    if task == "segment":
        segment_files(Path(args[0]), Path(args[1]), Path(args[2]))
    elif task == "train":
        step, _ = train_steps(128)
        step()
    if DEVICE.type == "cuda":
        print(f"gpu {torch.cuda.max_memory_allocated(DEVICE) / 2**20:.0f}")
    print(f"rss {peak_rss_mb():.0f}")


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: Linux's VmHWM, which starts afresh at
    exec (``ru_maxrss`` keeps the high-water mark of the process that forked it, here the
    benchmark's own), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(folder: Path) -> tuple[Path, dict[str, Path]]:
    config = ModelConfig(patch_size=PATCH, latent=LATENT)
    model_path = folder / "model.pt"
    save_model(model_path, ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                                     state_dict=new_model(config, 0).state_dict()))  # fmt: skip
    rng = np.random.default_rng(0)
    images = {}
    for name, (height, width) in SIZES.items():
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), (rng.random((height, width)) * 255).astype(np.uint8))
        images[name] = path
    return model_path, images


def bench_segment(
    plain: nn.Module,
    model_path: Path,
    image_path: Path,
    size: tuple[int, int],
    gflop: float,
    repeats: int,
) -> dict:
    """aeinspect's segment path against the per-patch loop on one generated image."""
    height, width = size
    windows = len(window_positions(height, PATCH, STRIDE)) * len(
        window_positions(width, PATCH, STRIDE)
    )
    pixels = cv2.imread(str(image_path), 0).astype(np.float32) / 255
    image = torch.from_numpy(pixels)[None].to(DEVICE)
    out = image_path.parent / "out"
    ours = paired_timing(
        lambda: segment_files(model_path, image_path, out),
        lambda: baseline_segment(plain, image),
        repeats,
        warmup=1,
    )
    return {"windows": windows, "seconds": ours.median_seconds,
            "baseline_seconds": statistics.median(ours.baseline_seconds),
            "speedup": ours.speedup, "matmul_gflops": statistics.median(ours.matmul_gflops),
            "ratio_to_matmul_bound": 1 / ours.work_fraction(windows * gflop)}  # fmt: skip


def bench_train(batch: int, gflop: float, repeats: int) -> dict:
    step, baseline_step = train_steps(batch)
    ours = paired_timing(step, baseline_step, repeats, warmup=2)
    return {"patches_per_second": batch / ours.median_seconds,
            "baseline_patches_per_second": batch / statistics.median(ours.baseline_seconds),
            "speedup": ours.speedup, "matmul_gflops": statistics.median(ours.matmul_gflops),
            "fraction_of_matmul": ours.work_fraction(batch * 3 * gflop)}  # fmt: skip


def run(repeats: int) -> dict:
    """Every measurement; each ratio to the matmul rate pairs a run with that moment's rate."""
    results: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
                    "device": str(DEVICE)},
    }  # fmt: skip
    if DEVICE.type == "cuda":
        results["machine"]["gpu"] = torch.cuda.get_device_name(DEVICE)
    plain = plain_network()
    gflop = network_gflop(plain, PATCH)
    results["network_gflop_per_patch"] = gflop
    with tempfile.TemporaryDirectory() as folder:
        model_path, images = make_inputs(Path(folder))
        results["segment"] = {
            name: bench_segment(plain, model_path, path, SIZES[name], gflop, repeats)
            for name, path in images.items()
        }
        results["segment_peak_mb"] = peak_memory_mb(
            "segment", str(model_path), str(images["1024x700"]), str(Path(folder) / "out")
        )
        if DEVICE.type == "cpu":
            results["onnx"] = onnx_against_torch(model_path, images["1024x700"], repeats,
                                                 paired_timing)  # fmt: skip
            results["shards"] = shard_processes(model_path)
        results["kinds"] = {
            kind: bench_kind(kind, Path(folder), images["1024x700"], repeats)
            for kind in SYNTHETIC_KINDS
        }
        if DEVICE.type == "cpu":
            results["patchcore"] = patchcore_speed(Path(folder), repeats, paired_timing,
                                                   segment_files, peak_memory_mb)  # fmt: skip
    results["train"] = {str(batch): bench_train(batch, gflop, repeats) for batch in (32, 64, 128)}
    results["train_peak_mb"] = peak_memory_mb("train")
    if DEVICE.type == "cpu":
        results["large_image"] = large_image_segment()
        results["threads"] = thread_scaling()
        results["gloo"] = gloo_processes()
        results["fit_scaling"] = fit_scaling()
    return results


def describe_memory(peak: dict[str, float]) -> str:
    gpu = f", GPU {peak['gpu']:.0f} MB" if "gpu" in peak else ""
    return f"RSS {peak['rss']:.0f} MB{gpu}"


def print_table(results: dict) -> None:
    machine = results["machine"]
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), device {machine.get('gpu', 'cpu')}")  # fmt: skip
    print(
        f"network forward {results['network_gflop_per_patch']:.4f} GFLOP per {PATCH}² patch; "
        "each ratio pairs every timed run with the baseline and fp32 matmul rate just before it"
    )
    if machine["device"] != "cpu":
        print("on a GPU cuDNN convolutions run in TF32, so the fp32 matmul rate is no bound: "
              "read the times and speedups")  # fmt: skip
    print(f"\n{'segment':<10} {'windows':>7} {'aeinspect s':>11} {'per-patch s':>11} "
          f"{'speedup':>7} {'matmul GFLOP/s':>14} {'of bound':>8}")  # fmt: skip
    for name, row in results["segment"].items():
        print(f"{name:<10} {row['windows']:>7} {row['seconds']:>11.3f} "
              f"{row['baseline_seconds']:>11.3f} {row['speedup']:>6.2f}x "
              f"{row['matmul_gflops']:>14.0f} "
              f"{row['ratio_to_matmul_bound']:>7.2f}x")  # fmt: skip
    print(f"segment 1024x700 peak memory: {describe_memory(results['segment_peak_mb'])}")
    print(f"\n{'train batch':<12} {'aeinspect p/s':>13} {'baseline p/s':>12} {'speedup':>7} "
          f"{'matmul GFLOP/s':>14} {'of matmul':>9}")  # fmt: skip
    for batch, row in results["train"].items():
        print(f"{batch:<12} {row['patches_per_second']:>13.1f} "
              f"{row['baseline_patches_per_second']:>12.1f} {row['speedup']:>6.2f}x "
              f"{row['matmul_gflops']:>14.0f} {row['fraction_of_matmul']:>8.1%}")  # fmt: skip
    print(f"train batch 128 peak memory: {describe_memory(results['train_peak_mb'])}")
    print(f"\nkinds on synthetic defects, P = {KIND_PATCH}: training at batch 32 (defects drawn "
          "on the CPU included in both), segmenting the 1024x700 image at stride 30")  # fmt: skip
    print(
        f"{'kind':<7} {'GFLOP/p':>7} {'train p/s':>9} {'plain p/s':>9} {'speedup':>7} "
        f"{'of matmul':>9} {'segment s':>9} {'plain s':>7} {'speedup':>7} {'of bound':>8}"
    )
    for kind, row in results["kinds"].items():
        print(f"{kind:<7} {row['gflop_per_patch']:>7.4f} {row['train_patches_per_second']:>9.1f} "
              f"{row['train_baseline_patches_per_second']:>9.1f} {row['train_speedup']:>6.2f}x "
              f"{row['train_fraction_of_matmul']:>8.1%} {row['segment_seconds']:>9.3f} "
              f"{row['segment_baseline_seconds']:>7.3f} {row['segment_speedup']:>6.2f}x "
              f"{row['segment_ratio_to_matmul_bound']:>7.2f}x")  # fmt: skip
    if "patchcore" in results:
        print_patchcore(results["patchcore"])
    if "large_image" in results:
        print_unattended(results)
        print_scaling(results)
    if "fit_scaling" in results:
        print_fit_scaling(results["fit_scaling"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    keep_freed_memory()  # as the aeinspect command does; the baselines run under it too
    if args.child:
        child(args.child[0], args.child[1:])
        return
    results = run(args.repeats)
    print_table(results)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
