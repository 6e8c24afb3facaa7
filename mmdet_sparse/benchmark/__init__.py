"""Benchmark of Sparse R-CNN configs (the library behind
``tools/benchmark.py``): the model with random weights and its parts
(:mod:`.model`), FLOPs, latency, peak memory and the machine's load
(:mod:`.measure`), the published COCO AP of each config
(:mod:`.published`), the markdown/JSON report and the Pareto front
(:mod:`.report`), and the chart (:mod:`.chart`)."""
from .chart import label_points, plot
from .measure import (check_load, count_flops, load_record, measure_config,
                      merge_rounds, predict_in_parts, round_orders,
                      time_parts, time_runs, usable_cores)
from .model import (backbone_label, build_model, count_params, make_inputs,
                    onnx_runner, run_heads)
from .published import PUBLISHED_AP, ap_cell, refresh_published_ap
from .report import (FLOPS_NOTE, MEM_NOTES, format_table, load_lines,
                     pareto_front, write_report)

__all__ = [
    'label_points', 'plot', 'check_load', 'count_flops', 'load_record',
    'measure_config', 'merge_rounds', 'round_orders', 'predict_in_parts',
    'time_parts', 'time_runs',
    'usable_cores',
    'backbone_label', 'build_model', 'count_params', 'make_inputs',
    'onnx_runner', 'run_heads', 'PUBLISHED_AP', 'ap_cell',
    'refresh_published_ap', 'FLOPS_NOTE', 'MEM_NOTES', 'format_table',
    'load_lines', 'pareto_front', 'write_report'
]
