"""Sub-commands of the `hf-liveedit` CLI, one module each (see `hf_liveedit.cli`)."""
