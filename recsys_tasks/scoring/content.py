"""Item content as vectors, and vectors for items the model never saw an event of.

Text (`title`, `description`...) is encoded by a pluggable encoder: by default TF-IDF over
words and character n-grams reduced by truncated SVD (scikit-learn, nothing downloaded);
`RECSYS_TEXT_ENCODER=/path/to/model` loads a sentence-transformers or Hugging Face model
from a local folder instead (production images ship it; nothing is fetched at run time).
Attributes (`brand=acme`) become a multi-hot block beside the text vector.

A new item, in the catalogue but without events, gets the vector that a ridge regression
from content to the trained item embeddings (fitted on the items that have events) predicts
for it. It is usable the night the item appears, without retraining the encoder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_tasks.config import environment

log = logging.getLogger(__name__)

TEXT_ENCODER = "RECSYS_TEXT_ENCODER"  # a local model folder; empty: TF-IDF + SVD


def tfidf_svd_vectors(texts: list[str], dim: int = 64, seed: int = 0) -> np.ndarray:
    """(n, <= dim) L2-normalised vectors of `texts`; rows of empty texts are zero."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    present = [i for i, t in enumerate(texts) if t and t.strip()]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if len(present) < 2:
        return out
    matrix = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(
        [texts[i] for i in present]
    )
    components = min(dim, matrix.shape[0] - 1, matrix.shape[1] - 1)
    if components < 1:
        return out
    reduced = TruncatedSVD(components, random_state=seed).fit_transform(matrix)
    out[present, :components] = normalize(reduced).astype(np.float32)
    return out


def local_model_vectors(texts: list[str], path: str) -> np.ndarray:
    """Sentence vectors from a model folder on disk: sentence-transformers when the folder is
    one, else a Hugging Face encoder with mean pooling. Never downloads."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{TEXT_ENCODER}={path}: no such model folder (models are loaded from disk, never downloaded)")
    environment.offline_hub()
    if (folder / "modules.json").exists():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:  # a sentence-transformers folder holds a Hugging Face model too: mean-pooled below
            log.info("sentence-transformers is not installed; reading %s as a Hugging Face encoder with mean pooling", folder)
        else:
            model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
            return np.asarray(model.encode(texts, normalize_embeddings=True), dtype=np.float32)
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    vectors = []
    with torch.no_grad():
        for lo in range(0, len(texts), 256):
            batch = tokenizer(texts[lo : lo + 256], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, 0), dtype=np.float32)


def text_vectors(texts: list[str]) -> np.ndarray:
    """The configured text encoder (`RECSYS_TEXT_ENCODER`), else TF-IDF + SVD; rows of items
    without text are zero (no content, no prediction)."""
    path = environment.text_encoder_path()
    if not path:
        return tfidf_svd_vectors(texts)
    present = [i for i, t in enumerate(texts) if t and t.strip()]
    encoded = local_model_vectors([texts[i] for i in present], path) if present else np.zeros((0, 1), dtype=np.float32)
    out = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
    out[present] = encoded
    log.info("text vectors from %s: %d items, %d dimensions", path, len(present), out.shape[1])
    return out


def content_features(item_ids: list[str], items: pd.DataFrame, attributes: pd.DataFrame) -> np.ndarray:
    """(n, f) per item of `item_ids`: its text vector beside a multi-hot of its attributes
    (attributes held by fewer than two items carry no shared signal and are left out)."""
    texts = (
        items.set_index("item_id")["text"].reindex(item_ids).fillna("").astype(str).tolist()
        if len(items)
        else [""] * len(item_ids)
    )
    blocks = []
    if any(t.strip() for t in texts):
        blocks.append(text_vectors(texts))
    if len(attributes):
        index = pd.Series(np.arange(len(item_ids)), index=item_ids)
        rows = attributes[attributes["item_id"].isin(index.index)]
        shared = rows["attribute"].value_counts()
        rows = rows[rows["attribute"].isin(shared[shared >= 2].index)]
        if len(rows):
            columns = pd.Series(np.arange(rows["attribute"].nunique()), index=rows["attribute"].unique())
            hot = np.zeros((len(item_ids), len(columns)), dtype=np.float32)
            hot[index[rows["item_id"]].to_numpy(), columns[rows["attribute"]].to_numpy()] = 1.0
            hot /= np.maximum(np.linalg.norm(hot, axis=1, keepdims=True), 1.0)
            blocks.append(hot)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(item_ids), 0), dtype=np.float32)


def cold_item_vectors(embeddings: np.ndarray, features: np.ndarray, warm: np.ndarray, cold: np.ndarray,
                      alpha: float = 1.0) -> np.ndarray:
    """Vectors for the `cold` rows predicted from their features by a ridge regression fitted
    on the `warm` rows (features -> trained embeddings), (cold.sum(), d). A regression shrinks
    towards the mean, so each prediction is rescaled to the median norm of the warm vectors:
    its direction says which users it suits, its norm lets it compete with trained items."""
    from sklearn.linear_model import Ridge

    if features.shape[1] == 0 or not warm.any():
        return np.tile(embeddings[warm].mean(0) if warm.any() else np.zeros(embeddings.shape[1]), (int(cold.sum()), 1))
    ridge = Ridge(alpha=alpha).fit(features[warm], embeddings[warm])
    predicted = ridge.predict(features[cold])
    norms = np.linalg.norm(predicted, axis=1, keepdims=True)
    scale = float(np.median(np.linalg.norm(embeddings[warm], axis=1)))
    return (predicted / np.maximum(norms, 1e-8) * scale).astype(np.float32)


def fill_cold_items(weight: np.ndarray, event_counts: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Item embedding rows (n + 1, d; row 0 padding) with every item without events given its
    content-predicted vector (items with no content keep theirs). Returns the cold tokens."""
    has_content = np.abs(features).sum(1) > 0
    warm = (event_counts[1:] > 0) & has_content
    cold = (event_counts[1:] == 0) & has_content
    if cold.any() and warm.sum() >= 2:
        weight[1:][cold] = cold_item_vectors(weight[1:], features, warm, cold)
    return np.flatnonzero(cold) + 1 if warm.sum() >= 2 else np.zeros(0, dtype=np.int64)
