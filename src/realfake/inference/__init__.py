"""Using a trained detector on new photos: :mod:`.predict` (files in, one row per face out),
:mod:`.faces` (MTCNN detection and alignment), :mod:`.explain` (Grad-CAM)."""
