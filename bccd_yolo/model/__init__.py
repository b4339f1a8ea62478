"""Model architectures, their parts and stage freeze lists, and darknet's file format (no torch here)."""
