"""Evaluation cards and publishing a synthetic dataset folder to the Hugging Face Hub.

- ``card``: read/write the dataset card's YAML metadata and its evaluation section
- ``hub``: validate a dataset folder, plan and perform the upload (huggingface_hub)
"""
