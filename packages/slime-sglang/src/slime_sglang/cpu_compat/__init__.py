"""CPU compatibility for SGLang: the folder holding the ``sgl_kernel`` stand-in (see README.md next to this file).

Nothing here is imported by slime itself; ``SGL_KERNEL_STANDIN_DIR`` goes first on the server subprocess's
``PYTHONPATH`` in CPU mode, so only that process sees the stand-in instead of the real (CUDA-only) package.
"""

from pathlib import Path

SGL_KERNEL_STANDIN_DIR = Path(__file__).resolve().parent
