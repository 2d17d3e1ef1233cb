import numpy as np
import pytest
import soundfile as sf
import torch

from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest
from asdflow.detectors import load_detector, make_detector
from asdflow.detectors.conditional_ae.conditioning import ConditionSpace
from asdflow.detectors.conditional_ae.detector import ConditionalAEDetector
from asdflow.detectors.conditional_ae.knn import DomainKNN
from asdflow.detectors.threshold import gamma_threshold
from asdflow.errors import DetectorError
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest
from asdflow.features.logmel import stack_frames


@pytest.fixture(scope="module")
def config(tiny_config):
    cfg = tiny_config.model_copy(deep=True)
    cfg.detector.family = "conditional_ae"
    cfg.detector.conditional_ae.epochs = 8
    return cfg


@pytest.fixture(scope="module")
def fan(tiny_manifest):
    return tiny_manifest.select(machine_type="fan")


@pytest.fixture(scope="module")
def trained(fan, config, tmp_path_factory):
    detector = make_detector(config.detector, config.features, seed=0)
    detector.fit(fan.select(split="train"), progress=False)
    return detector, detector.save(tmp_path_factory.mktemp("conditional_ae"))


def _without_attributes(manifest: Manifest) -> Manifest:
    return Manifest(root=manifest.root, records=[r.model_copy(update={"attributes": {}}) for r in manifest.records])


def test_fit_uses_attributes_and_separates_obvious_anomalies(trained, fan):
    detector, _ = trained
    assert isinstance(detector, ConditionalAEDetector)
    info = detector.fit_info
    assert info["conditioning"] == "attributes"
    assert info["domains"] == {"source": 12, "target": 2}
    assert info["n_neighbors_used"] == {"source": 2, "target": 1}  # target: 2 clips leave 1 neighbour
    assert all(c.startswith(("source/", "target/")) for c in info["conditions"])
    assert np.isfinite(detector.threshold)
    test = fan.select(split="test")
    report = evaluate_scores(ground_truth_from_manifest(test), detector.score(test, progress=False))
    assert report.overall.auc_source > 0.75, report.to_table()  # severity-1 anomalies


def test_save_load_round_trip_scores_identically(trained, fan):
    detector, directory = trained
    loaded = load_detector(directory)
    assert isinstance(loaded, ConditionalAEDetector)
    assert loaded.threshold == detector.threshold and loaded.space.training_keys == detector.space.training_keys
    test = fan.select(split="test")
    assert loaded.score(test, progress=False) == pytest.approx(detector.score(test, progress=False), abs=1e-9)
    record = test.records[0]
    wave = load_audio(record.path, detector.features.sample_rate)
    assert loaded.score_waveform(wave, record) == pytest.approx(detector.score_waveform(wave, record), abs=1e-9)
    assert loaded.decide(np.array([loaded.threshold + 1.0]))[0]


def test_without_record_the_score_is_the_minimum_over_training_conditions(trained, fan):
    detector, _ = trained
    record = next(r for r in fan.select(split="test").records if r.domain == "source")
    wave = load_audio(record.path, detector.features.sample_rate)
    with_record = detector.score_waveform(wave, record)
    without = detector.score_waveform(wave)  # serving without a file name
    assert without <= with_record + 1e-9
    assert detector.score_waveforms([wave])[0] == pytest.approx(without)
    # an attribute value never seen in training: scored under every training condition of its domain
    unseen = record.model_copy(update={"attributes": {**record.attributes, "speed": "99999"}})
    keys = detector.space.candidates(unseen, np.zeros(detector.features.n_mels))
    assert keys and all(k[0] == "source" for k in keys) and len(keys) > 1


