"""Editing data: MMEdit-format loaders (E-VQA, E-IC, VLKEB) and the packaged benchmark."""
