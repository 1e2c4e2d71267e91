"""Training of the LiveEdit generator (installed as `hf_liveedit.trainers`)."""
