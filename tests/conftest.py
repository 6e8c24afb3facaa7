import logging
import os
import sys

import pytest

# The test support package (tests/support/) is imported as ``support``.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _subclasses(cls):
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


@pytest.fixture(autouse=True, scope='module')
def fresh_mmengine_instances():
    """Forget mmengine's process-wide named instances after each test
    module: a visualizer, message hub or logger made by one module (one per
    name for the whole process) must not write into another module's
    folders. Loggers' files are closed."""
    yield
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.visualization import Visualizer
    for cls in (*_subclasses(Visualizer), MessageHub):
        cls._instance_dict.clear()
    for logger in MMLogger._instance_dict.values():
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                handler.close()
                logger.removeHandler(handler)
    MMLogger._instance_dict.clear()
