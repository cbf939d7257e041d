"""MIDI reading and writing: table → MIDI → table is the identity, the reader agrees with an independent reference reader
on random files, every fixture and chorale survives encode → decode → encode, bad files fail with a reason."""
import io, random
from collections import defaultdict, deque
from fractions import Fraction
from pathlib import Path
import mido
import music21
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from smidilab.core import NoteTable, InputFileError, SmidiError, NO_BEND, with_columns
from smidilab.codec import notes_to_text, text_to_notes, quantize_bend, extreme_bend
import smidilab.midi as midi, smidilab.midiwrite as midiwrite
from smidilab.midi import read_midi, read_midi_report, scan_fast, scan_mido
from smidilab.midiwrite import midi_bytes, write_midi
from conftest import FIXTURES, LOGS, need

GP2MIDI = FIXTURES / 'guitarpro' / 'gp2midi'


# ---------------------------------------------------------------- table → MIDI → table

@st.composite
def note_tables(draw, max_notes=40, long=False, curves=False):
    "Tables with chords, touching/overlapping/nested same-pitch repeats, zero-length notes, bends (and curves)"
    n = draw(st.integers(0, max_notes))
    ints = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=n, max_size=n)
    scale = 10**5 if long else 1
    onset = np.array(draw(ints(0, 300)), np.int64) * draw(st.sampled_from([1, scale]))
    duration = np.array(draw(st.lists(st.one_of(st.just(0), st.integers(1, 300), st.integers(1, 60 * scale)),
                                      min_size=n, max_size=n)), np.int64)
    if n: onset -= onset.min()
    touching = draw(st.booleans()) and n > 1  # make some notes end exactly where a same-pitch note starts
    pitch = draw(st.one_of(ints(0, 127), ints(60, 61)))
    if touching:
        duration[:-1] = np.maximum(onset[1:] - onset[:-1], 0); pitch = [pitch[0]] * n
    bent = draw(st.lists(st.integers(0, n - 1), max_size=min(n, 8), unique=True)) if n else []
    bend = np.full(n, NO_BEND); bend[bent] = draw(st.lists(st.integers(0, 45), min_size=len(bent), max_size=len(bent)))
    curve = None
    if curves and bent:
        curve = np.full(n, None, object)
        for i in bent[::2]: curve[i] = tuple(draw(st.lists(st.integers(0, 45), min_size=2, max_size=5)))
    return NoteTable(pitch=pitch, velocity=draw(ints(1, 127)), onset=onset, duration=duration, bend=bend, curve=curve,
                     ticks_per_second=draw(st.sampled_from([192, 768, 75, 1000])),
                     bend_range=draw(st.sampled_from([4.0, 2.0, 12.0, 2.5])),
                     instrument=draw(st.sampled_from(['piano', 'guitar', 'bass', 'other'])))


def round_trip(notes: NoteTable, engine='auto') -> NoteTable:
    return read_midi(midi_bytes(notes), notes.ticks_per_second, notes.bend_range, engine=engine)


def as_read(notes: NoteTable) -> NoteTable:
    "What reading back promises: curves come back as their extreme quantized bend"
    if notes.curve is None: return notes
    bend = [b if c is None else extreme_bend(c) for b, c in zip(notes.bend.tolist(), notes.curve)]
    return with_columns(notes, bend=np.array(bend), curve=None)


@given(note_tables())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_table_midi_table_is_identity(notes):
    assert round_trip(notes) == notes


@given(note_tables(max_notes=15, long=True))
@settings(max_examples=40, deadline=None)
def test_long_pieces_round_trip(notes):
    assert round_trip(notes) == notes


@given(note_tables(curves=True))
@settings(max_examples=60, deadline=None)
def test_curves_come_back_as_extreme_bend(notes):
    back = round_trip(notes)
    assert back == as_read(notes)
    assert back.curve is None


def test_zero_length_and_nested_repeats_by_hand():
    notes = NoteTable(pitch=[60] * 5, velocity=[10, 20, 30, 40, 50], onset=[0, 0, 10, 20, 40],
                      duration=[100, 0, 5, 0, 0], bend=[23, 23, 23, 40, 23])
    back = round_trip(notes)
    assert back == notes and back.velocity.tolist() == [20, 10, 30, 40, 50]


def test_too_many_bent_notes_at_once_is_a_clear_error():
    crowd = NoteTable(pitch=range(16), velocity=[9] * 16, onset=[0] * 16, duration=[5] * 16, bend=[40] * 16)
    with pytest.raises(SmidiError, match='more than 15 notes'): midi_bytes(crowd)


