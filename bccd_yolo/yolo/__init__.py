"""The one door to Ultralytics and torch. Importing this package applies the offline environment first
(`env`), so no import order can reach Ultralytics with the network or full unpickling switched on.

- models:   model YAMLs (and their darknet variants), safe checkpoint loading
- data:     data YAMLs, split image lists, label paths
- train:    argument checks and training runs
- predict:  PyTorch / ONNX Runtime prediction and export
- validate: per-class AP
- darknet:  darknet weights into an Ultralytics model
Everything outside works on numpy and plain data.
"""

from . import env  # noqa: F401  (must run before anything imports Ultralytics)
