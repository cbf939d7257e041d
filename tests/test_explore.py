"Plots of smidilab.explore on tiny inputs, and `smidilab figures` end to end (twice: same files, same bytes)"
import io, json, os
from pathlib import Path
os.environ['HF_HUB_OFFLINE'] = '1'
import mido, pytest
from smidilab.core import NoteTable, NO_BEND
from smidilab.explore import (piano_roll, bend_shapes, plot_note_histograms, plot_bend_histograms, plot_bend_quantizer,
                              plot_augmentation, dataset_summary, plot_tokens_per_note, plot_loss_curves, plot_metrics,
                              raw_bend_values, bend_contour, note_columns, save_figure, figure_style)

from conftest import FIXTURES
GP = FIXTURES/'guitarpro'

# two notes of a guitar: an unbent E4, then an A4 bent a whole tone (b=38: x=12288, +2 semitones at ±4)
TINY = NoteTable(pitch=[64, 69], velocity=[80, 100], onset=[0, 96], duration=[96, 192], bend=[NO_BEND, 38],
                 source='tiny', instrument='guitar')


def labels(ax): return ax.get_xlabel(), ax.get_ylabel(), ax.get_title()


def test_piano_roll_draws_notes_and_bend_bars():
    ax = piano_roll(TINY).axes[0]
    assert labels(ax) == ('time (s)', 'pitch', 'tiny')
    assert len(ax.patches) == 2 and bend_shapes(ax) == 1
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= 0 and x1 >= 1.5 and y0 < 64 and y1 > 71  # both notes and the bend up to 71 are in view


def test_bend_contour_is_rise_then_hold():
    t, s = bend_contour(TINY, 1)
    assert t.tolist() == [0.5, 0.75, 1.5] and s.tolist() == [0.0, 2.0, 2.0]


def test_piano_roll_slice_and_given_axes():
    from matplotlib.figure import Figure
    fig = Figure(); ax = fig.add_subplot()
    assert piano_roll(TINY, start=0.6, end=1.0, ax=ax, title='slice') is fig
    assert ax.get_title() == 'slice' and len(ax.patches) == 1 and ax.get_xlim() == (0.6, 1.0)


def test_note_histograms_pool_tables():
    cols = note_columns([TINY, TINY])
    assert cols['gap'].tolist() == [0.5, 1.0] * 2  # t of each note, the last one up to the end (1.5 s)
    fig = plot_note_histograms([TINY, TINY], 'two')
    assert [ax.get_xlabel().split(' ')[0] for ax in fig.axes] == ['pitch', 'velocity', 'duration', 'onset']
    assert fig.get_suptitle() == 'two: 4 notes'


def midi_with_bends(values) -> bytes:
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.Message('note_on', note=60, velocity=64)] +
                                     [mido.Message('pitchwheel', pitch=v - 8192, time=10) for v in values]))
    buf = io.BytesIO(); mid.save(file=buf)
    return buf.getvalue()


def test_bend_histograms_from_raw_values():
    raw = raw_bend_values(midi_with_bends([8192, 9000, 12288, 8192]))
    assert raw.tolist() == [8192, 9000, 12288, 8192]
    ax_x, ax_b = plot_bend_histograms(TINY, raw=raw, title='t').axes
    assert ax_x.get_xlabel() == 'raw 14-bit bend x (2 at 8192 left out)'
    assert ax_b.get_xlabel() == 'quantized bend b (1 of 2 notes bent)'
    assert sum(p.get_height() for p in ax_x.patches) == 2
    assert [i for i, p in enumerate(ax_b.patches) if p.get_height()] == [38]


def test_raw_bend_values_of_a_guitar_midi_fixture():
    raw = raw_bend_values(GP/'gp2midi'/'test_gp5.mid')
    assert len(raw) > 0 and raw.min() >= 0 and raw.max() <= 16383 and (raw != 8192).any()


def test_quantizer_plot_matches_the_paper_formula():
    fig = plot_bend_quantizer()
    step = next(l for l in fig.axes[0].lines if l.get_label() == 'f(x)')
    x, b = step.get_xdata(), step.get_ydata()
    expect = {0: 0, 7679: 14, 7680: 15, 8191: 22, 8192: 23, 8703: 30, 8704: 31, 16383: 45}  # written out by hand
    assert {k: int(b[x == k][0]) for k in expect} == expect
    assert fig.axes[0].get_title(loc='left') == 'bend quantizer f'


def test_augmentation_plot_shows_both():
    up = NoteTable(pitch=TINY.pitch + 5, velocity=TINY.velocity, onset=TINY.onset, duration=TINY.duration,
                   bend=TINY.bend, instrument='guitar')
    fig = plot_augmentation(TINY, up, 'up 5')
    assert [ax.get_title() for ax in fig.axes] == ['before', 'after'] and fig.get_suptitle() == 'up 5'
    assert [sorted(p.get_y() + p.get_height()/2 for p in ax.patches) for ax in fig.axes] == [[64, 69], [69, 74]]


