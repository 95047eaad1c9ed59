"""The experiment's metrics, named once: what each column of the results files means.

Each :class:`Metric` says which column of which results table holds it, how
summary.csv spells its mean and standard deviation over seeds, how a table or
an axis labels it, its unit, and which way is better. The runner's tables
(``utils/results.py``), the verdicts, the figures, the report's tables and the
README's short answer read these entries instead of spelling column names;
adding a metric is adding one entry to :data:`METRICS`.

    >>> MSE.column, MSE.mean, MSE.lower_is_better
    ('test_mse', 'test_mse_mean', True)
    >>> get("psnr").direction
    'higher is better'
"""
from __future__ import annotations

from typing import NamedTuple

# Tables: comparison.csv (one row per method, K and seed) and generation.csv (a prior
# over each method's codes, and its samples).
COMPARISON = "comparison"
GENERATION = "generation"

# Roles: a primary metric is what the question is about, one per question, and the only
# kind that votes in a verdict: reconstruction -> test MSE; codes and labels -> ARI (chance-
# adjusted, so fair across K and on 1,000 test images, where NMI is biased upward by
# 0.06-0.08 at K = 256 and usage is capped); generation -> sample FID. Secondary metrics
# (BCE, NMI, accuracy, usage, perplexity, prior NLL, ...) are reported beside them.
PRIMARY = "primary"
SECONDARY = "secondary"

# Protocols (docs/protocol.md): the fixed-budget sweeps and the tuned protocol. A metric only
# the tuned protocol measures (the likelihood bound needs the decoder's reconstruction NLL,
# which the fixed generation rows never recorded) is a column of the tuned files only, so the
# fixed files keep their header.
FIXED = "fixed"
TUNED = "tuned"
PROTOCOLS = (FIXED, TUNED)


class Metric(NamedTuple):
    """One metric of the results files.

    name : the identifier used in code ("mse").
    column : its column in the results table ("test_mse").
    label : its short name in sentences, tables and axes ("MSE").
    unit : "" when it has none.
    lower_is_better : which way is better.
    role : PRIMARY or SECONDARY.
    table : COMPARISON or GENERATION, the CSV whose rows hold it.
    question : for a primary metric, the question it answers ("reconstruction"):
        one row of page 1's answer table; "" for the others.
    protocols : the protocols whose files have its column (FIXED, TUNED).
    """

    name: str
    column: str
    label: str
    unit: str = ""
    lower_is_better: bool = True
    role: str = SECONDARY
    table: str = COMPARISON
    question: str = ""
    protocols: tuple[str, ...] = PROTOCOLS

    @property
    def mean(self) -> str:
        """Its mean over seeds in summary.csv ("test_mse_mean")."""
        return f"{self.column}_mean"

    @property
    def std(self) -> str:
        """Its standard deviation over seeds (ddof 1) in summary.csv ("test_mse_std")."""
        return f"{self.column}_std"

    @property
    def higher_is_better(self) -> bool:
        return not self.lower_is_better

    @property
    def direction(self) -> str:
        """'lower is better' or 'higher is better'."""
        return "lower is better" if self.lower_is_better else "higher is better"


HIGHER = {"lower_is_better": False}

# comparison.csv, in its column order
BITS = Metric("bits", "bits_per_image", "bits/image", "bits")
BCE = Metric("bce", "test_bce", "BCE", "nats per image")
MSE = Metric("mse", "test_mse", "MSE", role=PRIMARY, question="reconstruction")
PSNR = Metric("psnr", "psnr", "PSNR (dB)", "dB", **HIGHER)
PERPLEXITY = Metric("perplexity", "perplexity", "perplexity", "codes", **HIGHER)
USAGE = Metric("usage", "usage", "usage", **HIGHER)
NMI = Metric("nmi", "nmi", "NMI", **HIGHER)
ARI = Metric("ari", "ari", "ARI", role=PRIMARY, question="label agreement", **HIGHER)
PURITY = Metric("purity", "purity", "purity", **HIGHER)
# Measured by the tuned protocol's rows only (the fixed files keep their header): the adjusted
# mutual information, chance-adjusted like ARI (Vinh et al. 2010), and the codes no training
# image uses (the dead codes of a codebook; of the training split, not the test split).
_TUNED = {"protocols": (TUNED,)}
AMI = Metric("ami", "ami", "AMI", **HIGHER, **_TUNED)
DEAD_CODES = Metric("dead_codes", "dead_codes", "dead codes", "codes", **_TUNED)
LABEL_ACCURACY = Metric("label_accuracy", "code_to_label_accuracy", "code-to-label accuracy",
                        **HIGHER)
GEODESIC_DISTORTION = Metric("geodesic_distortion", "geodesic_distortion", "geodesic distortion")
EUCLIDEAN_DISTORTION = Metric("euclidean_distortion", "euclidean_distortion",
                              "Euclidean distortion")
INTRA_CLUSTER = Metric("intra_cluster", "intra_cluster_mean", "intra-cluster distance")
INTER_CLUSTER = Metric("inter_cluster", "inter_cluster_mean", "inter-cluster distance", **HIGHER)
INTRA_INTER = Metric("intra_inter", "intra_inter_ratio", "intra/inter ratio")

