"""bccd-yolo: blood-cell detection and counting with staged YOLOv3 transfer learning."""

__version__ = "0.1.0"
