"""host_tools/scoring.py: MLPerf Tiny's streaming wake-word rules on a hand-checked track, and the exact
Poisson interval of a false-trigger rate against published values."""
import pytest

from host_tools.scoring import Keyword, ReferenceError, poisson_interval, rate_per_hour, read_reference, score


@pytest.mark.parametrize("count, low, high", [(0, 0.0, 3.689), (1, 0.0253, 5.572), (10, 4.795, 18.39)])
def test_garwood_interval_matches_the_published_values(count, low, high):
    got = poisson_interval(count)
    assert got == pytest.approx((low, high), abs=0.0006 if count < 10 else 0.006)


def test_rate_per_hour_scales_the_interval_by_the_hours_listened():
    rate, low, high = rate_per_hour(1, 1800)
    assert rate == 2.0 and low == pytest.approx(2 * 0.0253, abs=0.001) and high == pytest.approx(2 * 5.572, abs=0.001)


# Keywords of the hand-made track: (start, end, label).
TRACK = [Keyword(2.0, 3.0, "yes"), Keyword(10.0, 10.8, "no"), Keyword(20.0, 21.0, "yes"), Keyword(30.0, 31.0, "yes")]


def test_a_hand_checked_track():
    detections = [
        (3.49, "yes"),                      # keyword 1: inside [2, 3.5): hit
        (3.9, "yes"),                       # its second detection, inside [2, 4): neither hit nor false alarm
        (11.3, "no"),                       # keyword 2: exactly end + 0.5, outside [10, 11.3): a miss, and
                                            # inside [10, 11.8): not a false alarm either
        (21.6, "yes"),                      # keyword 3: after end + 0.5 (miss) but before end + 1.0: not false
        (30.2, "no"),                       # keyword 4 (yes) heard as "no": the wrong command, a false alarm
        (40.0, "go"), (40.2, "go"), (40.4, "go"), (40.99, "go"), (41.0, "go"), (41.5, "go"), (42.3, "go"),
    ]                                       # a burst: counted at 40.0, 41.0 (1.0 s later) and 42.3
    result = score(detections, TRACK, covered_s=60)
    assert [k.start_s for k in result.hits] == [2.0]
    assert [k.start_s for k in result.misses] == [10.0, 20.0, 30.0]
    assert result.false_alarms == [(30.2, "no"), (40.0, "go"), (41.0, "go"), (42.3, "go")]
    assert result.absorbed == 3  # 3.9, 11.3 and 21.6
    assert result.summary() == {"hits": 1, "misses": 3, "false_alarms": 4, "not_covered": 0, "absorbed": 3}


def test_keywords_not_wholly_listened_to_are_not_scored():
    result = score([(2.5, "yes"), (20.3, "yes"), (59.0, "yes")], TRACK, covered_s=20.4)
    # keyword 3 ends at 21.0: its hit window reaches 21.5, past what was heard; keyword 4 is later still
    assert len(result.hits) == 1 and len(result.misses) == 1 and len(result.not_covered) == 2
    # 20.3 is in keyword 3's window, scored or not; 59.0 was not listened to (covered_s): neither counts
    assert result.false_alarms == []


def test_reference_file_round_trip_and_errors(tmp_path):
    good = tmp_path / "track.csv"
    good.write_text("start_s,end_s,label\n10.0,10.8,no\n2,3,yes\n\n")
    assert read_reference(good) == [Keyword(2.0, 3.0, "yes"), Keyword(10.0, 10.8, "no")]
    for text, why in [("start,end,label\n", "the first line must be the header"),
                      ("start_s,end_s,label\n1,x,yes\n", "track.csv:2: expected start_s,end_s,label"),
                      ("start_s,end_s,label\n3,2,yes\n", "needs 0 <= start_s < end_s")]:
        good.write_text(text)
        with pytest.raises(ReferenceError, match=why):
            read_reference(good)
    with pytest.raises(ReferenceError, match="missing.csv: cannot read"):
        read_reference(tmp_path / "missing.csv")