# generation.csv, in its column order
_GEN = {"table": GENERATION}
PRIOR_NLL = Metric("prior_nll", "prior_nll_bits", "prior NLL", "bits", **_GEN)
PRIOR_BITS_PER_CODE = Metric("prior_bits_per_code", "prior_bits_per_code", "prior bits per code",
                             "bits", **_GEN)
PRIOR_PERPLEXITY = Metric("prior_perplexity", "prior_perplexity", "perplexity", **HIGHER, **_GEN)
HISTOGRAM_NLL = Metric("histogram_nll", "histogram_nll_bits", "histogram NLL", "bits", **_GEN)
FID_SAMPLES = Metric("fid_samples", "fid_samples", "sample FID", role=PRIMARY, question="generation",
                     **_GEN)
FID_RECON = Metric("fid_recon", "fid_recon", "reconstruction FID", **_GEN)
FID_TRAIN = Metric("fid_train", "fid_train", "train FID", **_GEN)
CLASSIFIER_ACCURACY = Metric("classifier_accuracy", "classifier_accuracy", "classifier accuracy",
                             **HIGHER, **_GEN)
SAMPLE_CLASS_ENTROPY = Metric("sample_class_entropy", "sample_class_entropy",
                              "class entropy of samples", "bits", **HIGHER, **_GEN)
SAMPLE_CLASSES = Metric("sample_classes", "sample_classes_covered", "classes", **HIGHER, **_GEN)
INCEPTION_SCORE = Metric("inception_score", "sample_inception_score", "inception score", **HIGHER,
                         **_GEN)
PRIOR_SECONDS = Metric("prior_seconds", "prior_seconds", "prior seconds", "s", **_GEN)
# The tuned rows': the decoder's test reconstruction NLL (Bernoulli, summed over pixels) and the
# likelihood bound -log p(x) <= -log p(x | z_q) - log p(z_q) of a deterministic encoder in bits
# per dimension (van den Oord et al. 2017, section 4.2). On grey-level pixels the Bernoulli
# decoder makes it a measure to compare methods by, not an absolute likelihood.
_TUNED_GEN = {**_GEN, "protocols": (TUNED,)}
RECON_NLL = Metric("recon_nll", "recon_nll_bits", "reconstruction NLL", "bits", **_TUNED_GEN)
BITS_PER_DIM = Metric("bits_per_dim", "bits_per_dim", "bits/dim", "bits per dimension",
                      **_TUNED_GEN)
# Kernel inception distance (Bińkowski et al. 2018, utils/fid.py): unbiased at any set size, so
# fair at mnist-5k's 1,000 test images; of the samples, its spread over subsets, and of as many
# training images (the floor). Sample FID stays the primary metric (every file has it).
KID_SAMPLES = Metric("kid_samples", "kid_samples", "sample KID", **_TUNED_GEN)
KID_SAMPLES_STD = Metric("kid_samples_std", "kid_samples_std", "sample KID spread", **_TUNED_GEN)
KID_TRAIN = Metric("kid_train", "kid_train", "train KID", **_TUNED_GEN)

METRICS: dict[str, Metric] = {m.column: m for m in (
    BITS, BCE, MSE, PSNR, PERPLEXITY, USAGE, NMI, ARI, PURITY, AMI, DEAD_CODES, LABEL_ACCURACY,
    GEODESIC_DISTORTION, EUCLIDEAN_DISTORTION, INTRA_CLUSTER, INTER_CLUSTER, INTRA_INTER,
    PRIOR_NLL, PRIOR_BITS_PER_CODE, PRIOR_PERPLEXITY, HISTOGRAM_NLL, FID_SAMPLES, FID_RECON,
    FID_TRAIN, CLASSIFIER_ACCURACY, SAMPLE_CLASS_ENTROPY, SAMPLE_CLASSES, INCEPTION_SCORE,
    PRIOR_SECONDS, RECON_NLL, BITS_PER_DIM, KID_SAMPLES, KID_SAMPLES_STD, KID_TRAIN)}


def get(column: str) -> Metric:
    """The entry of a column; a ValueError lists the known ones."""
    try:
        return METRICS[column]
    except KeyError:
        raise ValueError(f"unknown metric column {column!r}; known: {', '.join(METRICS)}") from None


def metrics(*, table: str | None = None, role: str | None = None,
            protocol: str | None = None) -> list[Metric]:
    """Entries in :data:`METRICS` order, filtered by table, role and protocol."""
    return [m for m in METRICS.values()
            if (table is None or m.table == table) and (role is None or m.role == role)
            and (protocol is None or protocol in m.protocols)]


def questions() -> list[Metric]:
    """The primary metrics, one per question, in :data:`METRICS` order."""
    return [m for m in metrics(role=PRIMARY) if m.question]


def columns(**filters) -> list[str]:
    """Columns of :func:`metrics` (same filters)."""
    return [m.column for m in metrics(**filters)]


def summary_columns(metric_columns) -> list[str]:
    """The mean and std columns summary.csv holds for ``metric_columns``, in order."""
    return [c for col in metric_columns for c in (get(col).mean, get(col).std)]

