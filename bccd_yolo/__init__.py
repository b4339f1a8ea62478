"""bccd-yolo: blood-cell detection and counting with staged YOLOv3 transfer learning."""

__version__ = "0.1.0"

import logging as _logging

_logging.getLogger(__name__).addHandler(_logging.NullHandler())  # quiet unless the application configures logging
