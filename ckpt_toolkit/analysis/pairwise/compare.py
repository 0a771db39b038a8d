"""Learning to compare (arXiv 2504.12491, §4 "Learning to compare").

A classifier g sees a pair of models (i, j) through, for every proxy p, the features
``[p_i − p_j, p_i·p_j, p_i, p_j]`` and predicts whether i fine-tunes better than j. It is
trained on both orientations of every training pair; at prediction the pair's probability is
made antisymmetric, f(i, j) = 1 − f(j, i) *exactly*, by computing
f(i, j) = 0.5 + (g(i, j) − g(j, i)) / 2 for the canonical orientation (i < j) and 1 − that value
for the other one.

Splits are by model (§4.2): the pool is split 60/40 into train and test models and pairs are
formed only within each side, so the classifier never sees a test model during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import ParameterError
from .core import valid_pairs

CLASSIFIERS = ("xgboost", "logreg")
FEATURES = ("diff", "prod", "i", "j")
#: fewest models on the train side of a split for the comparator to be fitted (10 pairs)
MIN_TRAIN_MODELS = 5
#: fewest models on the test side of a split for the comparator to be scored (3 pairs)
MIN_TEST_MODELS = 3
#: default cap on the comparator's training pairs per fit (unordered; each enters in both
#: orientations): a train side of up to 63 models (a pool of about 105 at 60/40) has fewer
#: pairs and is never sampled; larger pools train on a seeded sample of this many pairs
MAX_TRAIN_PAIRS = 2000


def split_sizes(n: int, train_frac: float = 0.6) -> tuple[int, int]:
    """(train, test) model counts of a split of ``n`` models (each side at least 2)."""
    n_train = min(max(2, int(round(train_frac * n))), n - 2)
    return n_train, n - n_train


def comparator_skip_reason(n: int, train_frac: float = 0.6) -> str | None:
    """Why the learned comparator is not fitted on ``n`` models, or None when it is.

    Below :data:`MIN_TRAIN_MODELS` train models or :data:`MIN_TEST_MODELS` test models per split
    a comparator's split-to-split spread says nothing (5 models give 3 train / 2 test models:
    one test pair, so every split scores 0 or 1)."""
    if n < 4:
        return f"only {n} models: a split needs at least 2 models per side"
    n_train, n_test = split_sizes(n, train_frac)
    if n_train < MIN_TRAIN_MODELS or n_test < MIN_TEST_MODELS:
        return (
            f"only {n} models: a {train_frac:.0%}/{1 - train_frac:.0%} split puts {n_train} on the "
            f"train side and {n_test} on the test side; the comparator needs at least "
            f"{MIN_TRAIN_MODELS} train and {MIN_TEST_MODELS} test models per split"
        )
    return None


def feature_names(proxies: Sequence[str]) -> list[str]:
    """Names of the 4·P pair features, ``<proxy>|diff``, ``<proxy>|prod``, ``|i``, ``|j``."""
    return [f"{p}|{f}" for p in proxies for f in FEATURES]


def pair_features(P: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """(m, 4·P) features of the pairs (ii[k], jj[k]) from the (n, P) proxy matrix ``P``."""
    a, b = P[ii], P[jj]
    return np.stack([a - b, a * b, a, b], axis=2).reshape(len(ii), -1)


def model_splits(
    n: int, n_splits: int = 20, train_frac: float = 0.6, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded random model-level splits: ``n_splits`` (train_idx, test_idx) partitions of
    range(n), each side holding at least two models (so both sides have a pair)."""
    if not 0 < train_frac < 1:
        raise ParameterError(f"train_frac must be between 0 and 1, not {train_frac}")
    if n_splits < 1:
        raise ParameterError(f"n_splits must be at least 1, not {n_splits}")
    if n < 4:
        raise ParameterError(
            f"learning to compare needs at least 4 models (2 per side of a split); got {n}"
        )
    n_train, _ = split_sizes(n, train_frac)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        out.append((np.sort(perm[:n_train]), np.sort(perm[n_train:])))
    return out


def pairs_within(
    idx: np.ndarray,
    t: np.ndarray | None = None,
    min_gap: float = 0.0,
    allowed: np.ndarray | None = None,
):
    """Unordered pairs (ii, jj) with ii < jj drawn from the models ``idx`` only; when a target ``t``
    (over all models) is given, only pairs whose gap exceeds ``min_gap``; with an n×n boolean
    ``allowed``, only pairs it allows."""
    idx = np.sort(np.asarray(idx))
    ii, jj = np.triu_indices(len(idx), k=1)
    ii, jj = idx[ii], idx[jj]
    if t is not None:
        keep = valid_pairs(t, min_gap)[ii, jj]
        ii, jj = ii[keep], jj[keep]
    if allowed is not None:  # e.g. only pairs of the same model size
        keep = allowed[ii, jj]
        ii, jj = ii[keep], jj[keep]
    return ii, jj


