"""The API layer: files in, arrays and files out, over the kernels."""
