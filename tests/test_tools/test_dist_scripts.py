"""tools/dist_train.sh and dist_test.sh: the threads each torchrun process
gets (torchrun alone would give every process one)."""
import os
import os.path as osp
import stat
import subprocess
import tempfile
from unittest import TestCase

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class TestDistScripts(TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        # A stand-in for python: prints the threads it was given.
        self.python = osp.join(tmp.name, 'python')
        with open(self.python, 'w') as f:
            f.write('#!/bin/sh\necho "threads=${OMP_NUM_THREADS:-unset}"\n')
        os.chmod(self.python, os.stat(self.python).st_mode | stat.S_IEXEC)

    def _run(self, script, args, **env):
        full_env = {k: v for k, v in os.environ.items()
                    if k != 'OMP_NUM_THREADS'}
        full_env.update(PYTHON=self.python, **env)
        return subprocess.run(['bash', osp.join(REPO, 'tools', script),
                               *args], env=full_env, capture_output=True,
                              text=True)

    def test_cores_shared_among_processes(self):
        cores = len(os.sched_getaffinity(0))
        for script, args in (('dist_train.sh', ['cfg.py', '2']),
                             ('dist_test.sh', ['cfg.py', 'w.pth', '2'])):
            with self.subTest(script=script):
                run = self._run(script, args)
                self.assertEqual(run.returncode, 0, run.stderr)
                self.assertIn(f'threads={max(1, cores // 2)}', run.stdout)
                self.assertIn('OMP_NUM_THREADS', run.stderr)
        run = self._run('dist_train.sh', ['cfg.py', str(cores * 4)])
        self.assertIn('threads=1', run.stdout)

    def test_user_choice_kept(self):
        run = self._run('dist_train.sh', ['cfg.py', '2'], OMP_NUM_THREADS='3')
        self.assertIn('threads=3', run.stdout)

    def test_bad_process_count(self):
        run = self._run('dist_train.sh', ['cfg.py', 'two'])
        self.assertEqual(run.returncode, 2)
        self.assertIn("NUM_PROCS must be a positive whole number, got 'two'",
                      run.stderr)
