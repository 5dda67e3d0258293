"""New items: in the catalogue, no events yet, recommended the night they arrive."""

import numpy as np
import pytest

from helpers import read_companion, read_view
from recsys_tasks import airflow_adapter
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_catalogue, generate_interactions
from recsys_tasks.scoring.content import cold_item_vectors, tfidf_svd_vectors

SPEC = SyntheticSpec(users=1500, items=150, topics=6, seed=21)


def test_text_vectors_place_items_of_one_topic_together():
    catalogue = generate_catalogue(SPEC)
    vectors = tfidf_svd_vectors(catalogue["title"].tolist(), dim=16)
    same = catalogue["category"].to_numpy()[:, None] == catalogue["category"].to_numpy()[None, :]
    similarity = vectors @ vectors.T
    assert similarity[same].mean() > similarity[~same].mean() + 0.3


def test_a_regression_from_content_recovers_the_direction_of_an_unseen_embedding():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 8))
    embeddings = features @ rng.normal(size=(8, 4))
    warm = np.arange(200) < 180
    predicted = cold_item_vectors(embeddings, features, warm, ~warm)
    cosine = (
        (predicted * embeddings[~warm]).sum(1) / np.linalg.norm(predicted, axis=1) / np.linalg.norm(embeddings[~warm], axis=1)
    )
    assert cosine.min() > 0.99
    assert np.allclose(np.linalg.norm(predicted, axis=1), np.median(np.linalg.norm(embeddings[warm], axis=1)))


def test_new_items_reach_users_lists_the_night_they_arrive(recsys_home, airflow_db):
    config = config_from_env()
    log = generate_interactions(SPEC).sort_values(["user_id", "ts"])
    catalogue = generate_catalogue(SPEC)
    counts = log["item_id"].value_counts()
    new = set(np.random.default_rng(1).choice(counts.index[counts >= 5], size=15, replace=False))
    held_out = log.groupby("user_id").tail(1)  # each user's next item, never shown to the pipeline
    training = log.drop(held_out.index)
    training = training[~training["item_id"].isin(new)]  # the new items have no events at all
    write_interactions(training, config.source_uri)
    items_uri = recsys_home / "catalogue.csv"
    catalogue.to_csv(items_uri, index=False)

    params = {"epochs": 8, "pretrain_epochs": 1, "top_k": 10, "num_shards": 2, "gate_min_lift": -0.9,
              "items_uri": str(items_uri)}
    outcome = airflow_adapter.run_dag("recsys_nightly", params)
    assert outcome["state"] == "success", outcome["tasks"]
    shown = read_view(config)
    lists = shown.groupby("user_id")["item_id"].apply(set)
    assert shown["item_id"].isin(new).sum() > 50  # new items are in users' lists

    targets = held_out[held_out["item_id"].isin(new) & held_out["user_id"].isin(lists.index)]
    hits = np.mean([item in lists[user] for user, item in zip(targets["user_id"], targets["item_id"], strict=True)])
    chance = 10 / catalogue.shape[0]  # ten guesses among the catalogue's items
    print(f"{len(targets)} users whose next item is new: HR@10 {hits:.3f} (chance {chance:.3f})")
    assert len(targets) >= 30 and hits > 2 * chance

    # the same publish gave item pages their neighbours: new items have some and are some
    similar = read_companion(config, "similar")
    assert set(similar["run_id"]) == set(shown["run_id"])
    assert new <= set(similar["item_id"]) and similar["similar_item_id"].isin(new).sum() > 0
    assert (similar.groupby("item_id").size() == 10).all()
    # and users without a row get the trending list of the same run
    fallback = read_companion(config, "fallback")
    assert fallback["rank"].tolist() == list(range(1, 11)) and set(fallback["run_id"]) == set(shown["run_id"])


def test_a_local_hugging_face_model_encodes_text_without_any_download(tmp_path, monkeypatch):
    """A tiny BERT built here, saved to a folder, loaded by the real code path (offline)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from recsys_tasks.scoring.content import text_vectors

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "garden", "kitchen", "product", "red", "shoe"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(tmp_path)
    monkeypatch.setenv("RECSYS_TEXT_ENCODER", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = text_vectors(["garden product", "kitchen red shoe", ""])
    assert vectors.shape == (3, 16)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5) and not vectors[2].any()
    monkeypatch.setenv("RECSYS_TEXT_ENCODER", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        text_vectors(["garden"])
