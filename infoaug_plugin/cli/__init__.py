"""Command lines: ``infoaug-pretrain`` (:mod:`.pretrain`) and ``infoaug-linear`` (:mod:`.linear`).

Both are Hydra commands with solo-learn's habits (``--config-path``, ``--config-name``, ``key=value``
overrides) and run from an installed package, without a solo-learn checkout.
"""