def test_dataset_summary_counts():
    df = dataset_summary({'a': [TINY, TINY], 'b': TINY}, tokens_per_note=12.5)
    assert df.to_dict('records')[0] == {'group': 'a', 'files': 2, 'failed': 0, 'notes': 4, 'notes_per_piece': 2.0,
                                        'bent_notes': 2, 'minutes': 0.05, 'tokens_per_note': 12.5}
    assert df.group.tolist() == ['a', 'b']


def test_dataset_summary_of_a_folder_counts_failures(tmp_path):
    pytest.importorskip('smidilab.guitarpro')
    for name in ('Effects.gp5', 'Demo v5.gp5'): (tmp_path/name).symlink_to(GP/'pyguitarpro'/name)
    (tmp_path/'broken.gp5').write_bytes(b'not a guitar pro file')
    df = dataset_summary(tmp_path)
    read = df[df.group != 'failed']
    assert df.set_index('group').loc['failed', 'failed'] == 1
    assert read.files.sum() == 2 and (read.notes > 0).all()


def test_tokens_loss_and_metrics_plots(tmp_path):
    fig = plot_tokens_per_note([{'tokenizer': 'a', 'dialect': 'paper', 'tokens_per_note': 10.0},
                                {'tokenizer': 'a', 'dialect': 'compact', 'tokens_per_note': 7.0}])
    assert [p.get_height() for p in fig.axes[0].patches] == [10.0, 7.0]
    (tmp_path/'metrics.csv').write_text('step,loss,eval_loss\n1,2.0,\n2,1.5,1.7\n')
    ax = plot_loss_curves(tmp_path).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ('step', 'loss (nats/token)') and len(ax.lines) == 2
    (tmp_path/'metrics.json').write_text(json.dumps({'bits_per_note': 20.5, 'n': 3}))
    assert [p.get_width() for p in plot_metrics(tmp_path).axes[0].patches] == [20.5, 3.0]


def test_save_figure_strips_metadata(tmp_path):
    with figure_style(): png, svg = save_figure(piano_roll(TINY), tmp_path/'roll')
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and b'Software' not in png.read_bytes()
    assert b'<dc:date>' not in svg.read_bytes() and b'<text' not in svg.read_bytes()  # text drawn as paths


FIGURES = ['augmentation_modulate', 'augmentation_tempo', 'augmentation_transpose', 'augmentation_velocity',
           'bend_histograms', 'bend_quantizer', 'evaluation_bits_per_note', 'evaluation_histograms', 'guitar_roll',
           'loss_curves', 'note_histograms', 'piano_roll', 'tokens_per_note']


def run_figures(out: Path, inputs: Path) -> dict:
    "`smidilab figures -o out` with a run, an evaluation and a tokens table; the bytes of each figure file"
    from smidilab.cli import main
    params = {'run_dir': inputs, 'eval_dir': inputs, 'tokens_json': inputs/'tokens.json'}
    assert main(['figures', '-o', str(out)] + [x for k, v in params.items() for x in ('-p', k, str(v))]) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != '23_figures.ipynb'}  # the executed job


def test_figures_notebook_is_complete_and_reproducible(tmp_path):
    inputs = tmp_path/'inputs'; inputs.mkdir()
    (inputs/'metrics.csv').write_text('step,loss,eval_loss\n10,3.0,\n20,2.5,2.8\n30,2.1,2.6\n')
    hist = lambda *c: {'pitch': [0]*60 + list(c), 'bend': [0]*23 + list(c)}  # the layout of `smidilab evaluate`
    (inputs/'metrics.json').write_text(json.dumps({
        'per_piece': {'reference': {'histograms': hist(3, 1, 2)}, 'generated': {'histograms': hist(1, 1, 1)}},
        'likelihood': {'ngram': {'bits_per_note': 30.5, 'ci95': [28.0, 33.0], 'answers': 4, 'pieces': 2},
                       'finetuned': {'bits_per_note': 21.0, 'ci95': [19.5, 22.5], 'answers': 4, 'pieces': 2}}}))
    (inputs/'tokens.json').write_text(json.dumps([{'tokenizer': 'x', 'dialect': 'paper', 'tokens_per_note': 13.0}]))
    first, second = run_figures(tmp_path/'one', inputs), run_figures(tmp_path/'two', inputs)
    assert sorted(first) == sorted([f'{n}.{e}' for n in FIGURES for e in ('png', 'svg')] + ['README.md', 'tokens_per_note.json'])
    assert [n for n in first if first[n] != second[n]] == []
    assert all(f'`{n}.png`' in first['README.md'].decode() for n in FIGURES)
