import numpy as np
import torch

from recsys_tasks.config import ModelConfig
from recsys_tasks.data.prepare import Sequences
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.scoring.evaluation import model_scorer
from recsys_tasks.scoring.inference import embedding_scorer, top_k_for_users


def test_short_histories_get_popular_unseen_items_flagged_as_fallback():
    # user a: one event (item 3), user b: three events; item 1 is the most popular
    seqs = Sequences(
        user_ids=["a", "b"], item_ids=["x", "y", "z", "w"],
        offsets=np.array([0, 1, 4]), items=np.array([3, 1, 2, 3]),
    )
    model = SequenceEncoder(4, ModelConfig(d_model=8, n_layers=1, n_heads=1, max_len=4, dropout=0.0)).eval()
    frame = top_k_for_users(model_scorer(model, seqs, torch.device("cpu")), seqs, np.array([0, 1]), k=2, min_history=2)
    a = frame[frame["user_id"] == "a"]
    assert a["strategy"].tolist() == ["popularity", "popularity"]
    assert a["item_id"].tolist()[0] == "x"  # token 1, the most popular, not yet seen by a
    assert "z" not in a["item_id"].tolist()  # a has seen token 3
    b = frame[frame["user_id"] == "b"]
    assert b["strategy"].tolist() == ["model"] and b["item_id"].tolist() == ["w"]  # only one unseen item left


def test_embedding_scorer_ranks_by_dot_product_without_seen_items():
    seqs = Sequences(user_ids=["a"], item_ids=["x", "y", "z"], offsets=np.array([0, 1]), items=np.array([2]))
    users = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0], [1.0, 0.0]])  # row 0 is padding
    frame = top_k_for_users(embedding_scorer(users, items), seqs, np.array([0]), k=3)
    assert frame["item_id"].tolist() == ["z", "x"]  # y (token 2) was seen; z scores 1.0, x 0.5
