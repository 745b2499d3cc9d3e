"""host_tools/scoring.py's benchmark figures on hand-made streams: the edges test_host_scoring.py leaves out
(a detection just before a keyword, just past its no-false-alarm window, two inside its hit window), MLPerf
Tiny's pass criterion, DET points, the FRR at a false-accept rate and the resolvable rate."""
from pathlib import Path

import pytest

from host_tools.scoring import (Keyword, det_point, frr_at, mlperf_verdict, poisson_interval, resolvable_rate_per_hour,
                                score)

YES = Keyword(10.0, 11.0, "yes")


@pytest.mark.parametrize("t, hits, false_alarms", [
    (9.99, 0, 1),   # before the keyword starts: a false alarm, and the keyword is missed
    (10.0, 1, 0),   # at its start: a hit
    (11.49, 1, 0),  # just inside [start, end + 0.5)
    (11.5, 0, 0),   # just outside the hit window, inside [start, end + 1.0): a miss but no false alarm
    (11.99, 0, 0),
    (12.0, 0, 1),   # just past the no-false-alarm window: a miss and a false alarm
])
def test_the_edges_of_the_hit_and_no_false_alarm_windows(t, hits, false_alarms):
    result = score([(t, "yes")], [YES], covered_s=60)
    assert (len(result.hits), len(result.misses), len(result.false_alarms)) == (hits, 1 - hits, false_alarms)


def test_two_detections_in_the_hit_window_are_one_hit_and_one_absorbed():
    result = score([(10.4, "yes"), (11.2, "yes")], [YES], covered_s=60)
    assert result.summary() == {"hits": 1, "misses": 0, "false_alarms": 0, "not_covered": 0, "absorbed": 1}


def test_a_false_alarm_burst_is_debounced_into_one_a_second():
    burst = [(30 + 0.25 * i, "yes") for i in range(12)]  # 30.0 ... 32.75: counted at 30, 31 and 32
    result = score(burst, [YES], covered_s=60)
    assert [t for t, _ in result.false_alarms] == [30.0, 31.0, 32.0]


@pytest.mark.parametrize("misses, false_alarms, passes, over", [
    (8, 8, True, (0, 0)), (9, 0, False, (1, 0)), (0, 9, False, (0, 1)), (12, 20, False, (4, 12))])
def test_mlperf_tiny_criterion_is_at_most_8_false_rejects_and_8_false_accepts(misses, false_alarms, passes, over):
    keywords = [Keyword(10.0 * i, 10.0 * i + 1, "yes") for i in range(1, 21)]
    detections = [(k.start_s + 0.2, "yes") for k in keywords[misses:]] + [(300.0 + 2 * i, "yes") for i in range(false_alarms)]
    verdict = mlperf_verdict(score(detections, keywords, covered_s=400))
    assert (verdict["false_rejects"], verdict["false_accepts"]) == (misses, false_alarms)
    assert verdict["passes"] is passes and (verdict["false_rejects_over"], verdict["false_accepts_over"]) == over


def test_det_point_is_the_miss_share_and_false_accepts_per_hour():
    keywords = [Keyword(10.0, 11.0, "yes"), Keyword(20.0, 21.0, "yes")]
    result = score([(10.5, "yes"), (40.0, "yes"), (50.0, "yes")], keywords, covered_s=1200)
    assert det_point(result, 1200) == (0.5, 6.0)  # 2 false accepts in 20 minutes


def test_twenty_minutes_cannot_resolve_a_rate_below_three_per_hour():
    assert resolvable_rate_per_hour(1200) == 3.0
    assert poisson_interval(0)[1] * resolvable_rate_per_hour(1200) == pytest.approx(11.07, abs=0.01)
    # a 0/h point of a 20-minute stream says nothing about 0.5 FA/h
    answer = frr_at([(0.9, 0.0), (0.1, 30.0)], 0.5, 1200)
    assert answer["status"] == "not resolvable" and answer["frr"] is None and "3.00/h" in answer["why"]


def test_frr_at_a_false_accept_rate_is_measured_interpolated_or_not_reached():
    ten_hours = 36000  # resolves 0.1/h
    points = [(0.40, 0.0), (0.20, 0.3), (0.10, 0.8), (0.05, 2.0)]
    assert frr_at(points, 0.3, ten_hours) == {"status": "measured", "frr": 0.20}
    assert frr_at(points, 0.5, ten_hours) == {"status": "interpolated", "frr": pytest.approx(0.20 - 0.10 * 0.2 / 0.5)}
    assert frr_at(points, 5.0, ten_hours) == {"status": "measured", "frr": 0.05}
    assert frr_at([(0.3, 1.0), (0.1, 4.0)], 0.5, ten_hours)["status"] == "not reached"


