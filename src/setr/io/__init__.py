"""Reading and writing files: images (decoding as the original did), and soon weights and atomic writes."""