def test_internal_constants_are_private():
    assert not {'OFF', 'RESET', 'ZERO', 'ON', 'RISE'} & set(midiwrite.__all__)


# ---------------------------------------------------------------- the bytes, against mido writing the same file

def mido_midi_bytes(notes: NoteTable) -> bytes:
    "The writer's rules written plainly with mido messages (the library the bytes must match), on our channels"
    channels, bent = midiwrite.assign_channels(notes).tolist(), midiwrite.is_bent(notes).tolist()
    curves = notes.curve if notes.curve is not None else [None] * len(notes)
    rows = []  # (tick, phase, order, order, channel, message); phases: off, reset, zero-length, on, rise
    for i, (p, v, a, d, b) in enumerate(zip(*(getattr(notes, c).tolist() for c in ('pitch', 'velocity', 'onset', 'duration', 'bend')))):
        c = channels[i]
        on, off = mido.Message('note_on', channel=c, note=p, velocity=v), mido.Message('note_off', channel=c, note=p)
        steps = [(t, mido.Message('pitchwheel', channel=c, pitch=x - 8192)) for t, x in midiwrite._bend_steps(a, d, b, curves[i])] if bent[i] else []
        reset = [mido.Message('pitchwheel', channel=c, pitch=0)] if bent[i] else []
        if d == 0: rows += [(a, 2, i, k, c, m) for k, m in enumerate([on] + [m for _, m in steps] + [off] + reset)]
        else: rows += [(a, 3, d, i, c, on), (a + d, 0, 0, i, c, off)] + [(a + d, 1, 0, i, c, m) for m in reset] + \
                      [(t, 4, i, k, c, m) for k, (t, m) in enumerate(steps)]
    rows.sort(key=lambda r: r[:4])
    end = max(notes.end, notes.last_offset)
    tpb, tempo = (notes.ticks_per_second // 2, 500000) if notes.ticks_per_second % 2 == 0 else (notes.ticks_per_second, 10**6)
    semis = int(notes.bend_range); cents = round((notes.bend_range - semis) * 100)
    mf = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage('track_name', name='smidilab'), mido.MetaMessage('set_tempo', tempo=tempo),
                                     mido.MetaMessage('end_of_track', time=end)]))
    for c in sorted({r[4] for r in rows}):
        setup = [mido.Message('program_change', channel=c, program=midiwrite.PROGRAMS[notes.instrument])] + \
                [mido.Message('control_change', channel=c, control=k, value=x) for k, x in
                 [(101, 0), (100, 0), (6, semis), (38, cents), (101, 127), (100, 127)]]
        mine, last = [r for r in rows if r[4] == c], 0
        track = mido.MidiTrack(setup)
        for r in mine: track.append(r[5].copy(time=r[0] - last)); last = r[0]
        track.append(mido.MetaMessage('end_of_track', time=max(end - last, 0)))
        mf.tracks.append(track)
    buf = io.BytesIO(); mf.save(file=buf)
    return buf.getvalue()


@given(note_tables(curves=True))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_bytes_equal_mido_writing_the_same_messages(notes):
    try: expected = mido_midi_bytes(notes)
    except SmidiError: return  # too many bent notes at once: both refuse (checked elsewhere)
    assert midi_bytes(notes) == expected


def first_fit_channels(notes: NoteTable) -> list:
    "Unbent notes, plainly: in onset order, the first free channel whose same-pitch notes started earlier all end by this one's end"
    placed, out = {}, [None] * len(notes)  # (channel, pitch) → [(onset, end)]
    for i in sorted(range(len(notes)), key=lambda i: (notes.onset[i], notes.pitch[i])):
        a, b, p = int(notes.onset[i]), int(notes.onset[i] + notes.duration[i]), int(notes.pitch[i])
        c = next(c for c in midiwrite.FREE_CHANNELS if all(e <= b for s, e in placed.get((c, p), []) if s < a))
        placed.setdefault((c, p), []).append((a, b)); out[i] = c
    return out


@given(note_tables(max_notes=60))
@settings(max_examples=150, deadline=None)
def test_unbent_channels_are_first_fit(notes):
    notes = with_columns(notes, bend=np.full(len(notes), NO_BEND), curve=None)
    try: expected = first_fit_channels(notes)
    except StopIteration:
        with pytest.raises(SmidiError, match='more than 15'): midiwrite.assign_channels(notes)
        return
    assert midiwrite.assign_channels(notes).tolist() == expected