def sample_pairs(
    ii: np.ndarray, jj: np.ndarray, max_pairs: int | None, seed: int | Sequence[int] = 0
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_pairs`` of the pairs (ii[k], jj[k]): all of them (unchanged) when there are
    no more than that, else a seeded uniform sample without replacement, kept in the pairs'
    original order. ``max_pairs`` None: no cap."""
    if max_pairs is None or len(ii) <= max_pairs:
        return ii, jj
    if max_pairs < 1:
        raise ParameterError(f"max_train_pairs must be at least 1, not {max_pairs}")
    keep = np.sort(np.random.default_rng(seed).choice(len(ii), size=max_pairs, replace=False))
    return ii[keep], jj[keep]


class PairwiseComparator:
    """The learned pairwise comparator.

    >>> comp = PairwiseComparator("xgboost", seed=0).fit(P[train], t[train])
    >>> f = comp.predict_proba(P, ii, jj)   # P(model ii[k] fine-tunes better than jj[k])

    Proxies are standardised with the training models' mean and sd before the features are built
    (so the logistic baseline is well conditioned and no test statistic leaks into training).
    """

    def __init__(self, classifier: str = "xgboost", seed: int = 0, **params):
        if classifier not in CLASSIFIERS:
            raise ParameterError(f"classifier must be one of {CLASSIFIERS}, not {classifier!r}")
        self.classifier = classifier
        self.seed = seed
        self.params = params
        self.model_ = None

    def _make(self):
        if self.classifier == "xgboost":
            from xgboost import XGBClassifier

            kw = dict(
                n_estimators=100,
                max_depth=3,
                learning_rate=0.1,
                n_jobs=1,
                random_state=self.seed,
                verbosity=0,
                tree_method="hist",
            )
            kw.update(self.params)
            return XGBClassifier(**kw)
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        kw = dict(C=1.0, max_iter=2000)
        kw.update(self.params)
        return make_pipeline(StandardScaler(), LogisticRegression(**kw))

    def _standardise(self, P: np.ndarray) -> np.ndarray:
        return (np.asarray(P, dtype=float) - self.mu_) / self.sd_

    def fit(
        self,
        P: np.ndarray,
        t: np.ndarray,
        min_gap: float = 0.0,
        allowed: np.ndarray | None = None,
        *,
        max_pairs: int | None = None,
        pair_seed: int | Sequence[int] = 0,
    ) -> PairwiseComparator:
        """Train on all valid pairs of the given models (rows of ``P``, targets ``t``), in both
        orientations: label 1 for (i, j) when t_i > t_j. With more than ``max_pairs`` valid
        pairs, on a sample of ``max_pairs`` of them (:func:`sample_pairs`, seeded by
        ``pair_seed``)."""
        P = np.asarray(P, dtype=float)
        t = np.asarray(t, dtype=float)
        self.mu_ = P.mean(axis=0)
        sd = P.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        Z = self._standardise(P)
        ii, jj = pairs_within(np.arange(len(t)), t, min_gap, allowed)
        if len(ii) == 0:
            raise ParameterError("no training pair has a target gap above min_gap")
        ii, jj = sample_pairs(ii, jj, max_pairs, pair_seed)
        self.n_train_pairs_ = len(ii)
        X = np.vstack([pair_features(Z, ii, jj), pair_features(Z, jj, ii)])
        y = np.concatenate([(t[ii] > t[jj]), (t[jj] > t[ii])]).astype(int)
        self.model_ = self._make().fit(X, y)
        self.n_proxies_ = P.shape[1]
        return self

    def _g(self, Z: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.model_.predict_proba(pair_features(Z, ii, jj))[:, 1], dtype=np.float64
        )

    def predict_proba(self, P: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        """f(ii[k], jj[k]): probability that model ii[k] beats jj[k]; f(i, j) = 1 − f(j, i) exactly."""
        if self.model_ is None:
            raise ParameterError("PairwiseComparator.predict_proba called before fit")
        ii, jj = np.asarray(ii), np.asarray(jj)
        if len(ii) == 0:
            return np.zeros(0)
        Z = self._standardise(P)
        lo, hi = np.minimum(ii, jj), np.maximum(ii, jj)
        canon = 0.5 + (self._g(Z, lo, hi) - self._g(Z, hi, lo)) / 2
        return np.where(ii <= jj, canon, 1.0 - canon)

    def importance(self) -> np.ndarray:
        """Importance per proxy: its four features' importances summed, normalised to sum 1
        (xgboost: gain-based ``feature_importances_``; logreg: |coefficient| on standardised
        features)."""
        if self.classifier == "xgboost":
            imp = np.asarray(self.model_.feature_importances_, dtype=float)
        else:
            imp = np.abs(self.model_[-1].coef_[0])
        per = imp.reshape(self.n_proxies_, len(FEATURES)).sum(axis=1)
        total = per.sum()
        return per / total if total > 0 else np.full(self.n_proxies_, np.nan)
