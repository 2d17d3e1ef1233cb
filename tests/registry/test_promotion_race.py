"""Overlapping guarded promotions: exactly one wins, the others are told who did, and the records agree.

Real registries: a SQLite store (threads released together by a barrier, and two processes) and a
real `mlflow server` on 127.0.0.1 (threads). Each round registers fresh versions and promotes them all
at once, every one expecting the same champion.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import mlflow
import pytest

from asdflow.registry.models import ChampionChangedError, promote, register_detector

from tests.registry.test_mlflow_server import mlflow_server  # noqa: F401 - the real server fixture

MACHINE = "fan"
NAME = "asd-fan"
RACERS = 4
ROUNDS = 3


def _race(config, versions: list[str], expected: str | None) -> dict[str, str]:
    """Every version promoted at once, each expecting `expected`: version -> "promoted" or the error."""
    barrier = threading.Barrier(len(versions))
    outcome: dict[str, str] = {}

    def one(version: str) -> None:
        barrier.wait()
        try:
            outcome[version] = promote(MACHINE, version, expected, config).action
        except ChampionChangedError as err:
            outcome[version] = str(err)

    threads = [threading.Thread(target=one, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def _check_round(config, outcome: dict[str, str], expected: str | None) -> str:
    winners = [v for v, o in outcome.items() if o == "promoted"]
    assert len(winners) == 1, outcome
    (winner,) = winners
    for version, text in outcome.items():
        if version != winner:
            assert "re-run the gate" in text, text
    client = mlflow.MlflowClient(config.tracking.tracking_uri, config.tracking.tracking_uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == winner
    promoted_tags = [v for v in outcome if "promoted_at" in client.get_model_version(NAME, v).tags]
    assert promoted_tags == [winner], "only the winner carries promoted_at"
    assert client.get_model_version(NAME, winner).tags["previous_champion"] == (expected or "none")
    return winner


def _rounds(config, directory) -> None:
    expected = None
    for _ in range(ROUNDS):
        versions = [register_detector(directory, MACHINE, config).version for _ in range(RACERS)]
        expected = _check_round(config, _race(config, versions, expected), expected)


def test_overlapping_promotions_on_sqlite_one_wins(sqlite_config, material):
    _rounds(sqlite_config, material.good.directory)


def test_overlapping_promotions_on_an_mlflow_server_one_wins(tiny_config, material, mlflow_server):  # noqa: F811
    url, _ = mlflow_server
    config = tiny_config.model_copy(update={"tracking": tiny_config.tracking.model_copy(update={"tracking_uri": url})})
    _rounds(config, material.good.directory)


def test_two_processes_promoting_on_sqlite_one_wins(sqlite_config, material, tmp_path):
    versions = [register_detector(material.good.directory, MACHINE, sqlite_config).version for _ in range(2)]
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"profile: tiny\ntracking:\n  tracking_uri: {sqlite_config.tracking.tracking_uri}\n"
                           f"  artifact_location: {sqlite_config.tracking.artifact_location}\n")
    script = ("import sys, time; from asdflow.config import load_config; "
              "from asdflow.registry.models import promote, ChampionChangedError\n"
              "c = load_config(sys.argv[1]); t = float(sys.argv[3])\n"
              "time.sleep(max(0, t - time.time()))\n"
              "try: print(promote('fan', sys.argv[2], None, c).action)\n"
              "except ChampionChangedError as e: print('refused:', e)\n")
    import time

    start = f"{time.time() + 8:.3f}"  # both processes loaded and waiting by then
    procs = [subprocess.Popen([sys.executable, "-c", script, str(config_file), v, start], stdout=subprocess.PIPE,
                              text=True) for v in versions]
    outputs = [p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs]
    assert sorted(o.split(":")[0] for o in outputs) == ["promoted", "refused"], outputs
