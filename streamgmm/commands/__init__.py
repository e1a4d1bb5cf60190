"""Sub-commands of the ``streamgmm`` CLI, one module each."""
