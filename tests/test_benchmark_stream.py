"""host_tools/stream.py on real clips: the ground truth marks where each keyword clip was placed, each clip
is mixed at its intended signal-to-noise ratio, negatives keep clear of keywords; and the LibriSpeech
download path (training.download.fetch) against a local HTTP server."""
import hashlib
import io

import numpy as np
import pytest

from host_tools.scoring import read_reference
from host_tools.stream import KEYWORD_CLEARANCE_S, RATE, build_stream, rms, split_clips
from test_download import make_tar, server  # noqa: F401  (the local HTTP server fixture)
from training import download
from training.data import DataError, read_audio


@pytest.fixture(scope="module")
def stream(mini_set, shared_data):
    return build_stream(mini_set, "yes", [shared_data / "negatives" / "free_spoken_digits_8khz"], duration_s=90,
                        keyword_count=4, snr_db=(20.0, 5.0, 12.5), seed=3)


def test_the_csv_marks_each_keyword_where_its_clip_was_placed(stream, mini_set, tmp_path):
    stream.write(tmp_path / "s.wav", tmp_path / "s.csv")
    keywords = [e for e in stream.events if e.kind == "keyword"]
    assert read_reference(tmp_path / "s.csv") == stream.keywords() and len(keywords) == 4
    testing = {str(p) for p in split_clips(mini_set)["yes"]}
    mixed = stream.audio.astype(np.float64) / 32768 - stream.background
    for event in keywords:
        assert event.source in testing
        clip = read_audio(event.source, RATE)
        start = round(event.start_s * RATE)
        assert event.end_s == pytest.approx(event.start_s + len(clip) / RATE)
        span = mixed[start : start + len(clip)]
        gain = np.dot(span, clip) / np.dot(clip, clip)
        # what is there beyond the noise is this clip, scaled, to int16 rounding, and nothing just before it
        assert np.max(np.abs(span - gain * clip)) < 1.5 / 32768
        assert np.max(np.abs(mixed[start - RATE : start])) < 1 / 32768


def test_every_clip_is_mixed_at_its_snr_over_the_noise_beneath_it(stream):
    mixed = stream.audio.astype(np.float64) / 32768 - stream.background
    assert [e.snr_db for e in stream.events[:6]] == [20.0, 5.0, 12.5, 20.0, 5.0, 12.5]
    for event in stream.events:
        span = slice(round(event.start_s * RATE), round(event.end_s * RATE))
        assert 20 * np.log10(rms(mixed[span]) / rms(stream.background[span])) == pytest.approx(event.snr_db, abs=0.05)
    assert 20 * np.log10(rms(stream.background)) == pytest.approx(-50, abs=0.01)


def test_negatives_are_other_words_and_speech_clear_of_every_keyword(stream):
    kinds = {e.kind for e in stream.events}
    assert kinds == {"keyword", "word", "speech"}
    assert all(e.label != "yes" for e in stream.events if e.kind != "keyword")
    ordered = sorted(stream.events, key=lambda e: e.start_s)
    assert all(a.end_s <= b.start_s for a, b in zip(ordered, ordered[1:]))  # nothing overlaps
    for keyword in stream.keywords():
        near = [e for e in stream.events if e.kind != "keyword" and e.end_s > keyword.start_s - KEYWORD_CLEARANCE_S
                and e.start_s < keyword.end_s + KEYWORD_CLEARANCE_S]
        assert near == []
    assert stream.seconds == 90 and stream.negative_seconds() == pytest.approx(90 - 4 * 2.0)


def test_a_stream_too_short_for_its_keywords_is_refused(mini_set):
    with pytest.raises(DataError, match="50 keywords do not fit in 60 s"):
        build_stream(mini_set, "yes", duration_s=60, keyword_count=50)
    with pytest.raises(DataError, match="no testing-split clips of the keyword 'marvin'"):
        build_stream(mini_set, "marvin", duration_s=60, keyword_count=2)


def negatives_split_of(path, size: int) -> str:
    """The split training.data.negatives_split gives a file of this name and (4 + size) bytes."""
    from training.data import negatives_split

    path.write_bytes(bytes(4 + size))
    return negatives_split(path)


def test_an_unreadable_negative_stops_the_build_or_is_skipped_and_listed(mini_set, shared_data, tmp_path):
    from training.data import negatives_split

    folder = tmp_path / "negatives"
    folder.mkdir()
    # a FLAC header and nothing decodable, of a size that puts it in the test share (the streams' share)
    broken = next(bytes(n) for n in range(200, 400) if negatives_split_of(folder / "broken.flac", n) == "testing")
    (folder / "broken.flac").write_bytes(b"fLaC" + broken)
    good = shared_data / "negatives" / "free_spoken_digits_8khz" / "0_george_0.wav"
    (folder / "good.wav").write_bytes(good.read_bytes())
    assert negatives_split(folder / "good.wav") == "testing"
    with pytest.raises(DataError, match=r"broken.flac: cannot read audio.*pass --skip-bad-audio"):
        build_stream(mini_set, "yes", [folder], duration_s=60, keyword_count=2)
    stream = build_stream(mini_set, "yes", [folder], duration_s=60, keyword_count=2, skip_bad=True)
    assert stream.skipped and all("broken.flac: cannot read audio" in why for why in stream.skipped)
    assert {e.source for e in stream.events if e.kind == "speech"} == {str(folder / "good.wav")}


def test_librispeech_is_downloaded_verified_and_extracted_once(server, tmp_path, monkeypatch, shared_data):  # noqa: F811
    handler, base = server
    flac = sorted((shared_data / "negatives" / "picovoice_wake_words").rglob("*.flac"))[0]
    body = make_tar({"LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac": flac.read_bytes()})
    handler.files["/test-clean.tar.gz"] = body
    archive = download.ARCHIVES["librispeech-test-clean"]
    monkeypatch.setitem(download.ARCHIVES, "librispeech-test-clean",
                        download.Archive(f"{base}/test-clean.tar.gz", len(body), "0" * 64, archive.folder))
    with pytest.raises(DataError, match="does not match the pinned 0{64}"):
        download.fetch("librispeech-test-clean", tmp_path, io.StringIO())
    monkeypatch.setitem(download.ARCHIVES, "librispeech-test-clean",
                        download.Archive(f"{base}/test-clean.tar.gz", len(body), hashlib.sha256(body).hexdigest(), archive.folder))
    folder = download.fetch("librispeech-test-clean", tmp_path, io.StringIO())
    extracted = folder / "LibriSpeech" / "test-clean" / "1089" / "134686" / "1089-134686-0000.flac"
    assert extracted.read_bytes() == flac.read_bytes()
    assert download.fetch("librispeech-test-clean", tmp_path, io.StringIO()) == folder and len(handler.requests) == 2  # the failed one, then one
    # what the benchmark then does with it: other speech in the stream
    stream = build_stream(shared_data / "speech_commands_v0.02_mini", "yes", [folder], duration_s=30, keyword_count=1)
    assert any(e.kind == "speech" and e.source == str(extracted) for e in stream.events)
