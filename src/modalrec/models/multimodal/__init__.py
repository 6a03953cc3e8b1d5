"""Multimodal collaborative filtering (the survey's model zoo): user x item ranking from interactions
plus item content, one model per file."""
