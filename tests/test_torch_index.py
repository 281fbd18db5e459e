"""Which torch `make run` and the dev containers install: scripts/torch-index.sh, with fake
`uname` and `nvidia-smi` commands first on PATH, and the Makefile's use of it (`make -n`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU = "https://download.pytorch.org/whl/cpu"
GPU_LIST = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5a6b7c8d-0000-1111-2222-333344445555)"


def fake_path(tmp_path: Path, system: str, nvidia_smi: str | None) -> str:
    """A PATH whose `uname -s` says `system` and whose `nvidia-smi` (if any) runs the given
    shell code, then this PATH's folders but those holding a real nvidia-smi (on a machine
    with a GPU)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    commands = {"uname": f"echo {system}"}
    if nvidia_smi is not None:
        commands["nvidia-smi"] = nvidia_smi
    for name, body in commands.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    rest = [p for p in os.environ["PATH"].split(":") if not Path(p, "nvidia-smi").exists()]
    return ":".join([str(bin_dir), *rest])


@pytest.mark.parametrize(("system", "nvidia_smi", "index"), [
    ("Linux", None, CPU),  # no NVIDIA tools at all
    ("Linux", f"echo '{GPU_LIST}'", ""),  # a GPU: PyPI's Linux wheel is the CUDA build
    ("Linux", "echo 'NVIDIA-SMI has failed: no driver' >&2; exit 9", CPU),  # tools, no GPU
    ("Linux", "echo 'No devices were found'", CPU),
    ("Darwin", None, ""),  # PyPI's macOS wheels (CPU and Apple's MPS)
    ("MINGW64_NT-10.0-22631", None, ""),  # Git Bash on Windows
])
def test_the_index_chosen_for_each_machine(tmp_path: Path, system: str, nvidia_smi: str | None,
                                           index: str) -> None:
    path = fake_path(tmp_path, system, nvidia_smi)
    result = subprocess.run(["sh", str(ROOT / "scripts" / "torch-index.sh")], env={"PATH": path},
                            capture_output=True, text=True, check=True)
    assert result.stdout == index + "\n"


def torch_line(tmp_path: Path, path: str, *args: str) -> str:
    """The Makefile's torch install command, as `make -n` prints it for a fresh venv."""
    venv = tmp_path / "venv"
    result = subprocess.run(["make", "-n", "-B", f"{venv}/.installed", f"VENV={venv}", *args],
                            cwd=ROOT, env={"PATH": path}, capture_output=True, text=True,
                            check=True)
    [line] = [line for line in result.stdout.splitlines() if '"torch==' in line]
    return line


def test_make_installs_the_chosen_torch_unless_torch_index_says_otherwise(
        tmp_path: Path) -> None:
    no_gpu = fake_path(tmp_path, "Linux", None)
    assert torch_line(tmp_path, no_gpu).endswith(f'"torch==2.13.0" --index-url {CPU}')
    assert torch_line(tmp_path, no_gpu, "TORCH_INDEX=").endswith('"torch==2.13.0" ')
    assert torch_line(tmp_path, no_gpu, "TORCH_INDEX=https://example.test/whl/cu128").endswith(
        "--index-url https://example.test/whl/cu128")
    gpu_dir = tmp_path / "gpu"
    gpu_dir.mkdir()
    gpu = fake_path(gpu_dir, "Linux", f"echo '{GPU_LIST}'")
    assert torch_line(tmp_path, gpu).endswith('"torch==2.13.0" ')
