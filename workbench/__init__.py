"""PEFT Workbench engine: pretrained models, real datasets, PEFT methods, background runs.

The engine never imports streamlit: the app in ``pages/`` only reads what the engine records.
"""

import os

# Before TensorFlow initialises a GPU: grow memory on demand so several runs can share one card.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No hub downloads, ever: everything a run needs is shipped or installed.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KAGGLEHUB_OFFLINE", "1")

__version__ = "0.1.0"
