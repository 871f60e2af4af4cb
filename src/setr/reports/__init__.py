"""Reports a person looks at: evaluation pages (segmentation, detection), training curves.

Every page is one self-contained HTML file (pictures embedded as base64 PNG, no script or style from the
network) with the same numbers in a JSON file beside it. Charts are drawn with matplotlib (Agg canvas, no
display needed).
"""
