"Property tests of the decomposed dialect: lossless round trips, conversions, and a lenient parser that never raises."
import re
import pytest
from hypothesis import given, settings, strategies as st
from smidilab.core import NoteTable
from smidilab.codec import notes_to_text, text_to_notes, parse_text, convert_dialect, ParseError, DECOMPOSED_PHRASE
from test_codec import note_tables


@given(note_tables(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_decomposed_roundtrip(notes, curves):
    text = notes_to_text(notes, curves=curves, dialect='decomposed')
    back = text_to_notes(text, dialect='decomposed', instrument=notes.instrument)
    expected = notes if curves or notes.curve is None else NoteTable(**{**vars(notes), 'curve': None})
    assert back == expected
    assert notes_to_text(back, curves=curves, dialect='decomposed') == text


@given(note_tables(max_notes=80))
@settings(max_examples=150, deadline=None)
def test_counts_agree_across_the_lines_of_every_phrase(notes):
    "Independent check of the layout: 3 or 4 lines per phrase, one item per note on each, rhythm/pitch/velocity/bend"
    text = notes_to_text(notes, dialect='decomposed')
    lines = text.split('\n') if text else []
    per = 4 if len(notes) and notes.instrument == 'guitar' else 3
    assert len(lines) == per * -(-len(notes) // DECOMPOSED_PHRASE)
    for k in range(0, len(lines), per):
        phrase = [l.split(' ') for l in lines[k:k + per]]
        assert len({len(items) for items in phrase}) == 1 and len(phrase[0]) <= DECOMPOSED_PHRASE
        for items, pattern in zip(phrase, [r'd\d+(t\d+)?', r'p\d+', r'v\d+', r'b\d+']):
            assert all(re.fullmatch(pattern, i) for i in items)


@given(note_tables(bends=True, curves=True))
@settings(max_examples=150, deadline=None)
def test_every_dialect_converts_to_decomposed_and_back(notes):
    for source in ('paper', 'compact'):
        text = notes_to_text(notes, curves=True, dialect=source)
        decomposed = convert_dialect(text, 'decomposed', source=source, instrument='guitar')
        assert text_to_notes(decomposed, dialect='decomposed', instrument='guitar') == notes
        assert convert_dialect(decomposed, source, source='decomposed', instrument='guitar') == text


line_like = st.lists(st.sampled_from(['d', 'p', 'v', 'b', 't', '-', ' ', '\n', '0', '1', '9', '23', '48', '128', 'x']),
                     max_size=60).map(''.join)


@given(line_like)
@settings(max_examples=400, deadline=None)
def test_every_item_is_kept_in_a_note_or_reported(text):
    "Each whitespace-separated item either belongs to a kept note (3 or 4 items each) or is listed as dropped, once"
    notes, report = parse_text(text, dialect='decomposed')
    items = text.split()
    dropped = [d.index for d in report.dropped]
    assert len(dropped) == len(set(dropped)) and all(items[d.index] == d.token for d in report.dropped)
    kept = len(items) - len(dropped)
    bend_items = sum(1 for i, tok in enumerate(items) if i not in set(dropped) and tok.startswith('b'))
    assert kept == 3 * len(notes) + bend_items
    if not report.dropped:
        assert text_to_notes(text, dialect='decomposed') == notes
    else:
        with pytest.raises(ParseError):
            text_to_notes(text, dialect='decomposed')


def test_strict_error_names_the_line_that_disagrees():
    with pytest.raises(ParseError, match=r"token 2 at character 8 \('d48'\): no velocity item for this note: the velocity line has 2 items"):
        text_to_notes('d96 d48 d48\np60 p67 p64\nv80 v70', dialect='decomposed')


def test_lenient_keeps_the_rhythm_of_a_dropped_note():
    notes, report = parse_text('d96t48 d48t48 d48t48\np60 p200 p64\nv80 v70 v75', dialect='decomposed')
    assert notes.pitch.tolist() == [60, 64] and notes.onset.tolist() == [0, 96] and notes.end == 144
    assert [d.token for d in report.dropped] == ['d48t48', 'p200', 'v70']
    assert report.dropped[1].reason.startswith('pitch 200 out of range')


def test_cli_encodes_guitar_pro_bends_in_decomposed_text_and_reads_it_back(tmp_path):
    "smidilab encode/decode take --dialect decomposed: a bent Guitar Pro fixture survives, curves included"
    from conftest import FIXTURES
    from smidilab.cli import main
    gp = FIXTURES / 'guitarpro' / 'pyguitarpro' / 'Effects.gp5'
    for dialect in ('paper', 'decomposed'):
        assert main(['encode', str(gp), '-o', str(tmp_path / dialect), '--dialect', dialect, '--curves']) == 0
    paper = (tmp_path / 'paper' / 'Effects.txt').read_text()
    decomposed = (tmp_path / 'decomposed' / 'Effects.txt').read_text()
    assert re.search(r'(?m)^b', decomposed) and '-' in decomposed      # a bend line with curves
    assert convert_dialect(decomposed, 'paper', source='decomposed') == paper.strip()
    assert main(['decode', str(tmp_path / 'decomposed' / 'Effects.txt'), '-o', str(tmp_path / 'mid'),
                 '--dialect', 'decomposed', '--strict', '--instrument', 'guitar']) == 0
    assert (tmp_path / 'mid' / 'Effects.mid').stat().st_size > 0
