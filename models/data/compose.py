"""Procedural General MIDI songs: new compositions for training beyond the 31 openmsx songs.

The wide U-Net fits its 25 training songs and stops improving on the validation songs
(DATA.md, "Generated songs"): it needs more *compositions*, not more renders of the same ones.
Each song here is drawn from a seed: a key and mode, a tempo and feel (straight, swung,
shuffled), a form of sections with their own chord progressions and arrangement, then

- **drums** (GM channel 10): a style's step template (rock, funk, disco, shuffle, jazz ride,
  bossa, reggae, electronic, half-time, waltz) sampled into a pattern that repeats with small
  changes, fills and crashes at section ends, a random GM drum kit, extra hand percussion;
- **bass**: a line on the chord roots in a pattern family (held roots, pumping eighths,
  root-fifth, octaves, walking, funk sixteenths, arpeggios), with a GM bass program and a
  register well under middle C, so ``midi_split`` labels it bass by its program;
- **other**: two to four parts among pads, rhythmic comping, arpeggios, a lead melody made of
  repeated and varied motifs, and a counter line, each with a random melodic GM program.

- **shared register** (``shared_register``: the share of songs): a part of ``other`` down in
  the bass's octaves (a piano or guitar left hand, held low strings or organ, a low cello,
  bassoon or baritone-sax line), and in some of those songs the bass an octave higher: the
  openmsx validation songs put parts of both stems in one register (a picked bass at median
  pitch 48 beside an ocarina at 55, a bass at 34 under a piano left hand at 41), so the stems
  must be told apart by timbre, not by pitch.
  These draws use their own random stream: with ``shared_register=0`` a song is the one
  earlier versions made (gen1..gen4 in DATA.md).

Parts drop in and out between sections (intros without drums, breakdowns without bass), so
stems are silent at times as in real songs. Velocity, timing, pan, volume, reverb and chorus
are randomised per part. A song is a pure function of ``(seed, index)``.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mido

TPB = 480  # ticks per beat
DRUM_CHANNEL = 9
SECONDS_RANGE = (45.0, 100.0)

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
}
# Chord progressions as 0-based scale degrees, common in pop, rock, jazz and folk.
PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (1, 4, 0, 0), (0, 3, 0, 4),
    (0, 6, 5, 4), (0, 5, 1, 4), (0, 2, 3, 4), (0, 0, 3, 3, 0, 0, 4, 3), (0, 3, 5, 4),
    (3, 4, 2, 5), (0, 4, 3, 0), (0, 1, 2, 3), (5, 4, 3, 4), (0, 3, 6, 2),
)

# Drum styles: (steps per beat, beats per bar, {GM note: 1-bar step template}).
# Template characters: 'x' always, 'o' half the time, 'g' a quiet ghost note 60 % of the time.
HAT = 0  # placeholder key: the style's time-keeper, replaced by the song's hat choice
DRUM_STYLES: dict[str, tuple[int, int, dict[int, str]]] = {
    "rock": (4, 4, {36: "x.....o.x.o.....", 38: "....x.......x..g", HAT: "x.x.x.x.x.x.x.x."}),
    "pop": (4, 4, {36: "x..o..x...x..o..", 38: "....x.......x...", HAT: "x.x.x.x.x.x.x.xo"}),
    "funk": (4, 4, {36: "x..x..o...x..o..", 38: "..g.x..g.g..x.gg", HAT: "xxxxxxxxxxxxxxxx"}),
    "disco": (4, 4, {36: "x...x...x...x...", 39: "....x.......x...", 46: "..x...x...x...x.",
                     HAT: "x.o.x.o.x.o.x.o."}),
    "halftime": (4, 4, {36: "x.....o...o.....", 38: "........x.......", HAT: "x.x.x.x.x.x.x.x."}),
    "electronic": (4, 4, {36: "x...x...x...x..o", 39: "....x.......x...", HAT: "oxoxoxoxoxoxoxox"}),
    "reggae": (4, 4, {36: "........x.......", 37: "........x.......", HAT: "..x...x...x...x."}),
    "bossa": (4, 4, {36: "x..xx..xx..xx..x", 37: "x..x..x...x..x..", HAT: "xxxxxxxxxxxxxxxx"}),
    "shuffle": (3, 4, {36: "x.....o.x..o", 38: "...x.....x..", HAT: "x.xx.xx.xx.x"}),
    "swing": (3, 4, {36: "o.....o.....", 44: "...x.....x..", 51: "x..x.xx..x.x",
                     38: "..g..g...g.g"}),
    "waltz": (4, 3, {36: "x...........", 38: "....x...x...", HAT: "x.x.x.x.x.x."}),
}
# A song's time-keeper, weighted: the closed hi-hat in most songs (a quarter of all drum hits in
# the openmsx training songs), ride, pedal hat, shaker or tambourine in a few. (Drawn uniformly
# from 42, 42, 42, 44, 51, 70, 54 before, maracas were 14 % of generated drum hits against
# under 2 % in openmsx: DATA.md.)
HAT_CHOICES = {42: 14, 51: 2, 44: 2, 70: 1, 54: 1}
KICKS = (35, 36)  # acoustic and electric bass drum, equally common in the openmsx songs
HAND_PERCUSSION_P = 0.2  # songs with a hand-percussion layer
TOMS = (50, 48, 47, 45, 43, 41)
CRASHES = (49, 57)
HAND_PERCUSSION = (56, 60, 61, 62, 63, 64, 69, 75, 76, 77)  # cowbell, bongos, congas, cabasa ...
DRUM_KITS = (0, 0, 0, 8, 16, 24, 25, 32, 40)  # standard, room, power, electronic, 808, jazz, brush
STYLE_BASS = {
    "rock": ("eighths", "roots", "root_fifth"), "pop": ("eighths", "syncopated", "roots"),
    "funk": ("funk", "octaves"), "disco": ("octaves", "eighths"),
    "halftime": ("roots", "syncopated"),
    "electronic": ("eighths", "syncopated", "arp"), "reggae": ("syncopated", "roots"),
    "bossa": ("root_fifth", "syncopated"), "shuffle": ("walking", "root_fifth"),
    "swing": ("walking",), "waltz": ("root_fifth", "roots"),
}
# GM programs, 0-based.
BASS_PROGRAMS = tuple(range(32, 40))
PAD_PROGRAMS = (16, 17, 19, 48, 49, 50, 51, 52, 54, 88, 89, 90, 91, 92, 93, 94, 95)
COMP_PROGRAMS = (0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 24, 25, 26, 27, 28, 29, 30, 61, 62, 21)
ARP_PROGRAMS = (0, 4, 6, 8, 9, 10, 11, 12, 13, 24, 25, 46, 80, 81, 84, 98, 107, 108)
LEAD_PROGRAMS = (
    0, 4, 11, 22, 26, 27, 29, 30, 40, 41, 56, 57, 59, 60, 64, 65, 66, 68, 69, 71, 72, 73, 74,
    75, 78, 79, 80, 81, 82, 83, 84, 85, 87, 105, 109,
)
COUNTER_PROGRAMS = (40, 41, 42, 48, 57, 58, 60, 61, 64, 66, 67, 68, 70, 71, 21, 52, 19)
OTHER_ROLES = ("pad", "comp", "arp", "lead", "counter")
# Shared-register parts: non-bass GM programs that real songs play low (pianos, organs,
# guitars, strings, brass, reeds, synths), never a bass program nor the contrabass (43), whose
# stem would be ambiguous.
LOW_PROGRAMS = {
    "left_hand": (0, 1, 2, 3, 4, 5, 7, 16, 17, 18, 19, 24, 25, 26, 27, 29, 30),
    "held": (16, 19, 42, 48, 49, 50, 52, 61, 62, 89, 90, 95),
    "line": (42, 57, 58, 60, 67, 70, 71, 26, 29, 80, 81, 84),
}
SHARED_REGISTER_P = 0.5  # default share of songs with a low `other` part
BASS_UP_P = 0.4  # of those, the share whose bass also moves up an octave (median pitch <= 60)


# CC7 of the drum part. A SoundFont synthesizer attenuates by 40 log10(v / 127) dB, so 45..120 is
# about -18..-1 dB: the drums land between about -20 and -3 dB of the mixture, the spread of
# real and openmsx songs. The first range (90..120) put them at -7 dB median, 6 dB louder
# than the openmsx songs, and the drums estimate trained on them got worse (DATA.md).
DRUM_VOLUME = (45, 120)


@dataclass(frozen=True)
class Note:
    start: int  # ticks
    length: int
    pitch: int
    velocity: int


@dataclass
class Part:
    role: str  # "drums", "bass" or one of OTHER_ROLES
    channel: int
    program: int  # 0-based GM program (drum kit number on the drum channel)
    notes: list[Note]
    volume: int = 100
    pan: int = 64
    reverb: int = 40
    chorus: int = 0


@dataclass(frozen=True)
class Section:
    start_bar: int
    bars: int
    chords: tuple[tuple[int, ...], ...]  # one chord per bar: pitch classes, root first
    parts: frozenset[str]  # roles that play
    energy: float  # velocity scale and drum density, 0.6 .. 1.1


@dataclass
class Song:
    name: str
    tempo: float  # BPM
    beats: int  # beats per bar
    steps: int  # drum steps per beat: 4 straight, 3 shuffled
    swing: float  # delay of off-beat sixteenths, fraction of a step
    key: int
    mode: str
    style: str
    sections: list[Section]
    parts: list[Part]

    @property
    def bar_ticks(self) -> int:
        return self.beats * TPB

    @property
    def bars(self) -> int:
        return sum(s.bars for s in self.sections)


def _chord(key: int, scale: Sequence[int], degree: int, seventh: bool) -> tuple[int, ...]:
    """Pitch classes of the diatonic chord on ``degree`` (stacked thirds), root first."""
    tones = [(key + scale[(degree + 2 * i) % 7]) % 12 for i in range(4 if seventh else 3)]
    return tuple(tones)


def _section_chords(rng: random.Random, key: int, mode: str, bars: int, seventh: bool,
                    ) -> tuple[tuple[int, ...], ...]:
    """One chord per bar: a progression at one or two bars per chord, repeated to fill."""
    prog = rng.choice(PROGRESSIONS)
    per = 2 if len(prog) <= 4 and bars >= 8 and rng.random() < 0.4 else 1
    degrees = [d for d in prog for _ in range(per)]
    scale = SCALES[mode]
    return tuple(_chord(key, scale, degrees[i % len(degrees)], seventh) for i in range(bars))


def _form(rng: random.Random, n_bars: int) -> list[tuple[str, int]]:
    """Section labels and lengths filling about ``n_bars``: intro, then A/B/C sections."""
    body = rng.choice([("A", "B", "A", "B"), ("A", "A", "B", "A"), ("A", "B", "C", "B"),
                       ("A", "B", "A", "C", "B"), ("A", "A", "B", "B")])
    form = [("intro", 4)] if rng.random() < 0.7 else []
    i = 0
    while sum(bars for _, bars in form) < n_bars:
        form.append((body[i % len(body)], rng.choice((4, 8, 8))))
        i += 1
    return form


def _arrangement(rng: random.Random, label: str, roles: Sequence[str], has_drums: bool,
                 ) -> frozenset[str]:
    """Which parts play in a section: intros are thin, some sections break down."""
    playing = set(roles)
    if label == "intro":
        keep = rng.sample(list(roles), k=max(1, len(roles) // 2))
        playing = set(keep)
    elif rng.random() < 0.3:  # a breakdown or a thinned-out section
        playing.discard(rng.choice(list(roles)))
    if not has_drums:
        playing.discard("drums")
    return frozenset(playing)


def _humanize(rng: random.Random, tick: int, amount: int) -> int:
    return max(0, tick + int(rng.gauss(0, amount)))


def _velocity(rng: random.Random, base: float, energy: float) -> int:
    return max(1, min(127, int(rng.gauss(base * energy, 6))))


def _step_tick(song: Song, bar: int, step: int) -> int:
    """Tick of drum-grid step ``step`` in ``bar`` (swing delays off-beat sixteenths)."""
    step_ticks = TPB // song.steps
    t = bar * song.bar_ticks + step * step_ticks
    if song.steps == 4 and step % 2 == 1:
        t += int(song.swing * step_ticks)
    return t


def _drum_pattern(rng: random.Random, template: dict[int, str], density: float,
                  ) -> dict[int, list[float]]:
    """A concrete one-bar pattern: per note, a velocity factor per step (0 = silent)."""
    pattern = {}
    for note, steps in template.items():
        row = []
        for c in steps:
            hit = {"x": 1.0, "o": 0.5 * density, "g": 0.6}.get(c, 0.0)
            if c == "." and rng.random() < 0.04 * density:
                hit = 1.0  # an extra hit not in the template
            row.append((0.45 if c == "g" else 1.0) if rng.random() < hit else 0.0)
        pattern[note] = row
    return pattern


def _drums(rng: random.Random, song: Song) -> list[Note]:
    steps_per_beat, beats, template = DRUM_STYLES[song.style]
    hat = rng.choices(list(HAT_CHOICES), weights=list(HAT_CHOICES.values()))[0]
    kick = rng.choice(KICKS)
    template = {(hat if n == HAT else kick if n == 36 else n): s for n, s in template.items()}
    if rng.random() < HAND_PERCUSSION_P:  # a hand-percussion layer
        perc = rng.choice(HAND_PERCUSSION)
        n = steps_per_beat * beats
        template[perc] = "".join(rng.choice("xo..") for _ in range(n))
    if 38 in template and rng.random() < 0.3:  # electric snare or side stick instead
        template[rng.choice((40, 37))] = template.pop(38)
    notes = []
    step_count = steps_per_beat * beats
    for sec in song.sections:
        if "drums" not in sec.parts:
            continue
        base = _drum_pattern(rng, template, sec.energy)
        alt = _drum_pattern(rng, template, sec.energy)  # every other bar may vary a little
        for b in range(sec.bars):
            bar = sec.start_bar + b
            fill = b == sec.bars - 1 and rng.random() < 0.6
            pattern = alt if b % 2 and rng.random() < 0.5 else base
            for note, row in pattern.items():
                for s, v in enumerate(row):
                    if v == 0 or (fill and s >= step_count // 2):
                        continue
                    accent = 1.1 if s % steps_per_beat == 0 else 0.9
                    vel = _velocity(rng, 95 * v * accent, sec.energy)
                    notes.append(Note(_humanize(rng, _step_tick(song, bar, s), 6),
                                      TPB // 4, note, vel))
            if fill:  # toms or snare rolling down over the second half of the bar
                drums = rng.choice([TOMS, (38,) * 3 + TOMS[::2], (38, 38, 38, 38)])
                for i, s in enumerate(range(step_count // 2, step_count)):
                    if rng.random() < 0.8:
                        pitch = drums[min(len(drums) - 1, i * len(drums) // (step_count // 2))]
                        notes.append(Note(_step_tick(song, bar, s), TPB // 4, pitch,
                                          _velocity(rng, 80 + 4 * i, sec.energy)))
            if b == 0 and rng.random() < 0.7:
                notes.append(Note(_step_tick(song, bar, 0), TPB, rng.choice(CRASHES),
                                  _velocity(rng, 100, sec.energy)))
    return notes


def _bass_root(pc: int, low: int) -> int:
    """The pitch of class ``pc`` in the octave starting at ``low``."""
    return low + (pc - low) % 12


def _bass(rng: random.Random, song: Song) -> list[Note]:
    low = rng.randint(28, 38)  # E1 .. D2: the octave the roots sit in
    staccato = rng.random() < 0.35
    scale = SCALES[song.mode]
    notes = []
    for sec in song.sections:
        if "bass" not in sec.parts:
            continue
        kind = rng.choice(STYLE_BASS[song.style])
        funk_mask = [rng.random() < 0.45 or i == 0 for i in range(4 * song.beats)]
        syncopation = rng.choice([(0, 3, 6), (0, 3, 4, 6), (0, 2, 3, 6), (0, 5)])
        for b in range(sec.bars):
            bar = sec.start_bar + b
            chord = sec.chords[b]
            nxt = sec.chords[b + 1] if b + 1 < sec.bars else chord
            root = _bass_root(chord[0], low)
            fifth = root + 7
            t0, beat = bar * song.bar_ticks, TPB
            events: list[tuple[int, int, int]] = []  # (offset, length, pitch)
            if kind == "roots":
                half = song.beats % 2 == 0 and rng.random() < 0.5
                events = ([(0, 2 * beat, root), (2 * beat, 2 * beat, root)] if half
                          else [(0, song.bar_ticks, root)])
            elif kind == "eighths":
                events = [(i * beat // 2, beat // 2, root) for i in range(2 * song.beats)]
            elif kind == "root_fifth":
                events = [(i * beat, beat, root if i % 2 == 0 else fifth - 12 * (fifth > 55))
                          for i in range(song.beats)]
            elif kind == "octaves":
                events = [(i * beat // 2, beat // 2, root + 12 * (i % 2))
                          for i in range(2 * song.beats)]
            elif kind == "arp":
                tones = [root + (pc - chord[0]) % 12 for pc in chord] + [root + 12]
                events = [(i * beat // 2, beat // 2, tones[i % len(tones)])
                          for i in range(2 * song.beats)]
            elif kind == "syncopated":
                events = [(s * beat // 2, beat // 2, root if rng.random() < 0.7 else fifth)
                          for s in syncopation if s < 2 * song.beats]
            elif kind == "funk":
                options = (root, root, root + 12, fifth, root + 10)
                events = [(i * beat // 4, beat // 4, rng.choice(options) if i else root)
                          for i, on in enumerate(funk_mask) if on]
            elif kind == "walking":  # chord tones, then a step leading to the next root
                target = _bass_root(nxt[0], low)
                tones = [root] + [root + (pc - chord[0]) % 12 for pc in chord[1:]]
                line = [root] + [rng.choice(tones) for _ in range(song.beats - 2)]
                approach = target + rng.choice((-1, 1, -2, 2))
                line.append(approach if rng.random() < 0.7 else
                            _bass_root((song.key + rng.choice(scale)) % 12, low))
                events = [(i * beat, beat, p) for i, p in enumerate(line)]
            for off, length, pitch in events:
                length = length // 2 if staccato else length - 10
                vel = _velocity(rng, 95 if off % beat == 0 else 82, sec.energy)
                notes.append(Note(_humanize(rng, t0 + off, 4), max(30, length),
                                  max(24, min(58, pitch)), vel))
    return notes


def _voicing(rng: random.Random, chord: Sequence[int], low: int, size: int) -> list[int]:
    """A close voicing of ``chord`` starting at the first chord tone at or above ``low``."""
    inversion = rng.randrange(len(chord))
    pcs = list(chord[inversion:]) + list(chord[:inversion])
    pitches, p = [], low
    for pc in (pcs * 2)[:size]:
        p = p + (pc - p) % 12
        pitches.append(p)
        p += 1
    return pitches


def _motif(rng: random.Random, beats: int) -> list[tuple[int, int, int]]:
    """A one-bar melodic motif: (onset in eighths, length in eighths, scale step move)."""
    slots = 2 * beats
    onsets = sorted({0} | {i for i in range(1, slots) if rng.random() < 0.45})
    out = []
    for j, o in enumerate(onsets):
        end = onsets[j + 1] if j + 1 < len(onsets) else slots
        length = end - o if rng.random() < 0.8 else max(1, (end - o) // 2)
        out.append((o, length, rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3))))
    return out


def _melody(rng: random.Random, song: Song, sec: Section, low: int, high: int,
            sparse: bool) -> list[Note]:
    """A lead or counter line: motifs repeated (A A' A B) and snapped to chord tones on beats."""
    scale = [(song.key + s) % 12 for s in SCALES[song.mode]]
    pool = [p for p in range(low, high + 1) if p % 12 in scale]
    motifs = [_motif(rng, song.beats) for _ in range(2)]
    if sparse:
        motifs = [[(o, max(2, n), m) for o, n, m in mo if o % 2 == 0] or mo[:1] for mo in motifs]
    idx = rng.randrange(len(pool) // 3, 2 * len(pool) // 3)
    notes = []
    for b in range(sec.bars):
        chord = sec.chords[b]
        motif = motifs[1] if b % 4 == 3 else motifs[0]
        if b % 4 == 2 and rng.random() < 0.5:
            continue  # a bar of rest, as melodies breathe
        for o, n, move in motif:
            idx = max(0, min(len(pool) - 1, idx + move))
            if o % 4 == 0 and pool[idx] % 12 not in chord:  # strong beat: nearest chord tone
                for d in (1, -1, 2, -2):
                    if 0 <= idx + d < len(pool) and pool[idx + d] % 12 in chord:
                        idx += d
                        break
            t = (sec.start_bar + b) * song.bar_ticks + o * TPB // 2
            notes.append(Note(_humanize(rng, t, 5), max(60, n * TPB // 2 - 20), pool[idx],
                              _velocity(rng, 90 if o % 2 == 0 else 78, sec.energy)))
    return notes


def _other(rng: random.Random, song: Song, role: str) -> list[Note]:
    notes = []
    low = {"pad": rng.randint(50, 60), "comp": rng.randint(48, 60), "arp": rng.randint(55, 67)}
    rhythm = rng.choice([(0,), (0, 2), (1, 3), (0, 1.5, 3), (0.5, 1.5, 2.5, 3.5), (0, 0.5, 1.5, 2)])
    for sec in song.sections:
        if role not in sec.parts:
            continue
        if role in ("lead", "counter"):
            lo = rng.randint(62, 70) if role == "lead" else rng.randint(52, 58)
            notes += _melody(rng, song, sec, lo, lo + rng.randint(14, 20), role == "counter")
            continue
        for b in range(sec.bars):
            chord = sec.chords[b]
            t0 = (sec.start_bar + b) * song.bar_ticks
            if role == "pad":
                for p in _voicing(rng, chord, low["pad"], rng.choice((3, 4))):
                    notes.append(Note(t0, song.bar_ticks - 30, p, _velocity(rng, 70, sec.energy)))
            elif role == "comp":
                voicing = _voicing(rng, chord, low["comp"], rng.choice((3, 4, 5)))
                for beat in rhythm:
                    if beat >= song.beats:
                        continue
                    t = _humanize(rng, t0 + int(beat * TPB), 5)
                    length = int(rng.choice((0.4, 0.9)) * TPB)
                    for i, p in enumerate(voicing):  # a slight strum
                        notes.append(Note(t + 8 * i, length, p, _velocity(rng, 80, sec.energy)))
            elif role == "arp":
                tones = _voicing(rng, chord, low["arp"], 4)
                order = tones + tones[-2:0:-1] if rng.random() < 0.5 else tones
                step = TPB // rng.choice((2, 4)) if sec.energy > 0.8 else TPB // 2
                for i in range(song.bar_ticks // step):
                    notes.append(Note(_humanize(rng, t0 + i * step, 4), step - 10,
                                      order[i % len(order)], _velocity(rng, 75, sec.energy)))
    return notes


def _low_other(rng: random.Random, song: Song, kind: str) -> list[Note]:
    """A part of ``other`` in the bass register (roots E1..D2 lie under it, chords at C2..C3)."""
    notes = []
    low = rng.randint(36, 45)
    for sec in song.sections:
        if "low" not in sec.parts:
            continue
        if kind == "line":
            notes += _melody(rng, song, sec, low, low + rng.randint(12, 16), True)
            continue
        for b in range(sec.bars):
            chord = sec.chords[b]
            t0 = (sec.start_bar + b) * song.bar_ticks
            vel = _velocity(rng, 80, sec.energy)
            if kind == "held":
                for p in _voicing(rng, chord, low, rng.choice((1, 2, 3))):
                    notes.append(Note(t0, song.bar_ticks - 30, p, vel))
                continue
            root = low + (chord[0] - low) % 12  # left hand: root and fifth or octave per beat
            for beat in range(song.beats):
                pitch = root + (0 if beat % 2 == 0 else rng.choice((7, 12)))
                t = _humanize(rng, t0 + beat * TPB, 5)
                notes.append(Note(t, int(rng.choice((0.5, 0.9)) * TPB), pitch, vel))
    return notes


def _share_register(song: Song, seed: int, index: int, shared_register: float,
                    channels: list[int]) -> None:
    """Add a low `other` part to ``song`` (and maybe raise its bass), from a stream of its own
    so that the rest of the song does not change with ``shared_register``."""
    rng = random.Random(f"rtsep-compose-low:{seed}:{index}")
    if rng.random() >= shared_register:
        return
    kind = rng.choice(tuple(LOW_PROGRAMS))
    for sec_i, sec in enumerate(song.sections):  # it plays where the bass plays, mostly
        plays = "bass" in sec.parts and (sec_i > 0 or rng.random() < 0.5)
        song.sections[sec_i] = Section(sec.start_bar, sec.bars, sec.chords,
                                       sec.parts | {"low"} if plays else sec.parts, sec.energy)
    song.parts.append(Part("low", channels.pop(), rng.choice(LOW_PROGRAMS[kind]),
                           _low_other(rng, song, kind), volume=rng.randint(70, 110),
                           pan=rng.randint(30, 98), reverb=rng.randint(10, 70),
                           chorus=rng.choice((0, 0, 20))))
    if rng.random() < BASS_UP_P:
        bass = next(p for p in song.parts if p.role == "bass")
        if max(n.pitch for n in bass.notes) + 12 <= 64:
            bass.notes = [Note(n.start, n.length, n.pitch + 12, n.velocity)
                          for n in bass.notes]


def compose(seed: int, index: int, shared_register: float = SHARED_REGISTER_P) -> Song:
    """The song number ``index`` of ``seed``: a pure function of the three."""
    rng = random.Random(f"rtsep-compose:{seed}:{index}")
    style = rng.choice(list(DRUM_STYLES))
    steps, beats, _ = DRUM_STYLES[style]
    tempo = {"swing": (100, 200), "shuffle": (80, 140), "reggae": (70, 100), "halftime": (70, 95),
             "waltz": (90, 170), "disco": (110, 130), "electronic": (110, 140)
             }.get(style, (80, 150))
    bpm = round(rng.uniform(*tempo), 1)
    seconds = rng.uniform(*SECONDS_RANGE)
    n_bars = max(8, round(seconds * bpm / 60 / beats))
    mode = rng.choice(["major", "major", "minor", "minor", "dorian", "mixolydian",
                       "harmonic minor"])
    key = rng.randrange(12)
    seventh = style in ("swing", "shuffle", "bossa") or rng.random() < 0.25
    others = rng.sample(OTHER_ROLES, k=rng.randint(2, 4))
    has_drums = rng.random() > 0.05
    roles = (["drums"] if has_drums else []) + ["bass", *others]
    chords_by_label: dict[str, tuple[tuple[int, ...], ...]] = {}
    sections, bar = [], 0
    for label, bars in _form(rng, n_bars):
        key_label = "A" if label == "intro" else label
        if key_label not in chords_by_label or len(chords_by_label[key_label]) < bars:
            chords_by_label[key_label] = _section_chords(rng, key, mode, bars, seventh)
        energy = {"intro": 0.7, "A": 0.85, "B": 1.0, "C": 0.9}[label] * rng.uniform(0.9, 1.1)
        sections.append(Section(bar, bars, chords_by_label[key_label][:bars],
                                _arrangement(rng, label, roles, has_drums), energy))
        bar += bars
    song = Song(f"gen{seed}_{index:04d}", bpm, beats, steps,
                rng.choice((0.0, 0.0, 0.15, 0.3)) if steps == 4 else 0.0, key, mode, style,
                sections, [])
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    rng.shuffle(channels)
    if has_drums:
        song.parts.append(Part("drums", DRUM_CHANNEL, rng.choice(DRUM_KITS), _drums(rng, song),
                               volume=rng.randint(*DRUM_VOLUME), reverb=rng.randint(0, 60)))
    song.parts.append(Part("bass", channels.pop(), rng.choice(BASS_PROGRAMS), _bass(rng, song),
                           volume=rng.randint(85, 120), pan=rng.randint(54, 74),
                           reverb=rng.randint(0, 30)))
    programs = {"pad": PAD_PROGRAMS, "comp": COMP_PROGRAMS, "arp": ARP_PROGRAMS,
                "lead": LEAD_PROGRAMS, "counter": COUNTER_PROGRAMS}
    for role in others:
        song.parts.append(Part(role, channels.pop(), rng.choice(programs[role]),
                               _other(rng, song, role), volume=rng.randint(70, 115),
                               pan=rng.randint(20, 108), reverb=rng.randint(10, 90),
                               chorus=rng.choice((0, 0, 20, 50))))
    _share_register(song, seed, index, shared_register, channels)
    return song


def _no_overlaps(notes: Sequence[Note]) -> list[Note]:
    """Notes sorted by start, each cut to end where the next note of its pitch starts: a
    synthesizer ends a pitch at its first note-off, so an overlapping repeat would be cut."""
    out: list[Note] = []
    last: dict[int, int] = {}  # pitch -> index in out of its latest note
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        i = last.get(n.pitch)
        if i is not None and out[i].start + out[i].length > n.start:
            prev = out[i]
            out[i] = Note(prev.start, max(1, n.start - prev.start), prev.pitch, prev.velocity)
        if i is not None and out[i].start == n.start:  # the same pitch twice at once: keep one
            continue
        last[n.pitch] = len(out)
        out.append(n)
    return out


def to_midi(song: Song) -> mido.MidiFile:
    """A type-1 MIDI file: a tempo track, then one track per part (name = role)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("track_name", name=song.name, time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(song.tempo), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=song.beats, denominator=4, time=0))
    end = song.bars * song.bar_ticks
    meta.append(mido.MetaMessage("end_of_track", time=end))
    mid.tracks.append(meta)
    for part in song.parts:
        track = mido.MidiTrack()
        ch = part.channel
        track.append(mido.MetaMessage("track_name", name=part.role, time=0))
        track.append(mido.Message("program_change", channel=ch, program=part.program, time=0))
        for control, value in ((7, part.volume), (10, part.pan), (91, part.reverb),
                               (93, part.chorus)):
            track.append(mido.Message("control_change", channel=ch, control=control,
                                      value=value, time=0))
        events = []  # (tick, order, message): note-offs before note-ons at the same tick
        for n in _no_overlaps(part.notes):
            events.append((n.start, 1, mido.Message("note_on", channel=ch, note=n.pitch,
                                                     velocity=n.velocity)))
            events.append((n.start + n.length, 0, mido.Message("note_off", channel=ch,
                                                                note=n.pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1]))
        now = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
        mid.tracks.append(track)
    return mid


def write_songs(out: str | Path, count: int, seed: int = 0,
                shared_register: float = SHARED_REGISTER_P) -> list[Path]:
    """Write ``count`` songs as ``OUT/gen<seed>_<i>.mid``; existing files are kept (resume)."""
    if count <= 0:
        raise ValueError(f"--songs must be positive, got {count}")
    if not 0.0 <= shared_register <= 1.0:
        raise ValueError(f"--shared-register must be in [0, 1], got {shared_register}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"gen{seed}_{i:04d}.mid"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            to_midi(compose(seed, i, shared_register)).save(str(tmp))
            tmp.replace(path)
        paths.append(path)
    return paths


def add_compose_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rtsep data compose``."""
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for the .mid files")
    parser.add_argument("--songs", type=int, default=200, help="how many (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="composition seed (default: 0)")
    parser.add_argument("--shared-register", type=float, default=SHARED_REGISTER_P, metavar="P",
                        help="share of songs with an `other` part in the bass register "
                             "(default: %(default)s; 0 makes the songs of gen1..gen4)")


def run_compose(args: argparse.Namespace) -> int:
    """Run ``rtsep data compose``; returns the exit code."""
    try:
        paths = write_songs(args.out, args.songs, args.seed, args.shared_register)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(paths)} General MIDI songs in {args.out}; render them with "
          f"`rtsep data render --midi {args.out} --out DIR`")
    return 0
