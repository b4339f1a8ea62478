"""The door to Ultralytics and torch: importing this package applies the offline environment first.

Code outside this package that needs Ultralytics imports it from here, so no import order can
reach Ultralytics with the network switched on.
"""

from .. import yolo_env as _yolo_env  # noqa: F401  (offline settings before any Ultralytics import)
