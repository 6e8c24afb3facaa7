"""Support code shared by the tests (no tests here). ``tests/conftest.py``
puts ``tests/`` on ``sys.path``, so it is imported as ``support``.

- ``helpers``: builders of reference/own heads, FPN features, data samples
  and configs in the registry scope; the repository's paths.
- ``tool_runs``: tiny training runs through the command-line tools in
  subprocesses (the 128 px shapes config, the runner, the logged losses,
  two-rank gloo runs).
- ``toy_runner``: a tiny mmengine Runner (linear model on 2-d points) for
  fast in-process tests of the training engine.
- ``e2e_hooks``: a hook, imported by the configs of tool runs, that records
  each process's first losses.
- ``kill_points``: imported by a config, SIGKILLs the training process at a
  chosen file operation of checkpoint saving.
- ``kill_driver``: a script that reruns ``tools/train.py --resume`` and
  kills each run at a planned point (with ``kill_points``).
- ``pickle_ops``: hand-assembled pickles and checkpoints for the loading
  security tests.
- ``deploy_helpers``: the demo config on a tiny set, a briefly trained
  model and the tool loader of the deployment tests.
- ``benchmark_fakes``: fake benchmark results for the report and chart
  tests.
"""
