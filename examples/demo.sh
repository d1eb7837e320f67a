#!/usr/bin/env bash
# The main job end to end on data made here: a synthetic woven fabric in MVTec AD layout,
# an SSIM autoencoder trained on its good images for 20 epochs (about 3 minutes on 2 CPU
# cores; a number of epochs, not of minutes, so that every machine trains the same model),
# the test images segmented, and the model evaluated. Run through `make demo`, which puts
# aeinspect on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-output
rm -rf "$out"
mkdir -p "$out"

echo "== 1. a synthetic woven fabric: 40 good training images, 26 test images with masks"
python examples/make_woven_dataset.py "$out/woven"

echo "== 2. train an SSIM autoencoder on the good images (64x64 patches, 20 epochs: about 3 minutes on 2 cores)"
aeinspect train "$out/woven/train/good" -o "$out/model.pt" \
    --size 64 --num 4000 --batch-size 32 --lr 1e-3 --epochs 20 --seed 0

echo "== 3. segment the test images: a mask, residual map and overlay per image, and a page"
aeinspect segment "$out/woven/test" -m "$out/model.pt" -o "$out/segmented" --report

echo "== 4. evaluate against the ground truth (metrics, plots and a report page)"
aeinspect evaluate "$out/woven" -m "$out/model.pt" -o "$out/report"

echo "== 5. the untrained reference: a Gaussian blur (sigma 16) as the reconstruction"
aeinspect train "$out/woven/train/good" -o "$out/blur.pt" --model blur --seed 0
aeinspect evaluate "$out/woven" -m "$out/blur.pt" -o "$out/report-blur"

echo
echo "Overlays (defects outlined in red): $out/segmented/<type>/<name>_overlay.png"
echo "Metrics and ROC/PRO plots:         $out/report/ (the blur reference: $out/report-blur/)"
echo "Every segmented image:             $out/segmented/index.html"
echo "Report (open it in a browser):     $out/report/index.html"