@given(note_tables(max_notes=30), st.integers(0, 200_000))
@settings(max_examples=100, deadline=None)
def test_text_midi_text_keeps_the_last_gap(notes, silence):
    "text → MIDI → text is the identity, last `t` included, whenever the piece does not end before its last note-off"
    notes = with_columns(notes, end=notes.last_offset + silence)
    text = notes_to_text(notes, bends=True)
    back = read_midi(midi_bytes(text_to_notes(text, ticks_per_second=notes.ticks_per_second, bend_range=notes.bend_range)),
                     notes.ticks_per_second, notes.bend_range)
    assert notes_to_text(back, bends=True) == text
    assert mido.MidiFile(file=io.BytesIO(midi_bytes(notes))).length == pytest.approx(notes.end / notes.ticks_per_second)


def test_one_note_keeps_its_trailing_silence():
    "the issue's case: p60:v80:d96:t500 → MIDI → text gave t96"
    back = read_midi(midi_bytes(text_to_notes('p60:v80:d96:t500')))
    assert notes_to_text(back) == 'p60:v80:d96:t500'


def test_write_refuses_to_overwrite(tmp_path):
    notes = NoteTable(pitch=[60], velocity=[80], onset=[0], duration=[96])
    p = write_midi(notes, tmp_path / 'a.mid')
    with pytest.raises(FileExistsError): write_midi(notes, p)
    assert read_midi(write_midi(notes, p, overwrite=True)) == notes
    assert sorted(x.name for x in tmp_path.iterdir()) == ['a.mid']


# ---------------------------------------------------------------- an independent reference reader

def reference_read(data: bytes, tps: int, bend_range: float, keep_drums=False):
    "The reading rules written plainly: merged events, tick by tick, Fractions for time (no numpy, no shared code)"
    mf = mido.MidiFile(file=io.BytesIO(data))
    events, ends = [], []
    for ti, track in enumerate(mf.tracks):
        tick = 0
        for j, m in enumerate(track): tick += m.time; events.append((tick, ti, j, m))
        ends.append(tick)
    events.sort(key=lambda e: e[:3])
    tempos = [(t, m.tempo) for t, _, _, m in events if m.type == 'set_tempo']
    def grid(tick):
        sec, last_t, tempo = Fraction(0), 0, 500000
        for t, v in tempos:
            if t > tick: break
            sec += Fraction((t - last_t) * tempo, mf.ticks_per_beat * 10**6); last_t, tempo = t, v
        sec += Fraction((tick - last_t) * tempo, mf.ticks_per_beat * 10**6)
        return int(sec * tps + Fraction(1, 2))
    rpn, bends = defaultdict(lambda: [127, 127, 2, 0]), defaultdict(list)  # channel → [(position, value)]
    queue, notes, strays, by_tick = defaultdict(deque), [], 0, defaultdict(list)
    for pos, (t, _, _, m) in enumerate(events):
        if m.type == 'control_change':
            s = rpn[m.channel]
            if m.control in (99, 98): s[0] = s[1] = 127
            elif m.control in (101, 100): s[101 - m.control] = m.value
            elif m.control in (6, 38) and s[:2] == [0, 0]: s[2 if m.control == 6 else 3] = m.value
        elif m.type == 'pitchwheel':
            x = 8192 + (m.pitch) * Fraction(rpn[m.channel][2] * 100 + rpn[m.channel][3], 100) / Fraction(bend_range)
            x = int(x + Fraction(1, 2)) if x >= 0 else -int(-x - Fraction(1, 2))
            bends[m.channel].append((pos, min(max(x, 0), 16383)))
        elif m.type in ('note_on', 'note_off') and (keep_drums or m.channel != 9):
            by_tick[t].append((pos, m))
    for t in sorted(by_tick):
        group = by_tick[t]
        offs = [(p, m) for p, m in group if m.type == 'note_off' or m.velocity == 0]
        deferred = []
        for p, m in offs:
            q = queue[m.channel, m.note]
            if q: notes.append(q.popleft() + (t, p))
            else: deferred.append((p, m))
        for p, m in group:
            if m.type == 'note_on' and m.velocity > 0: queue[m.channel, m.note].append((t, p, m))
        for p, m in deferred:
            q = queue[m.channel, m.note]
            if q: notes.append(q.popleft() + (t, p))
            else: strays += 1
    dangling = [q.popleft() + (max(ends), len(events)) for q in queue.values() for _ in range(len(q))]
    rows = []
    for on_t, on_p, m, off_t, off_p in notes + dangling:
        vals = [v for p, v in bends[m.channel] if p < on_p][-1:] or [8192]
        vals += [v for p, v in bends[m.channel] if on_p < p < off_p]
        far = max(vals, key=lambda v: abs(v - 8192))  # first wins ties
        rows.append((m.note, m.velocity, grid(on_t), grid(off_t), quantize_bend(far)))
    start = min((r[2] for r in rows), default=0)
    end = max([grid(max(ends))] + [r[3] for r in rows]) - start  # the file's end, never before the last note-off
    table = NoteTable(pitch=[r[0] for r in rows], velocity=[r[1] for r in rows], onset=[r[2] - start for r in rows],
                      duration=[r[3] - r[2] for r in rows], bend=[r[4] for r in rows], end=end, ticks_per_second=tps,
                      bend_range=bend_range)
    return table, strays, len(dangling)


