"""Test-only: ``tools/train.py CONFIG --work-dir WORK_DIR --resume`` again
and again, each run SIGKILLed at a planned point of checkpoint saving
(``kill_points.py``), then once more to the end.

    python tests/support/kill_driver.py CONFIG WORK_DIR RESULT_JSON \
        SPEC [SPEC ...]

Each run is a child forked from this process after it imported
``tools/train.py`` (saving the interpreter start and imports, seconds per
run) and calls its ``main`` with the command-line arguments. After each
run the state of the work dir is recorded in RESULT_JSON: how the run
ended, the files, and the iteration of the checkpoint ``last_checkpoint``
names (loaded with ``weights_only=True``), or the error loading it.
"""
import importlib.util
import json
import os
import os.path as osp
import sys
import traceback

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _import_train():
    spec = importlib.util.spec_from_file_location(
        'train_tool', osp.join(REPO, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(train, argv, kill_at, log_path):
    """Fork a child that runs ``train.main(argv)``; return its end."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if kill_at:
                os.environ['CKPT_KILL_AT'] = kill_at
            train.main(argv)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return dict(signal=os.WTERMSIG(status))
    return dict(exit=os.WEXITSTATUS(status))


def _state(work_dir):
    """Files of the work dir and the checkpoint ``last_checkpoint`` names."""
    import torch
    state = dict(files=sorted(os.listdir(work_dir))
                 if osp.isdir(work_dir) else [])
    path = osp.join(work_dir, 'last_checkpoint')
    if osp.exists(path):
        with open(path) as f:
            state['last'] = f.read().strip()
        try:
            ckpt = torch.load(state['last'], map_location='cpu',
                              weights_only=True)
            state['last_iter'] = ckpt['meta']['iter']
        except Exception as exc:  # recorded for the test to report
            state['last_error'] = repr(exc)
    return state


def main(argv):
    config, work_dir, result_path, *specs = argv
    train = _import_train()
    results = []
    for i, spec in enumerate([*specs, None]):
        log = osp.join(osp.dirname(result_path), f'run{i}.log')
        end = _run(train, [config, '--work-dir', work_dir, '--resume'],
                   spec, log)
        results.append(dict(spec=spec, log=log, **end, **_state(work_dir)))
    with open(result_path, 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main(sys.argv[1:])
