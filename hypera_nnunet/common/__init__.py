"""Helpers every room uses: atomic file writes and JSON encoding (:mod:`.atomic_io`), file locks
(:mod:`.locks`). This package imports nothing else of hypera_nnunet but :mod:`hypera_nnunet.errors`."""
