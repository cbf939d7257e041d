"Shared fixtures and paths for the smidilab test suite."
import os
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'      # beside a developer's checkout and CI's, never a user's
FIXTURES = REPO / 'tests' / 'fixtures'  # in the repository: Guitar Pro test files with their licences
SEED = SHARED / 'fixtures' / 'seed'     # the reference study's data: not ours to redistribute
LLAMA2 = SHARED / 'tokenizers' / 'llama2' / 'tokenizer.model'
LOGS = REPO / 'tests' / 'logs'


def need(path: Path) -> Path:
    "Skip the test, saying why, when material that lives outside the repository (../shared) is absent"
    if path.exists(): return path
    if Path(path).resolve().is_relative_to(REPO): pytest.fail(f'{path}: a fixture of the repository is missing')
    pytest.skip(f'{path} not available (not distributed with smidilab; CI provides it)')
