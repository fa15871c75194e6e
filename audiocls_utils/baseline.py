"""The bar to beat: per-clip statistics of MFCCs and log-Mels, fed to a scikit-learn classifier.

Chapter 05 writes `clip_statistics`, `statistics_table`, `classical_classifier` and
`fit_and_score`; this is that code. The same classifier is the linear probe on pretrained
embeddings (`audiocls_utils.pretrained`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torchaudio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .errors import AudioclsError
from .features import as_tensor
from .metrics import classification_metrics


def clip_statistics(log_mel, n_mfcc=20):  #@save
    """Summarize one clip's log-Mel (n_mels, frames) as a vector: the mean and spread over time
    of its MFCCs, of their deltas and of its Mel bands."""
    log_mel = as_tensor(log_mel).float()  # a cached float16 log-Mel too
    dct = torchaudio.functional.create_dct(n_mfcc, log_mel.shape[0], norm="ortho")  # (n_mels, n_mfcc)
    mfcc = dct.T @ log_mel  # (n_mfcc, frames): chapter 02's MFCC, what T.MFCC computes
    deltas = torchaudio.functional.compute_deltas(mfcc)  # (n_mfcc, frames): how each one changes
    parts = [mfcc, deltas, log_mel]
    return torch.cat([torch.cat([p.mean(dim=1), p.std(dim=1, correction=0)]) for p in parts]).numpy()


def statistics_table(log_mels, n_mfcc=20):  #@save
    """Return the statistics of every clip as one array, (clips, 4 * n_mfcc + 2 * n_mels)."""
    return np.stack([clip_statistics(log_mel, n_mfcc) for log_mel in log_mels])


def classical_classifier(kind="logistic"):  #@save
    """Return a scikit-learn pipeline: standardize each feature, then logistic regression or an SVM."""
    if kind == "logistic":  # a linear model: one weight per feature and class
        model = LogisticRegression(max_iter=5000)
    elif kind == "svm":  # an RBF-kernel support vector machine: curved boundaries
        model = SVC(kernel="rbf", C=10.0)
    else:
        raise AudioclsError(f"Unknown classifier {kind!r}; choose 'logistic' or 'svm'")
    return make_pipeline(StandardScaler(), model)


def fit_and_score(classifier, train, test, class_names):  #@save
    """Fit `classifier` on `train` = (features, targets), score it on `test`; time both."""
    started = time.perf_counter()
    classifier.fit(*train)
    predictions = classifier.predict(test[0])
    metrics = classification_metrics(test[1], predictions.tolist(), class_names)
    return {**metrics, "seconds": time.perf_counter() - started}


def learned_numbers(classifier):  #@save
    """Return how many numbers a fitted pipeline learned: a linear model's weights, or an SVM's
    support vectors with their coefficients (the scaler's means and spreads left aside)."""
    model = classifier[-1]
    if hasattr(model, "support_vectors_"):
        return model.support_vectors_.size + model.dual_coef_.size + model.intercept_.size
    return model.coef_.size + model.intercept_.size
