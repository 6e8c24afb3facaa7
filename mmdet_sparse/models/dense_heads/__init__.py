from .embedding_rpn_head import EmbeddingRPNHead

__all__ = ['EmbeddingRPNHead']
