"""Figure 5 of the Sparse R-CNN paper for a checkpoint and images.

Backs ``tools/analysis_tools/vis_stages.py`` and the end of ``make demo``:
per image, a row of panels (learned proposals, then each stage's boxes
above a score threshold), and per checkpoint a picture of where its learned
proposals lie.
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

from .inference import (InferenceInputError, build_inferencer,
                        collect_inputs, read_image)


def _output_names(files: Sequence[str]) -> List[str]:
    """A distinct output stem per input file: its name without extension,
    or with the extension when two inputs share a stem."""
    stems = [osp.splitext(osp.basename(f))[0] for f in files]
    return [
        osp.basename(f).replace('.', '_') if stems.count(stem) > 1 else stem
        for f, stem in zip(files, stems)
    ]


def _image_files(inputs: Union[str, Sequence[str]]) -> List[str]:
    """Image files from a path (an image or a folder) or a list of paths.

    Raises:
        FileNotFoundError / InferenceInputError: naming the bad path.
    """
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    if not paths:
        raise InferenceInputError('No input image given')
    files = []
    for path in paths:
        found = collect_inputs(path)
        if found.kind == 'video':
            raise InferenceInputError(
                f'Stage pictures are drawn for images, not videos: {path}')
        files += found.files
    return files


def visualize_stages(config: str,
                     checkpoint: str,
                     inputs: Union[str, Sequence[str]],
                     out_dir: str,
                     score_thr: float = 0.3,
                     stages: Optional[Sequence[int]] = None,
                     device: str = 'cpu',
                     panel_px: int = 256) -> Dict[str, Any]:
    """Write the stage pictures of ``inputs`` and the proposal picture.

    Every input is checked (exists, decodes) and the stage numbers are
    validated before any picture is drawn. The checkpoint is loaded as in
    :func:`build_inferencer` (``torch.load`` with ``weights_only=True``).

    Args:
        config (str): Model config file.
        checkpoint (str): Checkpoint file.
        inputs (str | Sequence[str]): An image, a folder of images, or a list
            of such paths.
        out_dir (str): Folder for ``<image>_stages.png`` and
            ``<checkpoint>_proposals.png``.
        score_thr (float): Stage panels draw boxes scoring above it.
        stages (Sequence[int], optional): 1-based stages to draw; all when
            None.
        device (str): Device to run the model on.
        panel_px (int): Width of one panel in pixels.

    Returns:
        dict: ``stage_pictures`` (paths, in input order), ``proposal_picture``
        (path) and ``drawn`` (per picture, the number of boxes in each
        panel).
    """
    from mmdet_sparse.visualization import (check_sparse_rcnn, check_stages,
                                            learned_proposals,
                                            proposal_figure, save_figure,
                                            stage_figure, trace_stages)
    files = _image_files(inputs)
    images = [read_image(path) for path in files]  # fail before model work
    inferencer = build_inferencer(config, checkpoint, device)
    model = inferencer.model
    check_sparse_rcnn(model, source=f'The model of {config}')
    stages = check_stages(stages, model.roi_head.num_stages)
    classes = model.dataset_meta.get('classes', ())

    stage_pictures, drawn = [], {}
    for img, name in zip(images, _output_names(files)):
        trace = trace_stages(model, inferencer.pipeline, img, classes)
        fig, panels = stage_figure(trace, stages, score_thr, panel_px)
        path = save_figure(fig, osp.join(out_dir, f'{name}_stages.png'))
        stage_pictures.append(path)
        drawn[path] = {panel: len(idx) for panel, idx in panels.items()}

    ckpt_name = osp.splitext(osp.basename(checkpoint))[0]
    fig = proposal_figure(
        learned_proposals(model),
        title=f'learned proposals of {osp.basename(checkpoint)}')
    proposal_picture = save_figure(
        fig, osp.join(out_dir, f'{ckpt_name}_proposals.png'))
    return dict(stage_pictures=stage_pictures,
                proposal_picture=proposal_picture, drawn=drawn)
