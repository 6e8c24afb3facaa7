from .dii_head import DIIHead
from .dynamic_conv import DynamicConv
from .interactions import AttentionInteraction, StaticInteraction

__all__ = [
    'DIIHead', 'DynamicConv', 'StaticInteraction', 'AttentionInteraction'
]