MESSAGE_CHANNELS, MESSAGE_PITCHES = st.sampled_from([0, 1, 9]), st.sampled_from([60, 61, 62])
NOTE_MESSAGES = st.one_of(
    st.builds(lambda c, n, v: mido.Message('note_on', channel=c, note=n, velocity=v), MESSAGE_CHANNELS,
              MESSAGE_PITCHES, st.sampled_from([0, 1, 64, 127])),
    st.builds(lambda c, n: mido.Message('note_off', channel=c, note=n), MESSAGE_CHANNELS, MESSAGE_PITCHES),
    st.builds(lambda c, p: mido.Message('pitchwheel', channel=c, pitch=p), MESSAGE_CHANNELS,
              st.sampled_from([-8192, -1, 0, 1, 4096, 8191])),
    st.builds(lambda c, k, v: mido.Message('control_change', channel=c, control=k, value=v), MESSAGE_CHANNELS,
              st.sampled_from([101, 100, 6, 38, 99, 7]), st.sampled_from([0, 1, 12, 127])))
OTHER_MESSAGES = st.one_of(
    st.builds(lambda t: mido.MetaMessage('set_tempo', tempo=t), st.sampled_from([250000, 500000, 1_000_001])),
    st.just(mido.Message('sysex', data=[0x7E, 0x7F, 0x09, 0x01])),
    st.builds(lambda n: mido.MetaMessage('lyrics', text='la' * n), st.sampled_from([0, 3, 100])),
    st.builds(lambda c, p: mido.Message('program_change', channel=c, program=p), MESSAGE_CHANNELS, st.sampled_from([0, 29])))
DELTAS = st.sampled_from([0, 0, 1, 7, 200, 20000, 3_000_000])


@st.composite
def midi_files(draw, runs=False):
    "Random type 0/1 files: notes (velocity-0 note-ons, strays, dangling), bends, RPN, tempo changes, sysex, drums"
    if runs:  # long runs of channel messages between single other messages, as real tracks have
        segment = st.one_of(st.lists(NOTE_MESSAGES, min_size=8, max_size=60), OTHER_MESSAGES.map(lambda m: [m]))
        track = st.lists(segment, max_size=6).map(lambda segs: [m for seg in segs for m in seg])
    else: track = st.lists(st.one_of(NOTE_MESSAGES, OTHER_MESSAGES), max_size=40)
    tracks = draw(st.lists(track, min_size=1, max_size=3))
    mf = mido.MidiFile(type=0 if len(tracks) == 1 else 1, ticks_per_beat=draw(st.sampled_from([1, 96, 480, 997])))
    for t in tracks: mf.tracks.append(mido.MidiTrack([m.copy(time=draw(DELTAS)) for m in t]))
    buf = io.BytesIO(); mf.save(file=buf)
    return buf.getvalue()


@given(midi_files(), st.sampled_from([192, 768]), st.sampled_from([4.0, 1.0]))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reader_agrees_with_reference(data, tps, bend_range):
    ref, strays, dangling = reference_read(data, tps, bend_range)
    for engine in ('auto', 'mido'):
        notes, report = read_midi_report(data, tps, bend_range, engine=engine)
        assert notes == ref
        assert (report['stray_note_offs'], report['dangling_closed']) == (strays, dangling)


@given(midi_files(runs=True))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_numpy_runs_decode_like_mido(data):
    "Force the numpy run decoder onto every track: the events equal mido's"
    old, midi.RUN_MIN_BYTES = midi.RUN_MIN_BYTES, 0
    try: fast = scan_fast(data)
    finally: midi.RUN_MIN_BYTES = old
    ref = scan_mido(data)
    for k in ('tick', 'status', 'data1', 'data2', 'tempo_tick', 'tempo', 'last_tick'):
        assert np.array_equal(getattr(fast, k), getattr(ref, k)), k


# ---------------------------------------------------------------- real files

CHORALES = music21.corpus.getComposer('bach')[:20]


