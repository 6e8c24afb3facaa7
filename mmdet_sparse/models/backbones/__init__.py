"""Backbones: ViT-Adapter (plain ViT + spatial prior / interaction blocks)
and a wrapper for any timm feature extractor."""
from .timm_backbone import TimmBackbone
from .vit_adapter import ViTAdapter

__all__ = ['TimmBackbone', 'ViTAdapter']