def test_the_ablation_compares_variants_at_the_same_false_accepts():
    """The DET table's cell is a variant's fewest misses among thresholds with at most that many false
    accepts; the synthetic variants exist only with a clip count, and a wrong name is refused by name."""
    from host_tools.ablation import DET_FALSE_ACCEPTS, det_rows, variants

    sweep = [{"detection_threshold": t, "misses": m, "false_alarms": fa}
             for t, m, fa in ((0.2, 4, 9), (0.4, 7, 3), (0.5, 9, 2), (0.7, 15, 0))]
    row = det_rows({"recipe": {1: {"sweep": sweep}}})[0]
    assert dict(zip(DET_FALSE_ACCEPTS, row["misses"])) == {0: 15, 1: 15, 2: 9, 3: 7, 5: 7, 8: 7}
    never_quiet = det_rows({"loud": {2: {"sweep": sweep[:1]}}})[0]
    assert never_quiet["misses"][:5] == [None] * 5 and never_quiet["seed"] == 2
    assert "synthetic only" not in variants(None, None)
    chosen = variants(["synthetic only", "+ hard negatives"], 1000)
    assert chosen == {"+ hard negatives": [], "synthetic only": ["--synthetic-positives", "1000", "--no-real-positives"]}
    based = variants(["synthetic only, other words, frozen base"], 1000, Path("/runs/base"))
    assert based == {"synthetic only, other words, frozen base": ["--synthetic-positives", "1000", "--no-real-positives",
                     "--synthetic-others", "1000", "--init-from", "/runs/base", "--freeze-loaded"]}
    near = variants(["synthetic only", "+ synthetic", "clip windows"], 1000, near_misses=0)
    assert near == {"clip windows": ["--clip-training"], "+ synthetic": ["--synthetic-positives", "1000", "--near-misses", "0"],
                    "synthetic only": ["--synthetic-positives", "1000", "--near-misses", "0", "--no-real-positives"]}
    with pytest.raises(ValueError, match=r"'\+ synthetic'.*need --synthetic-positives"):
        variants(["+ synthetic"], None)


def test_the_ablation_names_the_recordings_each_variant_missed():
    """Misses are counted per recording over the seeds, against how often the stream played it, at the
    calibrated point and at the DET's last column; the report names them, most missed first, and says none
    for a variant that missed nothing."""
    from host_tools.ablation import markdown, missed_recordings

    sources = ["yes/a_nohash_0.wav", "yes/b_nohash_0.wav", "yes/a_nohash_0.wav", "yes/c_nohash_1.wav"]
    results = {"synthetic": {1: {"calibrated": {"missed": [0, 2, 3]}, "det_limit": {"missed": [3]}},
                             2: {"calibrated": {"missed": [3]}, "det_limit": {"missed": []}}},
               "recordings": {1: {"calibrated": {"missed": []}, "det_limit": {"missed": [1]}}}}
    missed = {point: missed_recordings(results, sources, point) for point in ("calibrated", "det_limit")}
    assert missed["calibrated"] == {"synthetic": [("yes/a_nohash_0.wav", 2, 4), ("yes/c_nohash_1.wav", 2, 2)],
                                    "recordings": []}
    assert missed["det_limit"] == {"synthetic": [("yes/c_nohash_1.wav", 1, 2)], "recordings": [("yes/b_nohash_0.wav", 1, 1)]}
    calibrated, limit = markdown([], [], "yes", 44.6, missed).split("at the last column's threshold (≤ 8 FA")
    assert "- synthetic: `yes/a_nohash_0.wav` 2/4, `yes/c_nohash_1.wav` 2/2" in calibrated
    assert "- recordings: none" in calibrated
    assert "- synthetic: `yes/c_nohash_1.wav` 1/2" in limit and "- recordings: `yes/b_nohash_0.wav` 1/1" in limit
    assert "stream of the testing split's recordings" in calibrated and "always the test split's" not in calibrated
    validation = markdown([], [], "yes", 44.6, missed, "validation")
    assert "in the validation stream" in validation
    assert "negatives-only stream 44.6 min (always the test split's negatives" in validation


@pytest.mark.parametrize("argv", [["--near-misses", "5"], ["--synthetic-positives", "10", "--near-misses", "-1"]])
def test_the_ablation_rejects_near_misses_it_cannot_use(argv, capsys, tmp_path):
    from host_tools.ablation import main

    with pytest.raises(SystemExit):
        main([*argv, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    assert f"--near-misses {argv[-1]}: needs --synthetic-positives N" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # stopped before anything was written
