from .dii_head import DIIHead
from .dynamic_conv import DynamicConv

__all__ = ['DIIHead', 'DynamicConv']
