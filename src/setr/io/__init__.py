"""Files in and out, below the models: images (decoded as the original did), weights files read safely,
atomic writes."""
