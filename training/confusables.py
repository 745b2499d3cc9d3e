"""Near-miss phrases: what sounds close to a wake word without being it, to synthesise as negatives.

The rule, applied to the spelling and checked on the sound:

1. Split each word into spelled syllables: onset consonants, a vowel group, and (last syllable
   only) the trailing consonants ("nano" -> n-a, n-o; "marvin" -> m-a, rv-i-n).
2. Edit one thing at a time, each edit a candidate:
   - vowel: replace one syllable's vowel group by another vowel spelling (VOWEL_SPELLINGS);
   - consonant: replace one syllable's first consonant by a neighbour that differs in one
     articulatory feature, place, voicing or nasality (CONSONANT_NEIGHBOURS; "h" may also drop);
   - drop: leave out one syllable of a word with several, or one word of a phrase with several.
   Nothing is added to the phrase: a phrase that holds the whole wake word ("yes" -> "yessa") is not a
   near miss in a stream, whose windows hear the wake word in it, and trained as unknown it taught the
   model to reject the wake word itself (measured: --no-real-positives "yes", issue 12).
   Vowel and consonant edits of later syllables keep the onset: words sharing the first syllable.
3. Check on the sound: every candidate and the phrase go through espeak-ng's phonemizer (US English,
   IPA, stress marks removed). A candidate whose phonemes equal the phrase's is dropped (it would
   be the wake word under another spelling); so is one further than max(2, 0.4 x the phrase's
   phoneme count) in edit distance, and a candidate that sounds like one kept before.
4. Take candidates round-robin over the three kinds of edit, nearest first within a kind.

Without espeak-ng (the Debian package or piper's bundled library) step 3 cannot run; candidates are
then ranked by spelling distance and the result says that they were not checked.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

VOWEL_SPELLINGS = ("a", "e", "i", "o", "u", "ee", "oo", "ay", "ow", "er")
CONSONANT_NEIGHBOURS = {
    "b": ("p", "d", "m", "v"), "p": ("b", "t", "k", "f"), "d": ("t", "b", "g", "n"), "t": ("d", "p", "k"),
    "g": ("k", "d"), "k": ("g", "t", "p"), "c": ("g", "t", "p"), "m": ("n", "b"), "n": ("m", "d", "l"),
    "f": ("v", "s", "th"), "v": ("f", "b"), "s": ("z", "sh", "f", "th"), "z": ("s",), "sh": ("s", "ch"),
    "ch": ("sh", "j"), "j": ("ch", "y"), "th": ("f", "s"), "h": ("", "f"), "l": ("r", "n", "w"),
    "r": ("l", "w"), "w": ("r", "v"), "y": ("j", ""), "q": ("k",), "x": ("s",),
}
KINDS = ("vowel", "consonant", "drop")
STRESS_MARKS = "ˈˌ'-"
SYLLABLE = re.compile(r"((?:[^aeiouy]|y(?=[aeiou]))*)([aeiouy]+)")


@dataclass(frozen=True)
class NearMiss:
    phrase: str
    kind: str  # which edit made it: one of KINDS
    phonemes: str  # IPA from espeak-ng; empty when no phonemizer was available
    distance: int  # phoneme edit distance to the wake word (spelling distance when unchecked)


def syllables(word: str) -> list[list[str]]:
    """[onset, vowels, tail] per spelled syllable; trailing consonants go to the last one's tail."""
    parts = [[onset, vowels, ""] for onset, vowels in SYLLABLE.findall(word)]
    if not parts:
        return [[word, "", ""]]
    parts[-1][2] = word[sum(len(a) + len(b) for a, b, _ in parts) :]
    return parts


def _join(parts: list[list[str]]) -> str:
    return "".join("".join(part) for part in parts)


