#!/usr/bin/env bash
# The ImageFolder measurements of docs/data.md: generates two folders in /tmp (never committed) and
# runs build/benchmarks/image_folder_throughput on each:
#   50,000 PNG images of 32x32 (CIFAR's size), 10 classes      -> /tmp/ardent_images_png32
#   5,000 JPEG images of 224x224 (ImageNet's size), 10 classes -> /tmp/ardent_images_jpg224
#
#   benchmarks/image_folder.sh [BUILD_DIR=build] [WORKERS=2]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
workers="${2:-2}"
tool=/tmp/ardent_make_image_folder
g++ -O2 -std=c++20 "$root/benchmarks/make_image_folder.cpp" -o "$tool" -lpng -ljpeg
[ -d /tmp/ardent_images_png32 ] || "$tool" /tmp/ardent_images_png32 50000 32 png
[ -d /tmp/ardent_images_jpg224 ] || "$tool" /tmp/ardent_images_jpg224 5000 224 jpg
bench="$build/benchmarks/image_folder_throughput"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
"$bench" /tmp/ardent_images_png32 --size 32 --batch 128 --workers "$workers" --steps 20 --decode-limit 0
"$bench" /tmp/ardent_images_jpg224 --size 224 --batch 32 --workers "$workers" --steps 10 --decode-limit 0