def test_pseudo_labels_when_attributes_are_missing(fan, config, tmp_path):
    train = _without_attributes(fan.select(split="train"))
    detector = make_detector(config.detector, config.features, seed=1)
    info = detector.fit(train, progress=False)
    assert info["conditioning"] == "pseudo"
    assert {c.split("/")[1].split("=")[0] for c in info["conditions"]} == {"cluster"}
    assert detector.space.dim == 2 + config.detector.conditional_ae.n_clusters
    test = _without_attributes(fan.select(split="test"))
    scores = detector.score(test, progress=False)
    assert all(np.isfinite(list(scores.values())))
    loaded = load_detector(detector.save(tmp_path / "pseudo"))
    assert loaded.score(test, progress=False) == pytest.approx(scores, abs=1e-9)
    # without a record both domains are tried with the clip's own pseudo-label
    wave = load_audio(test.records[0].path, config.features.sample_rate)
    keys = loaded.space.candidates(None, np.zeros(config.features.n_mels, dtype=np.float32))
    assert sorted(k[0] for k in keys) == ["source", "target"]
    assert loaded.score_waveform(wave) <= loaded.score_waveform(wave, test.records[0]) + 1e-9


def test_condition_vectors_are_one_hot_per_attribute_and_domain(fan):
    records = fan.select(split="train").records
    means = np.zeros((len(records), 4), dtype=np.float32)
    space, keys = ConditionSpace.fit("attributes", records, means, n_clusters=2, seed=0)
    vector = space.vector(keys[0])
    assert vector[:2].tolist() == ([1.0, 0.0] if records[0].domain == "source" else [0.0, 1.0])
    assert vector.sum() == 1 + len(space.attribute_values)  # one domain + one value per attribute key
    assert ConditionSpace.from_json(space.to_json()).training_keys == space.training_keys


def test_domain_wise_knn_keeps_the_smaller_normalised_distance():
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, (30, 3))
    target = rng.normal(10.0, 1.0, (5, 3))
    knn = DomainKNN({"source": source, "target": target}, n_neighbors=3)
    assert knn.k == {"source": 3, "target": 3}
    probe = np.array([[10.0, 10.0, 10.0], [0.0, 0.0, 0.0]])
    per_domain = knn.domain_scores(probe)
    scores = knn.score(probe)
    assert scores[0] == pytest.approx(per_domain["target"][0]) and per_domain["target"][0] < per_domain["source"][0]
    assert scores[1] == pytest.approx(per_domain["source"][1])
    # leave-one-out scores of a domain's own clips are centred by the normalisation
    exclude = {"source": list(range(30)), "target": [None] * 30}
    assert knn.domain_scores(source, exclude)["source"].mean() == pytest.approx(0.0, abs=1e-9)
    far = np.array([[50.0, 50.0, 50.0]])
    assert knn.score(far)[0] > 5.0


def test_too_few_clips_and_missing_domain_are_named(fan, config):
    train = fan.select(split="train")
    one_target = Manifest(root=train.root, records=[r for r in train.records if r.domain == "source"]
                          + [r for r in train.records if r.domain == "target"][:1])
    with pytest.raises(DetectorError, match="1 target-domain training clip.*too few for kNN"):
        make_detector(config.detector, config.features).fit(one_target, progress=False)
    source_only = train.select(domain="source")
    with pytest.raises(DetectorError, match="no target-domain normal training clips"):
        make_detector(config.detector, config.features).fit(source_only, progress=False)
    with pytest.raises(DetectorError, match="1 training clip.*needs at least 2"):
        DomainKNN({"source": np.zeros((1, 3))}, 2)


