"""nnU-Net integration: the HYPERA trainers, their short-budget variants, and reduced plans."""
