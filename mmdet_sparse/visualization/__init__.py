"""Pictures of what a Sparse R-CNN learned: the paper's Figure 5 (proposals
and every stage's boxes), the distribution of the learned proposals, and
non-overlapping label placement for charts."""
from .label_placement import boxes_overlap, place_labels
from .stage_figure import (TITLE_PX, boxes_above, check_stages, draw_boxes,
                           draw_proposal_panel, draw_stage_panel,
                           proposal_colors, proposal_figure, save_figure,
                           stage_figure, stage_figure_size)
from .stage_trace import (StageBoxes, StageTrace, check_sparse_rcnn,
                          learned_proposals, trace_stages)

__all__ = [
    'boxes_overlap', 'place_labels', 'TITLE_PX', 'boxes_above',
    'check_stages', 'draw_boxes', 'draw_proposal_panel', 'draw_stage_panel',
    'proposal_colors', 'proposal_figure', 'save_figure', 'stage_figure',
    'stage_figure_size', 'StageBoxes', 'StageTrace', 'check_sparse_rcnn',
    'learned_proposals', 'trace_stages'
]
