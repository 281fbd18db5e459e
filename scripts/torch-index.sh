#!/bin/sh
# Prints the package index torch should come from on this machine, for `make run` and the
# dev containers' post-create script: empty for pip's own indexes.
#   Linux with an NVIDIA GPU (`nvidia-smi -L` lists one): empty, PyPI's Linux wheel being
#     the CUDA build;
#   Linux without one: PyTorch's CPU-only index, a fraction of the CUDA build's download;
#   macOS and Windows: empty, PyPI's wheels there are the only builds (CPU, or Apple's MPS).
# TORCH_INDEX, when set (even empty), overrides this: the callers only ask when it is unset.
case "$(uname -s)" in
  Linux)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
      echo ""
    else
      echo "https://download.pytorch.org/whl/cpu"
    fi
    ;;
  *)
    echo ""
    ;;
esac
