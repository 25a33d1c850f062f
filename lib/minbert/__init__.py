"""minbert: an own BERT, its optimisers and a multitask fine-tuning report."""

__version__ = "0.1.0"
