"""Sub-commands of the ``petite`` CLI, one module per concern (see ``PETITELib.cli``)."""
