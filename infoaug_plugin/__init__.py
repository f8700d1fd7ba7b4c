"""InfoAug for solo-learn: importing this package registers the ``infoaug_<base>`` methods."""

import warnings

with warnings.catch_warnings():
    # solo-learn 1.0.6 imports timm and torch APIs that have since been deprecated and re-registers
    # timm model names, and its pinned lightning imports pkg_resources: a screen of warnings at
    # every start that no InfoAug user can act on.
    # Only this first import of solo-learn is quietened; the filters are restored afterwards.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Overwriting .* in registry", category=UserWarning)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from infoaug_plugin.methods import register

register()
