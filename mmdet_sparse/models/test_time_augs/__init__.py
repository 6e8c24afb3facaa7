from .soft_vote import soft_vote, soft_vote_one_class
from .sparse_tta import SparseRCNNTTAModel

__all__ = ['SparseRCNNTTAModel', 'soft_vote', 'soft_vote_one_class']