def test_nan_input_is_refused_with_the_cause(trained, fan, config, tmp_path):
    detector, _ = trained
    with pytest.raises(DetectorError, match="NaN"):
        detector.score_waveform(np.full(16000, np.nan, dtype=np.float32))
    train = fan.select(split="train")
    broken = tmp_path / train.records[0].name
    sf.write(broken, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    records = [train.records[0].model_copy(update={"path": str(broken)}), *train.records[1:]]
    with pytest.raises(DetectorError, match=broken.name):
        make_detector(config.detector, config.features).fit(Manifest(root=train.root, records=records), progress=False)
    with pytest.raises(DetectorError, match="not fitted"):
        make_detector(config.detector, config.features).score_waveform(np.zeros(16000, dtype=np.float32))


def test_registry_pyfunc_hands_each_clip_its_record(trained, fan):
    import pandas as pd

    from asdflow.registry.pyfunc_model import predict_frame

    detector, _ = trained
    records = fan.select(split="test").records[:2]
    waves = [load_audio(r.path, detector.features.sample_rate) for r in records]
    frame = pd.DataFrame({"waveform": [w.tolist() for w in waves], "domain": [r.domain for r in records],
                          "attributes": [r.attributes for r in records]})
    out = predict_frame(detector, frame)
    assert out["score"].tolist() == pytest.approx([detector.score_waveform(w, r) for w, r in zip(waves, records)])
    bare = predict_frame(detector, frame[["waveform"]])  # no record: the documented minimum over conditions
    assert bare["score"].tolist() == pytest.approx(detector.score_waveforms(waves).tolist())


# -- time pooling: GWRP r over each mel bin's errors ----------------------------------------------


def _with(config, **pooling):
    cfg = config.model_copy(deep=True)
    for name, value in pooling.items():
        setattr(cfg.detector.conditional_ae.time_pooling, name, value)
    return cfg


def _per_bin_errors_by_hand(detector, records):
    """Each training clip's (n_vectors, n_mels) squared errors, straight from the network."""
    f = detector.features
    logmels = detector.extractor.batch([load_audio(r.path, f.sample_rate) for r in records])
    out = []
    for record, logmel in zip(records, logmels):
        vectors = stack_frames(logmel, f.n_frames)
        (key,) = detector.space.candidates(record, logmel.mean(axis=1))  # a training clip: its own condition
        x = torch.from_numpy((vectors - detector.feature_mean) / detector.feature_std)
        c = torch.from_numpy(np.tile(detector.space.vector(key), (len(vectors), 1)))
        with torch.no_grad():
            squared = (detector.model(x, c) - x).square().double().numpy()
        out.append(squared.reshape(len(vectors), f.n_frames, f.n_mels).mean(axis=1))
    return out


def test_fixed_r_0_is_the_max_and_r_1_the_mean_of_each_mel_bins_errors(fan, config):
    train, test = fan.select(split="train"), fan.select(split="test")
    fitted = {}
    for r, reduce in ((0.0, np.max), (1.0, np.mean)):
        detector = make_detector(_with(config, r=r).detector, config.features, seed=0)
        info = detector.fit(train, progress=False)
        assert detector.time_r == r
        assert info["time_pooling"]["chosen"] == f"r={r:g}" and info["time_pooling"]["table"] == []
        errors = _per_bin_errors_by_hand(detector, train.records)
        raw = np.stack([reduce(e, axis=0) for e in errors])  # over time, per mel bin
        assert detector.embedding_mean == pytest.approx(raw.mean(axis=0), rel=1e-5)
        standardised = (raw - detector.embedding_mean) / detector.embedding_std
        source = [i for i, rec in enumerate(train.records) if rec.domain == "source"]
        assert detector.knn.banks["source"] == pytest.approx(standardised[source], rel=1e-4, abs=1e-6)
        # one clip's embedding, through the detector's own path
        logmel = detector.extractor.batch([load_audio(train.records[0].path, config.features.sample_rate)])[0]
        vectors = stack_frames(logmel, config.features.n_frames)
        condition = detector.space.vector(detector.space.candidates(train.records[0], logmel.mean(axis=1))[0])
        assert detector._embedding(vectors, condition) == pytest.approx(reduce(errors[0], axis=0), rel=1e-5)
        fitted[r] = detector
    max_scores, mean_scores = (fitted[r].score(test, progress=False) for r in (0.0, 1.0))
    assert max(abs(max_scores[n] - mean_scores[n]) for n in max_scores) > 1e-3
    # r only changes the pooling: the r=0 detector's candidate scores under r=1 are the r=1 detector's
    # scores, and the r=1 threshold comes from the r=1 embeddings
    waves = [load_audio(r.path, config.features.sample_rate) for r in test.records]
    under = fitted[0.0].candidate_scores(waves, test.records, [0.0, 1.0])
    assert under[1.0] == pytest.approx([mean_scores[r.name] for r in test.records], abs=1e-9)
    assert under[0.0] == pytest.approx([max_scores[r.name] for r in test.records], abs=1e-9)
    loo = fitted[0.0]._fit_bank(fitted[0.0]._train_raw[1.0])[3]
    assert fitted[1.0].threshold == pytest.approx(gamma_threshold(loo, config.detector.threshold_quantile))
    assert fitted[1.0].threshold != pytest.approx(fitted[0.0].threshold)


def test_auto_time_pooling_is_chosen_recorded_used_and_saved(fan, config, tmp_path):
    cfg = config.model_copy(deep=True)
    cfg.detector.conditional_ae.require_both_domains = False
    assert cfg.detector.conditional_ae.time_pooling.r == "auto"  # the default
    grid = cfg.detector.conditional_ae.time_pooling.r_grid
    train = fan.select(split="train").select(domain="source")
    assert len(train.records) >= cfg.detector.conditional_ae.time_pooling.selection.min_clips
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    pooling = detector.fit(train, progress=False)["time_pooling"]
    assert pooling["strategy"] == "proxy" and pooling["reason"]
    assert sorted(row["candidate"] for row in pooling["table"]) == sorted(f"r={r:g}" for r in grid)
    assert pooling["chosen"] == f"r={detector.time_r:g}" and detector.time_r in grid
    own = detector._fit_bank(detector._train_raw[detector.time_r])[3]
    assert detector.threshold == pytest.approx(gamma_threshold(own, cfg.detector.threshold_quantile))

    test = fan.select(split="test")
    waves = [load_audio(r.path, cfg.features.sample_rate) for r in test.records]
    scores = detector.score(test, progress=False)
    candidates = detector.candidate_scores(waves, test.records, [detector.time_r])
    assert candidates[detector.time_r] == pytest.approx([scores[r.name] for r in test.records], abs=1e-9)

    loaded = load_detector(detector.save(tmp_path / "auto"))
    assert loaded.time_r == detector.time_r and loaded.threshold == detector.threshold
    assert loaded.score(test, progress=False) == pytest.approx(scores, abs=1e-9)
    assert loaded.candidate_scores(waves, test.records, [loaded.time_r])[loaded.time_r] == pytest.approx(
        candidates[detector.time_r], abs=1e-9
    )
    other = next(r for r in grid if r != loaded.time_r)
    with pytest.raises(DetectorError, match="not saved"):  # the other r's training embeddings stay in memory
        loaded.candidate_scores(waves, test.records, [other])


def test_auto_time_pooling_falls_back_to_the_fixed_default_and_says_why(trained, fan, config):
    # the fan's 2 target clips: a held-out fold would leave 1, too few for the target kNN bank
    pooling = trained[0].fit_info["time_pooling"]
    assert trained[0].time_r == 0.0 and pooling["chosen"] == "r=0" and pooling["table"] == []
    assert "2 target-domain" in pooling["reason"] and "fixed default" in pooling["reason"]
    # fewer clips than selection.min_clips
    cfg = config.model_copy(deep=True)
    cfg.detector.conditional_ae.require_both_domains = False
    few = Manifest(root=fan.root, records=fan.select(split="train").select(domain="source").records[:4])
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    pooling = detector.fit(few, progress=False)["time_pooling"]
    assert detector.time_r == 0.0 and pooling["table"] == [] and "min_clips" in pooling["reason"]
