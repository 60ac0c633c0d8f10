#!/usr/bin/env bash
# Create .venv-torchvision at the repository root with torch 2.13.0 and torchvision 0.28.0 from the package
# registry, for the reference checks in benchmarks/ (torchvision_parity.py, eager_cpu.py) and the slow test
# tests/model/test_torchvision_parity.py.
#
# It downloads about 5 GB (the registry's torch wheel is the CUDA build, with its NVIDIA libraries; torchvision
# runs on the CPU from it). It is only for reference checks against torchvision: torchvision is never a maskrt
# dependency and maskrt never imports it.
#
# The system pip configuration points at a local folder of CPU wheels (PIP_FIND_LINKS and /etc/pip.conf);
# both are bypassed here so that pip resolves torch and torchvision from the registry as a matching pair.
#
# Usage: bash benchmarks/setup_torchvision_venv.sh   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-torchvision"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

cert=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cert=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi

env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "${cert[@]}" \
    "$venv/bin/pip" install torch==2.13.0 torchvision==0.28.0 numpy safetensors

"$venv/bin/python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
echo "done: run the checks with $venv/bin/python benchmarks/torchvision_parity.py"
