"Shared fixtures and paths for the smidilab test suite."
import os
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
FIXTURES = SHARED / 'fixtures'
LOGS = REPO / 'tests' / 'logs'


def need(path: Path) -> Path:
    "Skip the test when a read-only shared fixture is absent (it lives beside the checkout, never in the repo)"
    if not path.exists(): pytest.skip(f'{path} not available')
    return path