def _word_edits(word: str) -> list[tuple[str, str]]:
    """(kind, new word) for every single edit of one word."""
    parts, edits = syllables(word), []
    for i, (onset, vowels, tail) in enumerate(parts):
        for vowel in VOWEL_SPELLINGS:
            if vowel != vowels and vowels:
                edits.append(("vowel", _join(parts[:i] + [[onset, vowel, tail]] + parts[i + 1 :])))
        first = onset[:2] if onset[:2] in CONSONANT_NEIGHBOURS else onset[:1]
        for neighbour in CONSONANT_NEIGHBOURS.get(first, ()):
            edits.append(("consonant", _join(parts[:i] + [[neighbour + onset[len(first) :], vowels, tail]] + parts[i + 1 :])))
        if len(parts) > 1:
            kept = parts[:i] + parts[i + 1 :]
            if i == len(parts) - 1:  # dropping the last syllable keeps the word's final consonants
                kept[-1] = [kept[-1][0], kept[-1][1], tail]
            edits.append(("drop", _join(kept)))
    return edits


def spelling_candidates(phrase: str) -> list[tuple[str, str]]:
    """(kind, phrase) for every single edit of the phrase, in a fixed order."""
    words, candidates = phrase.split(), []
    for w, word in enumerate(words):
        candidates += [(kind, " ".join(words[:w] + [new] + words[w + 1 :])) for kind, new in _word_edits(word)]
        if len(words) > 1:
            candidates.append(("drop", " ".join(words[:w] + words[w + 1 :])))
    seen, unique = {phrase}, []
    for kind, text in candidates:
        if text.strip() and text not in seen:
            seen.add(text)
            unique.append((kind, text))
    return unique


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def phonemizer():
    """A function text -> IPA (stress marks and spaces removed), or None without espeak-ng."""
    def clean(ipa: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFD", ipa) if c not in STRESS_MARKS and not c.isspace())

    if shutil.which("espeak-ng"):
        def espeak(text: str) -> str:
            command = ["espeak-ng", "-q", "--ipa", "-v", "en-us", "--stdin"]
            done = subprocess.run(command, input=text, capture_output=True, text=True, timeout=60)
            return clean(done.stdout)
        return espeak
    try:  # piper bundles libespeak-ng with its data: the same phonemes without the Debian package
        from piper import espeakbridge
        from piper.phonemize_espeak import ESPEAK_DATA_DIR
    except ImportError:
        return None
    espeakbridge.initialize(str(ESPEAK_DATA_DIR))
    espeakbridge.set_voice("en-us")
    return lambda text: clean("".join(p for p, _, _ in espeakbridge.get_phonemes(text)))


def near_miss_phrases(phrase: str, limit: int = 12, jobs: int = 2) -> list[NearMiss]:
    """Up to `limit` phrases that sound close to `phrase` but not the same (see the module's rule)."""
    candidates = spelling_candidates(phrase)
    to_ipa = phonemizer()
    if to_ipa is None:
        ranked = [NearMiss(text, kind, "", edit_distance(text, phrase)) for kind, text in candidates]
    else:
        pool_size = jobs if shutil.which("espeak-ng") else 1  # piper's library is not thread-safe
        with ThreadPoolExecutor(pool_size) as pool:
            target, *sounds = pool.map(to_ipa, [phrase] + [text for _, text in candidates])
        furthest = max(2, round(0.4 * len(target)))
        ranked = [NearMiss(text, kind, ipa, edit_distance(ipa, target)) for (kind, text), ipa in zip(candidates, sounds)]
        ranked = [m for m in ranked if 0 < m.distance <= furthest]
    by_kind = {kind: sorted((m for m in ranked if m.kind == kind), key=lambda m: (m.distance, m.phrase)) for kind in KINDS}
    chosen, heard = [], set()
    while len(chosen) < limit and any(by_kind.values()):
        for kind in KINDS:
            while by_kind[kind] and len(chosen) < limit:
                miss = by_kind[kind].pop(0)
                key = miss.phonemes or miss.phrase
                if key not in heard:
                    heard.add(key)
                    chosen.append(miss)
                    break
    return chosen
