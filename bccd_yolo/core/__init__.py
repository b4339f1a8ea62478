"""What every step shares: errors, detections and their matching, files written safely, images read in bounded
memory, edge rules and the red cell as a ruler of scale, downloads."""
