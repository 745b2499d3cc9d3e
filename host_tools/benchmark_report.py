"""The benchmark's report (host_tools/benchmark.py): report.md from report.json's content, and the DET plot."""
from __future__ import annotations

from pathlib import Path

from host_tools import scoring


def det_plot(sweep: list[dict], seconds: float, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p["fa_per_hour"] for p in sweep], [100 * p["frr"] for p in sweep], "o-", ms=3)
    shown = set()
    for p in sweep:  # the lowest threshold of each distinct operating point
        if (p["fa_per_hour"], p["frr"]) not in shown:
            shown.add((p["fa_per_hour"], p["frr"]))
            ax.annotate(f"{p['detection_threshold']:g}", (p["fa_per_hour"], 100 * p["frr"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.axvline(scoring.resolvable_rate_per_hour(seconds), color="grey", ls=":", label="one false accept in the stream")
    ax.set_xscale("symlog", linthresh=scoring.resolvable_rate_per_hour(seconds))  # 0/h stays on the axis
    ax.set_xlim(left=0)
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def percent(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def accuracy_section(report: dict) -> list[str]:
    lines = [f"Data: `{report['data_dir']}`; canonical test set: `{report['test_set'] or 'none'}`. Every model trained "
             f"by `python -m training.train` with seed {report['seed']}: the kws12 models for {report['epochs']} epochs, "
             f"the wake word with its recipe ({report['wakeword']['epochs']} epochs).\n",
             "## Accuracy and size (measured here)\n",
             "| model | test float / int8 / TFLM | canonical test set (TFLM) | parameters | int8 weights | .tflite | arena "
             "| MACs | est. Cortex-M4F 64 MHz | s/epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*report["accuracy"], report["wakeword"]]:
        test = " / ".join(percent(row["test"][e]) for e in ("float", "int8", "tflm"))
        canonical = f"{percent(row['test_set']['tflm'])} (n={row['test_set_n']})" if row["test_set"] else "—"
        latency = row["latency_ms"]
        lines.append(f"| `{row['arch']}` ({row['preset']}) | {test} (n={row['test_n']}) | {canonical} | {row['parameters']:,} "
                     f"| {row['int8_weight_bytes']:,} B | {row['tflite_bytes']:,} B | {row['arena_bytes']:,} B | {row['macs']:,} "
                     f"| {latency['mid']:.0f} ms ({latency['low']:.0f}–{latency['high']:.0f}) | {row['seconds_per_epoch']:.1f} |")
    cycles = report["cycle_model"]
    lines += ["", f"Latency: an estimate, not a measurement: MACs × {cycles['mid']:g} cycles/MAC (range {cycles['low']:g}–"
              f"{cycles['high']:g}, CMSIS-NN int8 on Cortex-M4) at {cycles['clock_hz'] / 1e6:g} MHz "
              "(host_tools/footprint.py's cycle model).\n", "## Published figures (not measured here)\n",
              "| model | data | accuracy | size | source |", "|---|---|---|---|---|"]
    lines += [f"| {p['model']} | {p['data']} | {p['accuracy']} | {p['size']} | {p['source']} |" for p in report["published"]]
    return lines


def operating_point_section(report: dict) -> list[str]:
    s, calibration = report["stream"], report["calibration"]
    d, point, stream = s["detection"], calibration["point"], calibration["stream"]
    return ["", "## The wake word's operating point (chosen on validation audio)\n",
            f"Keyword `{s['keyword']}`. Training calibrated the exported recognizer for at most "
            f"{calibration['target_fa_per_hour']:g} false accepts an hour over its validation audio: a stream of "
            f"{stream['seconds'] / 60:.0f} min with {stream['keywords']} keywords, and {stream['negative_files']:,} "
            f"validation negatives once each ({calibration['seconds'] / 60:.0f} min in all; validation-split clips and "
            f"the validation share of the negatives folders, none of it in the test audio below). It chose the "
            f"{calibration['candidate']} weights, threshold {d['detection_threshold']:g}, average over "
            f"{d['average_window_ms']} ms, minimum count {d['minimum_count']}, suppression {d['suppression_ms']} ms"
            + ("" if calibration["met"] else " (the fewest false accepts: no setting met the target)")
            + f": on the validation audio {point['hits']} hits, {point['misses']} misses, {point['false_alarms']} false "
            f"accepts ({point['stream_false_alarms']} in the stream, {point['negatives_false_alarms']} over the "
            "negatives).\n"]


def stream_section(report: dict) -> list[str]:
    s = report["stream"]
    device, resolvable = s["device"], scoring.resolvable_rate_per_hour(s["audio_s"])
    verdict = (f"it passes, with a margin of {scoring.MLPERF_MAX_FALSE_REJECTS - device['false_rejects']} false rejects "
               f"and {scoring.MLPERF_MAX_FALSE_ACCEPTS - device['false_accepts']} false accepts" if device["passes"] else
               f"it fails, by {device['false_rejects_over']} false rejects and {device['false_accepts_over']} false accepts")
    lines = ["", "## Streaming wake word (MLPerf Tiny rules)\n",
             f"Stream: {s['audio_s'] / 60:.1f} min, {s['keywords']} keywords from the testing split "
             f"({s['keyword_clips']} distinct clips), {s['negatives']} negatives "
             f"({', '.join(f'{k}: {v}' for k, v in s['negative_kinds'].items())}; the negatives folders' test share) at SNR "
             f"{', '.join(f'{x:g}' for x in s['snr_db'])} dB over background noise at {s['noise_dbfs']:g} dBFS "
             f"(`stream.wav`, `stream.csv`). {s['inferences']:,} inferences through the device pipeline "
             f"(host_tools/simulate.py); replaying them through the C recognizer gives the device's detections "
             f"exactly: {s['replay_equals_device']}."
             + skipped_note(s["skipped_files"])
             + "\n",
             f"**At the exported operating point: {device['hits']} hits, {device['misses']} misses "
             f"(FRR {percent(device['frr'])}), {device['false_alarms']} false accepts ({device['fa_per_hour']:.1f}/h).** "
             f"MLPerf Tiny's criterion (at most {scoring.MLPERF_MAX_FALSE_REJECTS} false rejects and "
             f"{scoring.MLPERF_MAX_FALSE_ACCEPTS} false accepts on its 20-minute, 50-keyword stream): on this stream "
             f"{verdict}.\n",
             f"Resolution: one false accept in this stream is {resolvable:.2f}/h; none means below about that "
             f"(95% upper bound {scoring.poisson_interval(0)[1] * resolvable:.1f}/h): 0/h here is not 0/h.\n"]
    for name, target in s["frr_at"].items():
        value = target["frr"]
        lines.append(f"* FRR at {target['fa_per_hour']:g} FA/h ({name}): "
                     + (f"{percent(value)} ({target['status']})" if value is not None else f"{target['status']}: {target['why']}"))
    lines += ["", "Threshold sweep at the exported window, minimum count and suppression (DET curve: `det.png`):\n",
              "| threshold | hits | misses | false accepts | FRR | FA/h |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['detection_threshold']:.3f} | {p['hits']} | {p['misses']} | {p['false_alarms']} | {percent(p['frr'])} "
              f"| {p['fa_per_hour']:.1f} |" for p in s["sweep"]]
    return lines


def skipped_note(skipped: list[str]) -> str:
    """The unreadable files a stream left out, named (they are the user's files: never silently lost)."""
    names = sorted({why.split(": ")[0] for why in skipped})
    return f" Unreadable files skipped ({len(names)}): {', '.join(f'`{n}`' for n in names)}." if names else ""


def negatives_section(report: dict) -> list[str]:
    n, target = report["negatives_only"], report["negatives_target_fa_per_hour"]
    low, high = n["fa_per_hour_95"]
    verdict = (f"within the target of at most {target:g}/h, by {target - n['fa_per_hour']:.2f}/h"
               if n["fa_per_hour"] <= target else f"over the target of at most {target:g}/h, by "
               f"{n['fa_per_hour'] - target:.2f}/h")
    return ["", "## False accepts over every negative file (negatives-only stream)\n",
            f"{n['files']:,} files (the negatives folders' test share, then every testing-split clip of a word that is "
            f"not a keyword), {n['audio_s'] / 60:.1f} min of audio one after another through the device pipeline at the "
            f"exported operating point: **{n['false_accepts']} false accepts = {n['fa_per_hour']:.2f} per hour**, "
            f"{verdict} (exact 95% Poisson interval {low:.2f} to {high:.2f}/h). The lowest rate this audio can resolve "
            f"is one event in it, {n['resolvable_fa_per_hour']:.2f}/h." + skipped_note(n["skipped_files"])]


def markdown(report: dict) -> str:
    speed, s = report["host_speed"], report["stream"]
    lines = [f"# Benchmark report\n\n`{report['command']}`: {report['total_seconds'] / 60:.1f} min on {report['host']}.\n",
             *accuracy_section(report), *operating_point_section(report), *stream_section(report),
             *negatives_section(report), "", "## Host speed\n",
             f"* features on one core: {speed['features']['clips_per_second']:.0f} one-second clips/s "
             f"(training.features.mfcc, the definition), {speed['features']['fast_clips_per_second']:.0f} clips/s "
             "(mfcc_fast, training's augmented batches)",
             f"* simulator (C pipeline + TFLM Python runtime): {s['simulator_x_realtime']:.0f}× real time "
             f"({s['simulator_x_realtime_with_reading']:.0f}× with reading the WAV; TFLM {100 * s['tflm_share']:.0f}% of it)",
             "* training: " + ", ".join(f"`{r['arch']}` ({r['preset']}) {r['seconds_per_epoch']:.1f} s/epoch"
                                        for r in [*report["accuracy"], report["wakeword"]])]
    return "\n".join(lines) + "\n"
