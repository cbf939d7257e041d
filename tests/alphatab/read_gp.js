// The notes alphaTab plays for Guitar Pro files: an independent reader for tests/test_alphatab.py.
// Usage: node read_gp.js FILE...   (one JSON line per file on stdout)
//
// alphaTab decides the playing order (repeats, alternate endings, directions), the bar and beat times (tuplets,
// dots, grace notes), the tempo map, ties and bends. This script only lists what it decided, applying smidilab's
// conventions where the two readers count differently (see nbs/05_guitarpro.ipynb, "Checked against alphaTab"):
// - dead notes are not notes; a tie continues its origin unless the origin stopped sounding before the tie (a rest
//   lies between them): then the tie is a note of its own;
// - pitch is the fretted pitch (string tuning + capo + fret), also for harmonics;
// - a note is bent if it or a tied continuation has a bend or a whammy-bar (tremolo-bar) effect.
// Times are alphaTab ticks (960 per quarter) from the start of the first bar; a grace note before the first beat
// has a negative time. Tempo changes are [tick, bpm] in the same played ticks.
const fs = require('fs');
const alphaTab = require('@coderline/alphatab');

const FLAG_GRACE = 1, FLAG_BENT = 2, FLAG_TIE_AFTER_GAP = 4;

function writtenEnd(note) { return note.beat.absolutePlaybackStart + note.beat.playbackDuration; }

function tieAfterGap(note) {
  return note.isTieDestination && note.tieOrigin !== null && writtenEnd(note.tieOrigin) < note.beat.absolutePlaybackStart;
}

function continuesTie(note) { return note.isTieDestination && note.tieOrigin !== null && !tieAfterGap(note); }

function bentPart(note) { return note.hasBend || note.beat.hasWhammyBar; }

function isBent(note) {
  for (let n = note; n; n = n.tieDestination) {
    if (n !== note && !continuesTie(n)) return false;
    if (bentPart(n)) return true;
  }
  return false;
}

function noteRow(note, at) {
  const flags = (note.beat.graceType !== alphaTab.model.GraceType.None ? FLAG_GRACE : 0) |
    (isBent(note) ? FLAG_BENT : 0) | (tieAfterGap(note) ? FLAG_TIE_AFTER_GAP : 0);
  return [at + note.beat.playbackStart, note.fret + note.stringTuning, flags];
}

function silentHandler(tempos) {
  const none = () => {};
  return { addTickShift: none, addTimeSignature: none, addRest: none, addNote: none, addControlChange: none,
           addProgramChange: none, addBend: none, addNoteBend: none, finishTrack: none,
           addTempo(tick, bpm) { tempos.push([tick, bpm]); } };
}

function playedBars(score) {
  const tempos = [];
  const gen = new alphaTab.midi.MidiFileGenerator(score, new alphaTab.Settings(), silentHandler(tempos));
  gen.generate();
  const bars = gen.tickLookup.masterBars.map((l) => [l.masterBar.index, l.start]);
  return { bars, tempos };
}

function trackNotes(track, bars) {
  const rows = [];
  let dead = 0;
  for (const [index, start] of bars) {
    for (const staff of track.staves) {
      for (const voice of staff.bars[index].voices) {
        for (const beat of voice.beats) {
          for (const note of beat.notes) {
            if (note.isDead) { dead++; continue; }
            if (!continuesTie(note)) rows.push(noteRow(note, start));
          }
        }
      }
    }
  }
  return { rows, dead };
}

function readFile(path) {
  const score = alphaTab.importer.ScoreLoader.loadScoreFromBytes(new Uint8Array(fs.readFileSync(path)),
                                                                 new alphaTab.Settings());
  const { bars, tempos } = playedBars(score);
  const shift = bars.length ? bars[0][1] : 0;  // > 0 when a grace note comes before the first beat
  const at = bars.map(([i, s]) => [i, s - shift]);
  const tracks = score.tracks.map((t) => ({ index: t.index, percussion: t.staves[0].isPercussion,
                                            ...trackNotes(t, at) }));
  return { file: path, ok: true, played: at.map(([i]) => i), tempos: tempos.map(([t, b]) => [t - shift, b]), tracks };
}

for (const path of process.argv.slice(2)) {
  let out;
  try { out = readFile(path); } catch (e) { out = { file: path, ok: false, error: String(e && e.message || e) }; }
  process.stdout.write(JSON.stringify(out) + '\n');
}
