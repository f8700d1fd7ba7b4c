"""InfoAug for solo-learn: importing this package registers the ``infoaug_<base>`` methods."""

from infoaug_plugin.methods import register

register()
