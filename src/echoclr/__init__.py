"""echoclr: label-efficient echocardiogram video diagnosis with EchoCLR pretraining.

Holste et al., "Efficient deep learning-based automated diagnosis from echocardiography with
contrastive self-supervised learning", Communications Medicine 4:133 (2024).
"""

__version__ = "0.1.0"
