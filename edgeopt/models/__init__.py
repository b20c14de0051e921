"""Model files and what is made from them: safe loading and inspection, export from PyTorch, model
references, calibration and eval sets, activation ranges, and the quantized variants with their recipes."""
