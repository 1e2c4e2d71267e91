"""The embedded default backbone: a LLaVA built from pretrained parts that ship in registry packages."""
