"""`bccd-yolo serve`: a local web page that counts uploaded images through the same path as `bccd-yolo count`."""
