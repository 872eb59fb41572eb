"""mmdet-eakd: Entropy-based Adaptive KD for MMDetection 3.x."""
__version__ = '0.1.0'
