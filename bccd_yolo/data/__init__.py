"""Sources of labelled fields -> labels and data.yaml: VOC and YOLO folders, several sources at one scale."""
