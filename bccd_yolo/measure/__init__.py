"""How well a model counts: evaluation against labels, threshold calibration, the report, the label audit."""
