"""Hydra imports every module under ``hydra_plugins`` before a task runs, so this one registers the
``infoaug_<base>`` methods for solo-learn's unchanged ``main_pretrain.py`` and ``main_linear.py``.
"""

import infoaug_plugin  # noqa: F401