def encode_decode_encode(path: Path):
    "text of the file, and the text after text → notes → MIDI → notes"
    notes = read_midi(path)
    text = notes_to_text(notes)
    back = text_to_notes(text, ticks_per_second=notes.ticks_per_second, bend_range=notes.bend_range)
    again = read_midi(midi_bytes(back), notes.ticks_per_second, notes.bend_range)
    return notes, text, notes_to_text(again, bends=(notes.bend != NO_BEND).any() or notes.instrument != 'piano')


def check_file(path: Path):
    notes, text, again = encode_decode_encode(path)
    if again != text:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f'midi_{path.stem}.txt').write_text(f'{text}\n---\n{again}\n')
    assert len(notes) > 0 and again == text
    assert read_midi(path, engine='mido') == notes


@pytest.mark.parametrize('path', sorted(GP2MIDI.glob('*.mid')), ids=lambda p: p.name)
def test_fixture_survives_encode_decode_encode(path):
    check_file(need(path))


@pytest.mark.parametrize('chorale', CHORALES, ids=lambda p: Path(p).name)
def test_chorale_survives_encode_decode_encode(tmp_path, chorale):
    path = tmp_path / f'{Path(chorale).stem}.mid'
    music21.corpus.parse(chorale).write('midi', fp=path)
    check_file(path)


def test_fixture_bends_are_read():
    notes, report = read_midi_report(need(GP2MIDI / 'test_gp3.mid'))
    assert (notes.bend != NO_BEND).sum() == 72 and report['bends_clipped'] == 0
    assert report['drum_notes_skipped'] > 0 and 9 not in report['channels']
    assert len(read_midi(GP2MIDI / 'test_gp3.mid', keep_drums=True)) == len(notes) + report['drum_notes_skipped']


# ---------------------------------------------------------------- bad and unusual files

def one_note_file(**header) -> mido.MidiFile:
    mf = mido.MidiFile(**header)
    mf.tracks.append(mido.MidiTrack([mido.Message('note_on', note=60, velocity=80, time=0),
                                     mido.Message('note_off', note=60, time=1000)]))
    return mf


def saved(mf: mido.MidiFile) -> bytes:
    buf = io.BytesIO(); mf.save(file=buf); return buf.getvalue()


BAD = {'empty.mid': (b'', 'empty file'),
       'text.mid': (b'p60:v80:d96:t0 p62:v80:d96:t0\n', 'not a MIDI file'),
       'random.mid': (bytes(random.Random(0).randrange(256) for _ in range(300)), 'not a MIDI file'),
       'truncated.mid': (saved(one_note_file())[:25], 'truncated'),
       'header_only.mid': (saved(one_note_file())[:12], 'truncated'),
       'type2.mid': (saved(one_note_file(type=2)), 'type 2')}


@pytest.mark.parametrize('name', BAD, ids=list(BAD))
def test_bad_input_is_named_with_a_reason(tmp_path, name):
    data, reason = BAD[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputFileError, match=reason) as e: read_midi(tmp_path / name)
    assert e.value.path == str(tmp_path / name)


def test_smpte_division_is_converted():
    mf = one_note_file()
    mf.ticks_per_beat = ((256 - 25) << 8 | 40) - 65536  # 25 frames/s × 40 ticks/frame = 1000 ticks per second
    notes = read_midi(saved(mf))
    assert (notes.onset.tolist(), notes.duration.tolist()) == ([0], [192])


def test_fallback_to_mido_is_reported():
    mf = one_note_file()
    mf.tracks[0].insert(1, mido.Message('songpos', pos=3))   # a system message: the fast scanner hands the file over
    notes, report = read_midi_report(saved(mf))
    assert (report['engine'], report['fallback']) == ('mido', 'system message 0xF2') and len(notes) == 1
    assert read_midi_report(saved(one_note_file()))[1]['fallback'] is None


def test_fallback_with_unknown_meta_events_is_refused():
    "mido 1.3 loses the delta time of an unknown meta event: a file only mido can read must not be read wrong"
    mf = one_note_file()
    mf.tracks[0].insert(1, mido.UnknownMetaMessage(0x60, data=(1,), time=10))
    assert read_midi(saved(mf)).duration.tolist() == [202]        # the fast scanner keeps its time (1010 ticks)
    mf.tracks[0].insert(1, mido.Message('songpos', pos=3))
    with pytest.raises(InputFileError, match='unknown meta'): read_midi(saved(mf))


def test_bad_smpte_rate_is_rejected():
    mf = one_note_file()
    mf.ticks_per_beat = ((256 - 23) << 8 | 40) - 65536
    with pytest.raises(InputFileError, match='SMPTE'): read_midi(saved(mf))
