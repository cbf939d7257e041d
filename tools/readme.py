"""Write README.md from nbs/index.ipynb (nbdev's readme_nb), without quarto: the notebook's markdown cells, and its
code cells as fenced Python. `python tools/readme.py --check` exits 1 when README.md is out of date."""
import json, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def render(nb_path: Path = REPO / 'nbs' / 'index.ipynb') -> str:
    cells = json.loads(nb_path.read_text(encoding='utf-8'))['cells']
    parts = []
    for c in cells:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f'```python\n{src}\n```')
    return '<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook -->\n\n' + '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    text, readme = render(), REPO / 'README.md'
    if '--check' in sys.argv:
        sys.exit(0 if readme.exists() and readme.read_text(encoding='utf-8') == text else 1)
    readme.write_text(text, encoding='utf-8')
